"""Sanity checks of attribution maps (Adebayo et al. 2018) and their similarity measures.

A map that explains the model should change when the model's learned weights are replaced by
random ones and when another class is explained. Per image:

- `sanity_init` / `sanity_init_ssim`: Spearman rank correlation / SSIM of the map with the same
  image's map under the run's epoch-0 (initial, random) weights: model-parameter randomisation
  with the stored initial weights;
- `sanity_class` / `sanity_class_ssim`: the same against the map explaining another class, drawn
  per image from its seed (`overfocus.data.seeds`): the random-logit test.

High values mean the map hardly depends on what is tested (a failed sanity check); a map that
passes has values near 0. Both compare the maps at input size; SSIM on the maps scaled to [0, 1]
per image (Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1: Wang et al. 2004,
as skimage's `structural_similarity(gaussian_weights=True, use_sample_covariance=False)`).
NaN where a map is degenerate (constant or non-finite).

Example:
    >>> a = torch.rand(2, 16, 16)
    >>> [round(v, 4) for v in map_spearman(a, a).tolist()], [round(v, 4) for v in map_ssim(a, a).tolist()]
    ([1.0, 1.0], [1.0, 1.0])
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F

from ..data.seeds import seeded_uniform
from .harmonization import spearman

SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Maps scaled to [0, 1] per image by their maximum (negative values clipped); NaN rows stay NaN."""
    flat = maps.detach().float().flatten(1).clamp_min(0)
    peak = flat.amax(1, keepdim=True)
    return (flat / torch.where(peak > 0, peak, torch.ones_like(peak))).reshape(maps.shape)


def _degenerate(maps: torch.Tensor) -> torch.Tensor:
    flat = maps.detach().float().flatten(1)
    return ~torch.isfinite(flat).all(1) | (flat.amax(1) == flat.amin(1))


def map_spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two B x H x W map batches (NaN where either is degenerate)."""
    if a.shape[-2:] != b.shape[-2:]:
        b = F.interpolate(b[:, None].float(), size=a.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    rho = spearman(a.detach().float().flatten(1), b.detach().float().flatten(1)).float()
    dead = _degenerate(a) | _degenerate(b)
    return torch.where(dead, torch.full_like(rho, float("nan")), rho)


def _gaussian_window(device, dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def map_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two B x H x W map batches scaled to [0, 1] per image (valid windows only, as
    skimage crops the border of half a window); NaN where either map is degenerate."""
    x, y = _unit(a)[:, None], _unit(b)[:, None]
    if x.shape[-2:] != y.shape[-2:]:
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
    g = _gaussian_window(x.device, x.dtype)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        return torch.full((len(x),), float("nan"), device=x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable Gaussian, no padding
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    value = s.flatten(1).mean(1)
    dead = _degenerate(a) | _degenerate(b)
    return torch.where(dead, torch.full_like(value, float("nan")), value)


def other_classes(targets: torch.Tensor, num_classes: int, seeds: Sequence[int]) -> torch.Tensor:
    """For each image a class other than its target, uniformly drawn from its seed (the class of
    `sanity_class`); the target itself when the model has one class.

    Example:
        >>> t = torch.tensor([0, 1, 2])
        >>> bool((other_classes(t, 3, [1, 2, 3]) != t).all())
        True
    """
    if num_classes < 2:
        return targets.clone()
    u = seeded_uniform([(s + 104729) % 2 ** 62 for s in seeds], (1,), targets.device)[:, 0]
    shift = 1 + (u * (num_classes - 1)).long().clamp(max=num_classes - 2)
    return (targets + shift) % num_classes


# ---- registry adapters: fn(perturbation) -> B values, None without the reference maps ------------
def _against(p, key: str, measure) -> "torch.Tensor | None":
    reference = p.references.get(key)
    return None if reference is None else measure(p.maps, reference.to(p.maps.device))


def sanity_init(p):
    return _against(p, "init", map_spearman)


def sanity_init_ssim(p):
    return _against(p, "init", map_ssim)


def sanity_class(p):
    return _against(p, "class", map_spearman)


def sanity_class_ssim(p):
    return _against(p, "class", map_ssim)


SANITY_REFERENCES: List[str] = ["init", "class"]
