"""Human alignment (Fel et al. 2022): Spearman correlation of model and human importance maps.

The ClickMe protocol blurs the HUMAN map only: resize it to 64 x 64, Gaussian blur (the paper
says a 10 x 10 kernel with sigma 10), resize to the input size. A 10-tap kernel has no centre
pixel and shifts the map by half a pixel, so we use an 11-tap kernel (sigma 10) by default;
both are options. Borders are reflected (OpenCV's default, BORDER_REFLECT_101).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OverfocusError
from .batch import check_maps

CLICKME_CEILING = 0.65753  # the human inter-rater Spearman ceiling of ClickMe (Fel et al. 2022)


def gaussian_blur(maps: torch.Tensor, ksize: int = 11, sigma: float = 10.0) -> torch.Tensor:
    """Separable Gaussian blur of B x H x W maps (odd `ksize`, reflected borders).

    Example:
        >>> gaussian_blur(torch.ones(1, 8, 8), 3, 1.0).allclose(torch.ones(1, 8, 8))
        True
    """
    if ksize < 1 or ksize % 2 == 0:
        raise OverfocusError(f"blur kernel size {ksize} must be odd and positive (e.g. 11)")
    x = torch.arange(ksize, dtype=torch.float64, device=maps.device) - (ksize - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).to(maps.dtype)
    pad = ksize // 2
    h, w = maps.shape[-2:]
    mode = "reflect" if pad < min(h, w) else "replicate"
    out = F.pad(maps[:, None], (pad, pad, pad, pad), mode=mode)
    out = F.conv2d(out, g.view(1, 1, 1, -1))
    return F.conv2d(out, g.view(1, 1, -1, 1))[:, 0]


def _resize(maps: torch.Tensor, size) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def prepare_human_maps(human: torch.Tensor, size, blur: bool = True, blur_size: int = 64, ksize: int = 11,
                       sigma: float = 10.0) -> torch.Tensor:
    """The ClickMe protocol: resize to blur_size^2, blur, resize to `size` (H, W). No blur: resize only."""
    human = check_maps(human)
    if blur:
        human = gaussian_blur(_resize(human, (blur_size, blur_size)), ksize, sigma)
    return _resize(human, size)


def _sort_last(values: torch.Tensor):
    """(sorted values, sorting indices) along the last axis; tie order is irrelevant to ranks."""
    if values.device.type != "cpu":
        return values.sort(dim=-1)
    array = values.detach().contiguous().numpy()
    order = np.argsort(array, axis=-1)
    return torch.from_numpy(np.take_along_axis(array, order, axis=-1)), torch.from_numpy(order)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last axis, ties given their average rank (as scipy's rankdata).

    One sort (numpy's on the CPU, several times faster than torch's there); each tie group's
    first and last sorted positions come from running max / min.

    Example:
        >>> average_ranks(torch.tensor([[3., 1., 3., 2.]])).tolist()
        [[3.5, 1.0, 3.5, 2.0]]
    """
    ordered, order = _sort_last(values)
    n = values.shape[-1]
    pos = torch.arange(n, device=values.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    last = torch.where(ends, pos, torch.full_like(pos, n)).flip(-1).cummin(dim=-1).values.flip(-1)
    ranks = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(ranks).scatter_(-1, order, ranks)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row of a and b (B x N); NaN where a row is constant.

    Example:
        >>> spearman(torch.tensor([[1., 2., 3.]]), torch.tensor([[10., 30., 20.]])).tolist()
        [0.5]
    """
    ra, rb = average_ranks(a), average_ranks(b)  # ranks are exact in the maps' own dtype
    ra, rb = ra - ra.mean(dim=-1, keepdim=True), rb - rb.mean(dim=-1, keepdim=True)
    denom = torch.sqrt((ra ** 2).sum(dim=-1) * (rb ** 2).sum(dim=-1))
    rho = (ra * rb).sum(dim=-1) / torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, rho, torch.full_like(rho, math.nan))


def _constant(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.reshape(len(maps), -1)
    return ~torch.isfinite(flat).all(dim=1) | (flat.amax(dim=1) == flat.amin(dim=1))


def harmonization(maps: torch.Tensor, boxes=None, labels=None, human=None, ceiling: float = 1.0,
                  blur: bool = True, blur_size: int = 64, ksize: int = 11, sigma: float = 10.0) -> torch.Tensor:
    """Spearman(model map, blurred human map) / ceiling per image; the model map is NOT blurred.

    NaN (degenerate, excluded from means and counted by their `n`) where either map is constant
    or holds NaN/inf: Spearman is undefined there. `ceiling`: 1 (raw Spearman, default, e.g.
    for OSIE fixations) or CLICKME_CEILING (0.65753) for ClickMe.

    Example:
        >>> m = torch.arange(64.).view(1, 8, 8)
        >>> harmonization(m, human=m.clone(), blur=False).tolist()
        [1.0]
    """
    if human is None:
        raise OverfocusError("harmonization needs human importance maps: use a human-map dataset")
    if ceiling <= 0:
        raise OverfocusError(f"harmonization ceiling must be positive, got {ceiling}")
    maps = check_maps(maps)  # a MapBatch gives its checked maps
    human = check_maps(human).to(maps.device)
    if len(human) != len(maps):
        raise OverfocusError(f"{len(human)} human maps for {len(maps)} model maps")
    degenerate = _constant(human) | _constant(maps)  # judged BEFORE blurring: rounding is not signal
    ready = prepare_human_maps(torch.nan_to_num(human), maps.shape[-2:], blur, blur_size, ksize, sigma)
    rho = spearman(maps.reshape(len(maps), -1), ready.reshape(len(maps), -1)) / ceiling
    return torch.where(degenerate, torch.full_like(rho, math.nan), rho).float().cpu()
