"""Saliency-guided training (METHODS.md section 6; Ismail et al., NeurIPS 2021).

Per batch: the input-gradient saliency of the gt class (the signed gradient averaged over colour
channels; option `abs`) taken with the model in EVAL mode (BatchNorm running statistics, dropout
off, as the authors' public code does; each module's own mode is restored afterwards), the
floor(r*H*W) pixels of LOWEST saliency of each sample replaced, without gradient, by the sample's
channel means (default, the authors' colour-image recipe) or by uniform random values in each
channel's [min, max] of that sample, and loss = CE(f(x), y) + lambda * KL(p(.|x) || p(.|x_masked)),
both from log-probabilities, with the train-mode forwards. A step costs three forwards (one for
the saliency) and two backwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from .base import REGULARIZERS, Regularizer, StepInfo
from .common import eval_mode, largest_k_mask


def input_saliency(grads: torch.Tensor, mode: str = "signed") -> torch.Tensor:
    """B x H x W saliency: the gradient averaged over colour channels (of |gradient| for `abs`)."""
    return (grads.abs() if mode == "abs" else grads).mean(1)


def lowest_saliency_mask(saliency: torch.Tensor, r: float) -> torch.Tensor:
    """B x 1 x H x W boolean mask of the floor(r*H*W) lowest-saliency pixels (ties: lower index).

    Example:
        >>> s = torch.tensor([[[0.5, -1.0], [2.0, 0.0]]])
        >>> lowest_saliency_mask(s, 0.5)[0, 0].int()
        tensor([[0, 1],
                [0, 1]], dtype=torch.int32)
    """
    b, h, w = saliency.shape
    k = math.floor(r * h * w)
    return largest_k_mask(-saliency.reshape(b, -1), k).view(b, 1, h, w)


def mask_images(images: torch.Tensor, mask: torch.Tensor, replace: str = "mean") -> torch.Tensor:
    """Replace masked pixels (all channels) by the sample's channel means, or (`random`) by uniform
    values in each channel's [min, max] of the sample; the result carries no gradient. Random
    values come from the global RNG.

    Example:
        >>> x = torch.tensor([[[[0.0, 1.0]], [[10.0, 30.0]]]])  # 1 x 2 channels x 1 x 2
        >>> m = torch.tensor([[[[True, False]]]])
        >>> mask_images(x, m)[0, :, 0, 0]
        tensor([ 0.5000, 20.0000])
        >>> bool(mask_images(x, m, "random")[0, 1, 0, 0] >= 10.0)  # within channel 1's own range
        True
    """
    images = images.detach()
    if replace == "mean":
        fill = images.mean((2, 3), keepdim=True).expand_as(images)
    else:
        low = images.amin((2, 3), keepdim=True)
        high = images.amax((2, 3), keepdim=True)
        fill = low + (high - low) * torch.rand_like(images)
    return torch.where(mask, fill, images)


def kl_from_logits(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) averaged over the batch, both given as logits (computed in log-probabilities).

    Example:
        >>> float(kl_from_logits(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])))
        0.0
    """
    return F.kl_div(F.log_softmax(logits_q, 1), F.log_softmax(logits_p, 1), log_target=True, reduction="batchmean")


@REGULARIZERS.register("saliency_guided")
class SaliencyGuided(Regularizer):
    """Saliency-guided training: mask low-saliency pixels, keep the prediction (KL term).

    Hyper-parameters: `r` (fraction of pixels masked, default 0.1), `lambda_kl` (default 1),
    `saliency` (signed | abs, default signed), `replace` (mean | random, default mean). The
    defaults are the authors' colour-image (CIFAR) recipe; r = 0.5 with random fill is their MNIST one.

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> build_regularizer(RegularizerConfig("saliency_guided"), None).params.r
        0.1
    """

    name = "saliency_guided"

    @dataclass
    class Params:
        r: float = 0.1
        lambda_kl: float = 1.0
        saliency: str = "signed"
        replace: str = "mean"

    def __init__(self, params: Any, ctx):
        super().__init__(params, ctx)
        if not 0.0 <= params.r <= 1.0:
            raise OverfocusError(f"regularizer.r={params.r}: the masked fraction must be in [0, 1]")
        if params.lambda_kl < 0:
            raise OverfocusError(f"regularizer.lambda_kl={params.lambda_kl}: use a weight >= 0")
        if params.saliency not in ("signed", "abs"):
            raise OverfocusError(f"regularizer.saliency={params.saliency!r}: choose signed or abs")
        if params.replace not in ("random", "mean"):
            raise OverfocusError(f"regularizer.replace={params.replace!r}: choose random or mean")

    def saliency_mask(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """B x 1 x H x W mask of the lowest-saliency pixels, the saliency taken in eval mode.

        The eval-mode forward leaves no trace: BatchNorm statistics are not updated, no dropout
        draws a random number, and each module's own training flag is restored afterwards.
        """
        x = images.detach().requires_grad_(True)
        with eval_mode(list(model.modules())), torch.enable_grad():
            score = model(x).gather(1, labels.view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, x)
        return lowest_saliency_mask(input_saliency(grads, self.params.saliency), self.params.r)

    # -- the leak diagnostic's view (regularizers/leak.py) --
    @torch.no_grad()
    def leak_logits(self, model: nn.Module, images: torch.Tensor,
                    labels: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        """Logits of `model` (as it is: the diagnostic puts it in eval mode) on the images as they are,
        then masked by the saliency of each labelling (None: the online network's own predicted class)."""
        out = [model(images)]
        for y in labels:
            y = out[0].argmax(1) if y is None else y
            out.append(model(mask_images(images, self.saliency_mask(model, images, y), self.params.replace)))
        return out

    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        y = batch.labels
        mask = self.saliency_mask(model, batch.images, y)
        logits = model(batch.images)
        masked_logits = model(mask_images(batch.images, mask, self.params.replace))
        kl = kl_from_logits(logits, masked_logits)
        loss = F.cross_entropy(logits, y) + self.params.lambda_kl * kl
        return loss, {"kl": kl.detach()}
