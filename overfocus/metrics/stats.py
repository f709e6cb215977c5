"""Aggregation: percentile bootstrap intervals and TorchRay's per-class pointing accuracy."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch

# Indices drawn per chunk: ~1 MB arrays stay in the allocator's reused memory (larger ones are
# mapped afresh and page-faulted on every call: twice the time). Chunks hold an EVEN number of
# rows, so numpy's bounded-integer stream (32-bit halves of 64-bit draws) is the same as one draw.
_MAX_DRAWS = 1 << 17


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaNs dropped); (nan, nan) when nothing is left.

    Example:
        >>> lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 50), n_boot=200)
        >>> lo < 0.5 < hi
        True
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(2, _MAX_DRAWS // v.size // 2 * 2)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def pointing_game_per_class(hits: Sequence[float], labels: Sequence[int]) -> float:
    """Mean over classes of each class's mean hit (TorchRay's pointing accuracy); NaNs dropped.

    Example:
        >>> pointing_game_per_class([1, 1, 1, 0], [0, 0, 0, 1])
        0.5
    """
    h = torch.as_tensor(np.asarray(hits, dtype=np.float64)).ravel()
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)).ravel()
    keep = ~torch.isnan(h)
    h, y = h[keep], y[keep]
    if h.numel() == 0:
        return math.nan
    classes, inverse = torch.unique(y, return_inverse=True)
    sums = torch.zeros(len(classes), dtype=torch.float64).index_add_(0, inverse, h)
    counts = torch.bincount(inverse, minlength=len(classes)).double()
    return float((sums / counts).mean())
