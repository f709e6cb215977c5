"""Concentration of a map: Gini coefficient and normalised entropy (optional measures).

Both are scale-free, so normalising the map first changes nothing. An all-zero map has no
distribution: both are NaN there.
"""
from __future__ import annotations

import math

import torch

from .localisation import check_maps


def gini(maps: torch.Tensor, boxes=None, labels=None, human=None) -> torch.Tensor:
    """Gini coefficient of each map's values (0 = uniform, (n-1)/n = one hot pixel).

    Example:
        >>> m = torch.zeros(2, 2, 2); m[0] = 1.0; m[1, 0, 0] = 1.0
        >>> gini(m).tolist()
        [0.0, 0.75]
    """
    flat = check_maps(maps).clamp_min(0).reshape(len(maps), -1).double()
    n = flat.shape[1]
    ordered = flat.sort(dim=1).values
    index = torch.arange(1, n + 1, dtype=torch.float64, device=flat.device)
    total = ordered.sum(dim=1)
    g = (2 * (index * ordered).sum(dim=1)) / (n * torch.where(total > 0, total, 1.0)) - (n + 1) / n
    return torch.where(total > 0, g, torch.full_like(g, math.nan)).float().cpu()


def entropy(maps: torch.Tensor, boxes=None, labels=None, human=None) -> torch.Tensor:
    """Shannon entropy of the map taken as a distribution, divided by log(H*W): 1 = uniform.

    Example:
        >>> m = torch.zeros(2, 2, 2); m[0] = 1.0; m[1, 0, 0] = 1.0
        >>> entropy(m).tolist()
        [1.0, 0.0]
    """
    flat = check_maps(maps).clamp_min(0).reshape(len(maps), -1).double()
    total = flat.sum(dim=1, keepdim=True)
    p = flat / torch.where(total > 0, total, 1.0)
    h = -(p * torch.log(torch.where(p > 0, p, 1.0))).sum(dim=1) / math.log(max(flat.shape[1], 2)) + 0.0  # no -0.0
    return torch.where(total[:, 0] > 0, h, torch.full_like(h, math.nan)).float().cpu()
