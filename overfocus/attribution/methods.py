"""The registered attribution methods, each giving a non-negative B x H x W map at input size.

Each method is a function `fn(request) -> Tensor`. Methods that need the same gradient share it
through `request.cache`: Grad-CAM and the SGDrop map come from ONE forward and ONE backward at the
layer; saliency and input x gradient share one input-gradient pass.

Channel reductions (specs/METRICS.md):
    saliency               |d logit / d x|, max over colour channels (the harmonization convention)
    input_x_gradient       relu(sum over channels of x * d logit / d x), x the normalised input
    integrated_gradients   relu(channel sum) of Captum's IG, zero baseline (the dataset mean after
                           normalisation), `ig_steps` Gauss-Legendre steps (default 16)
    guided_grad_cam        relu(channel sum) of Captum's GuidedGradCam, bilinear upsampling
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import get_module
from ..registry import Registry
from .layer import checked_forward, grad_cam_raw, layer_gradients, sgdrop_raw

ATTRIBUTIONS: Registry = Registry("attribution method")


@dataclass
class AttributionRequest:
    """One `attribute` call: the model (already in attribution mode), inputs and shared results."""

    model: nn.Module
    images: torch.Tensor
    targets: torch.Tensor
    layer: str
    ig_steps: int = 16
    methods: Tuple[str, ...] = ()  # all methods of the call: layer maps asked together are upsampled together
    cache: Dict[str, Any] = field(default_factory=dict)

    def forward_fn(self) -> Callable:
        return checked_forward(self.model, self.targets, self.cache)

    @property
    def size(self) -> tuple:
        return tuple(self.images.shape[-2:])


def _layer_pass(req: AttributionRequest):
    if "layer" not in req.cache:
        grads = layer_gradients(req.model, req.images, req.targets, req.layer)
        req.cache["layer"] = grads
        req.cache.setdefault("logits", grads.logits)
    return req.cache["layer"]


def _input_gradients(req: AttributionRequest) -> torch.Tensor:
    if "input_grad" not in req.cache:
        x = req.images.detach().clone().requires_grad_(True)
        logits = req.forward_fn()(x)
        selected = logits.gather(1, req.targets.view(-1, 1)).sum()
        (req.cache["input_grad"],) = torch.autograd.grad(selected, x)
    return req.cache["input_grad"]


_LAYER_MAPS = {"grad_cam": grad_cam_raw, "sgdrop": sgdrop_raw}


def _layer_map(req: AttributionRequest, name: str) -> torch.Tensor:
    """One of the layer maps; those the call asks for come from one pass and ONE upsampling."""
    key = f"map:{name}"
    if key not in req.cache:
        names = [n for n in _LAYER_MAPS if n in req.methods or n == name]
        grads = _layer_pass(req)
        raw = torch.stack([_LAYER_MAPS[n](grads) for n in names], dim=1)  # B x M x h x w
        up = F.interpolate(raw, size=req.size, mode="bilinear", align_corners=False) \
            if tuple(raw.shape[-2:]) != req.size else raw
        req.cache.update({f"map:{n}": up[:, i] for i, n in enumerate(names)})
    return req.cache[key]


@ATTRIBUTIONS.register("grad_cam")
def grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Grad-CAM (ReLU on) at `req.layer`, bilinearly upsampled to the input size."""
    return _layer_map(req, "grad_cam")


@ATTRIBUTIONS.register("sgdrop")
def sgdrop(req: AttributionRequest) -> torch.Tensor:
    """The SGDrop attribution sum_c relu(dy/dz * z) at `req.layer`, bilinearly upsampled."""
    return _layer_map(req, "sgdrop")


@ATTRIBUTIONS.register("saliency")
def saliency(req: AttributionRequest) -> torch.Tensor:
    """Input-gradient saliency: absolute gradient, max over colour channels."""
    return _input_gradients(req).abs().amax(dim=1)


@ATTRIBUTIONS.register("input_x_gradient")
def input_x_gradient(req: AttributionRequest) -> torch.Tensor:
    """Input x gradient summed over colour channels, ReLU applied."""
    return torch.relu((req.images * _input_gradients(req)).sum(dim=1))


@ATTRIBUTIONS.register("integrated_gradients")
def integrated_gradients(req: AttributionRequest) -> torch.Tensor:
    """Captum's Integrated Gradients from a zero baseline, channel sum, ReLU applied."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(req.forward_fn())
    attr = ig.attribute(req.images, baselines=torch.zeros_like(req.images), target=req.targets,
                        n_steps=req.ig_steps, internal_batch_size=max(1, len(req.images)))
    return torch.relu(attr.sum(dim=1))


@ATTRIBUTIONS.register("guided_grad_cam")
def guided_grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Captum's Guided Grad-CAM at `req.layer` (bilinear upsampling), channel sum, ReLU applied."""
    from captum.attr import GuidedGradCam

    method = GuidedGradCam(req.model, get_module(req.model, req.layer))
    with warnings.catch_warnings():  # Captum warns that it hooks the ReLUs; they are removed after
        warnings.simplefilter("ignore")
        attr = method.attribute(req.images, target=req.targets, interpolate_mode="bilinear")
    return torch.relu(attr.sum(dim=1))
