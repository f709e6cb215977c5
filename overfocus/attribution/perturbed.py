"""What Score-CAM and Ablation-CAM share: one perturbed copy per (image, channel) pair, pushed
through the model in chunks of `batch_size` copies (bounded memory whatever B x C is), and the
`--method-args` dataclass that sets that chunk size."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Tuple

import torch

from ..errors import OverfocusError


@dataclass
class PerturbationParams:
    """`--method-args NAME.batch_size=N`: perturbed copies per forward (memory grows with it)."""

    batch_size: int = 64

    def __post_init__(self):
        if self.batch_size < 1:
            raise OverfocusError(f"--method-args batch_size={self.batch_size}: use 1 or more perturbed copies "
                                 "per forward")


def channel_pairs(images: int, channels: int, batch_size: int, device=None
                  ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """(image index, channel index) tensors of every pair, image-major, `batch_size` at a time.

    Example:
        >>> [(b.tolist(), k.tolist()) for b, k in channel_pairs(2, 2, 3)]
        [([0, 0, 1], [0, 1, 0]), ([1], [1])]
    """
    total = images * channels
    for start in range(0, total, batch_size):
        flat = torch.arange(start, min(start + batch_size, total), device=device)
        yield flat // channels, flat % channels


@torch.no_grad()
def scores_per_channel(images: int, channels: int, batch_size: int, targets: torch.Tensor,
                       logits_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """B x C target logits, `logits_of(image_idx, channel_idx)` giving the logits of one chunk
    of perturbed copies (no gradient is kept: the perturbed forwards only score)."""
    out = torch.empty(images * channels, dtype=torch.float32, device=targets.device)
    for b, k in channel_pairs(images, channels, batch_size, targets.device):
        logits = logits_of(b, k)
        out[b * channels + k] = logits.float().gather(1, targets[b].view(-1, 1))[:, 0]
    return out.view(images, channels)
