"""Layer activations and gradients from ONE forward and ONE backward, and the maps made of them.

A forward hook on the layer keeps its output z (made a leaf that needs grad when the frozen
parameters give it none, so autograd records nothing before the layer) and hands a clone of it to
the rest of the network, so a following in-place ReLU (VGG's `features.N` conv layers feed
`ReLU(inplace=True)`) cannot overwrite the activation we keep; the selected PRE-SOFTMAX logits
are then differentiated with respect to z. This is what Captum's `compute_layer_gradients_and_eval`
does (its LayerGradCam equals our Grad-CAM, tests/test_oracles.py).
A transformer layer's tokens (B x N x C, or B x h x w x C in windowed models) are turned into a
B x C x h x w map by the layout `models.tokens.layout_of` reads from the model (patch grid,
prefix tokens), so every layer map is computed on the token grid with no user-written reshape.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import get_module
from ..models.hooks import Hooks
from ..models.tokens import MAP, TokenLayout, layout_of
from .context import attribution_mode


@dataclass
class LayerGradients:
    """Activation z (B x C x h x w), d(target logit)/dz (same shape) and the logits (B x K).

    `layout`: how the layer's own output became z (a token grid's reshape, or none); `output`: that
    output as the layer gave it (None: z itself), for the methods that feed a changed z back."""

    activations: torch.Tensor
    gradients: torch.Tensor
    logits: torch.Tensor
    layout: TokenLayout = MAP
    output: Optional[torch.Tensor] = None


def checked_forward(model: nn.Module, targets: torch.Tensor, store: dict) -> Callable:
    """A forward function that keeps the logits and rejects targets outside the label space."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        if logits.dim() != 2:
            raise OverfocusError(f"the model returns shape {tuple(logits.shape)}; attribution needs B x classes logits")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
            raise OverfocusError(f"target classes {targets.tolist()[:8]} fall outside the model's {logits.shape[1]} "
                                 "classes: use predicted targets for data with other labels")
        store.setdefault("logits", logits.detach())
        return logits

    return forward


def layer_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str) -> LayerGradients:
    """Activation and gradient of the target logit at `layer`, in one forward and one backward.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("cifarnet", 3, width=0.125)
        >>> g = layer_gradients(m, torch.randn(2, 3, 32, 32), torch.tensor([0, 2]), "block3")
        >>> g.activations.shape == g.gradients.shape, g.logits.shape
        (True, torch.Size([2, 3]))
    """
    module = get_module(model, layer)
    store: dict = {}
    kept: list = []  # the layer's output of its last call (a module called twice: Captum keeps the last too)

    def keep(_module, _inputs, out):
        if not isinstance(out, torch.Tensor):
            kept.append(out)
            return None
        if not out.requires_grad:
            out.requires_grad_(True)
        kept.append(out)
        return out.clone()

    with attribution_mode(model), Hooks().forward(module, keep):
        logits = checked_forward(model, targets, store)(images)
        z = kept[-1] if kept else None
        if not isinstance(z, torch.Tensor) or z.shape[:1] != images.shape[:1]:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else "no tensor"
            raise OverfocusError(f"layer {layer!r} outputs {shape} for {images.shape[0]} images; the layer maps "
                                 "need one B x C x H x W map (or token grid) per image: pass a convolutional "
                                 "layer or block")
        layout = layout_of(model, module, z.shape, images.shape[-2:], layer)
        (grads,) = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), z)
    output = z.detach()
    return LayerGradients(layout.to_map(output), layout.to_map(grads.detach()), store["logits"], layout,
                          None if layout.is_map else output)


def grad_cam_raw(grads: LayerGradients) -> torch.Tensor:
    """Grad-CAM at layer resolution: relu(sum_c mean_hw(dy/dz)_c * z_c), B x h x w."""
    weights = grads.gradients.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * grads.activations).sum(dim=1))


def sgdrop_raw(grads: LayerGradients) -> torch.Tensor:
    """The SGDrop attribution summed over channels: sum_c relu(dy/dz * z), B x h x w."""
    return torch.relu(grads.gradients * grads.activations).sum(dim=1)


def upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of B x h x w maps to `size` = (H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def layer_cams(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str) -> dict:
    """Raw (layer-resolution) Grad-CAM and SGDrop maps from one pass; used by oracle tests.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("cifarnet", 3, width=0.125)
        >>> cams = layer_cams(m, torch.randn(1, 3, 32, 32), torch.tensor([1]), "block3")
        >>> sorted(cams), cams["grad_cam"].shape
        (['grad_cam', 'sgdrop'], torch.Size([1, 4, 4]))
    """
    grads = layer_gradients(model, images, targets, layer)
    return {"grad_cam": grad_cam_raw(grads), "sgdrop": sgdrop_raw(grads)}
