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


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] (n_classes x n_classes, int64); a prediction outside
    the classes (a model with more outputs than the data has classes) is not counted.

    Example:
        >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], 2).tolist()
        [[1, 1], [0, 2]]
    """
    y = np.asarray(labels, np.int64).ravel()
    p = np.asarray(preds, np.int64).ravel()
    keep = (y >= 0) & (y < n_classes) & (p >= 0) & (p < n_classes)
    return np.bincount(y[keep] * n_classes + p[keep], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(labels: Sequence[int], preds: Sequence[int], n_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(accuracy, images) per true class: the share of each class's images predicted as that
    class; NaN for a class with no image.

    Example:
        >>> acc, n = per_class_accuracy([0, 0, 1, 1], [0, 1, 1, 1], 3)
        >>> acc.tolist()[:2], n.tolist()
        ([0.5, 1.0], [2, 2, 0])
    """
    y = np.asarray(labels, np.int64).ravel()
    p = np.asarray(preds, np.int64).ravel()
    keep = (y >= 0) & (y < n_classes)
    images = np.bincount(y[keep], minlength=n_classes)
    right = np.bincount(y[keep][p[keep] == y[keep]], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(images > 0, right / np.maximum(images, 1), np.nan), images
