"""Seeds drawn from an image's own pixels, so that everything random about one image (the
`random` attribution map, the tie order of a faithfulness ranking, ROAD's imputation noise, the
other class of `sanity_class`) is the same at every epoch, in every process and shard, on any
device, without the caller passing image ids through the attribution API.

The seed of an image is an exact integer dot product of its pixels quantised to 1/255 with fixed
integer weights (no floating-point reduction, so the CPU and a GPU agree).

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 4, 4)
    >>> image_seeds(images) == image_seeds(images.clone()), len(image_seeds(images))
    (True, 2)
    >>> u = seeded_uniform([1, 2], (3,))
    >>> tuple(u.shape), bool(((u >= 0) & (u < 1)).all()), torch.equal(u, seeded_uniform([1, 2], (3,)))
    ((2, 3), True, True)
"""
from __future__ import annotations

from typing import List, Sequence

import torch

_MODULUS = 2 ** 62


def image_seeds(images: torch.Tensor, salt: int = 0) -> List[int]:
    """One seed per image of a B x C x H x W batch in [0, 1] (its content, plus `salt` for a
    second independent stream)."""
    flat = (images.detach().float().clamp(0, 1) * 255).round().to(torch.int64).flatten(1)
    # weights < 2**31 and pixels <= 255: the sum stays below 2**63 for images of up to 4e6 values
    weights = (torch.arange(flat.shape[1], device=flat.device, dtype=torch.int64) * 2654435761) % (2 ** 31) + 1
    sums = (flat * weights).sum(1)
    return [(int(s) + salt * 1000003) % _MODULUS for s in sums.cpu().tolist()]


def seeded_uniform(seeds: Sequence[int], shape: Sequence[int], device=None) -> torch.Tensor:
    """len(seeds) x *shape uniform [0, 1) values, row i drawn from a generator seeded with seeds[i]
    (on the CPU, then moved: the same numbers on every device)."""
    rows = [torch.rand(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    out = torch.stack(rows) if rows else torch.zeros((0, *shape))
    return out.to(device) if device is not None else out


def seeded_normal(seeds: Sequence[int], shape: Sequence[int], device=None) -> torch.Tensor:
    """Like `seeded_uniform`, standard normal values."""
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    out = torch.stack(rows) if rows else torch.zeros((0, *shape))
    return out.to(device) if device is not None else out
