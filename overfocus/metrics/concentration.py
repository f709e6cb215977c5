"""Concentration of a map: Gini coefficient and normalised entropy (optional measures).

Both are scale-free, so normalising the map first changes nothing. An all-zero map has no
distribution: both are NaN there, as for any degenerate map (one holding NaN or inf). Both work
on a whole batch at once; the Gini sort runs in
numpy on the CPU (its SIMD sort is an order of magnitude faster than torch's there).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .batch import MapBatch


def _sorted_rows(flat: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending, as float64 (sorting float32 then widening is exact)."""
    if flat.device.type == "cpu":
        return torch.from_numpy(np.sort(flat.numpy(), axis=1).astype(np.float64))
    return flat.sort(dim=1).values.double()


def gini(maps, boxes=None, labels=None, human=None) -> torch.Tensor:
    """Gini coefficient of each map's values (0 = uniform, (n-1)/n = one hot pixel).

    Example:
        >>> m = torch.zeros(2, 2, 2); m[0] = 1.0; m[1, 0, 0] = 1.0
        >>> gini(m).tolist()
        [0.0, 0.75]
    """
    mb = MapBatch.wrap(maps, boxes)
    ordered = _sorted_rows(mb.positive.flatten(1))
    n = ordered.shape[1]
    index = torch.arange(1, n + 1, dtype=torch.float64, device=ordered.device)
    total = ordered.sum(dim=1)
    valid = (total > 0) & ~mb.degenerate.to(total.device)  # NaN exactly where entropy is (NaN/inf maps too)
    g = (2 * (ordered @ index)) / (n * torch.where(valid, total, 1.0)) - (n + 1) / n
    return torch.where(valid, g, torch.full_like(g, math.nan)).float().cpu()


def entropy(maps, boxes=None, labels=None, human=None) -> torch.Tensor:
    """Shannon entropy of the map taken as a distribution, divided by log(H*W): 1 = uniform.

    Computed from the max-normalised map x (values in [0, 1], no overflow) with total T as
    H = log T + sum(-x log x) / T, two non-negative parts (no cancellation). The terms -x log x
    are float32, summed in float64: the relative error stays at float32 rounding, the precision
    of the result anyway.

    Example:
        >>> m = torch.zeros(2, 2, 2); m[0] = 1.0; m[1, 0, 0] = 1.0
        >>> entropy(m).tolist()
        [1.0, 0.0]
    """
    mb = MapBatch.wrap(maps, boxes)
    flat = mb.normalized.flatten(1)  # flatten, not reshape(B, -1): B may be 0
    total = flat.sum(dim=1, dtype=torch.float64)
    safe = torch.where(total > 0, total, 1.0)
    spread = torch.special.entr(flat).sum(dim=1, dtype=torch.float64)
    h = (torch.log(safe) + spread / safe) / math.log(max(flat.shape[1], 2)) + 0.0  # no -0.0
    return torch.where(total > 0, h, torch.full_like(h, math.nan)).float().cpu()
