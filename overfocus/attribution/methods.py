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
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import get_module
from ..registry import Registry
from .layer import checked_forward, grad_cam_raw, layer_gradients, sgdrop_raw

ATTRIBUTIONS: Registry = Registry("attribution method")
DEFAULT_METHODS = ("grad_cam", "sgdrop")  # the maps analyze and audit make unless told otherwise


@dataclass(frozen=True)
class AttributionMethod:
    """A registered method with its metadata; calling it makes the B x H x W map of a request.

    `forward_pass`: the name of the one forward (+ backward) pass the method runs, shared by the
    methods of a call that name the same pass (None: a method of its own with several passes);
    `yields_logits`: that pass also gives (and checks) the logits; `layer_map`: for a layer
    method, the raw h x w map of a `LayerGradients` (maps of one call are upsampled together).
    """

    name: str
    fn: Callable[["AttributionRequest"], torch.Tensor]
    title: str
    yields_logits: bool
    forward_pass: Optional[str] = None
    layer_map: Optional[Callable] = None

    def __call__(self, req: "AttributionRequest") -> torch.Tensor:
        return self.fn(req)

    def info(self) -> Dict[str, Any]:
        """The metadata analysis.json and report.json carry (`method_info`)."""
        return {"title": self.title, "yields_logits": self.yields_logits}


def register_method(name: str, title: str, yields_logits: bool = False, forward_pass: Optional[str] = None,
                    layer_map: Optional[Callable] = None) -> Callable:
    """Decorator: register `fn(req) -> map` in ATTRIBUTIONS with its metadata (one file per method)."""

    def decorator(fn: Callable) -> Callable:
        ATTRIBUTIONS.register(name)(AttributionMethod(name, fn, title, yields_logits, forward_pass, layer_map))
        return fn

    return decorator


def method_info(methods) -> Dict[str, Dict[str, Any]]:
    """`method_info` of analysis.json / report.json: title and yields_logits per method.

    Example:
        >>> method_info(["grad_cam"])
        {'grad_cam': {'title': 'Grad-CAM', 'yields_logits': True}}
    """
    return {name: ATTRIBUTIONS.get(name).info() for name in methods}


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


def _layer_map(req: AttributionRequest, name: str) -> torch.Tensor:
    """One of the layer maps; those the call asks for come from one pass and ONE upsampling."""
    key = f"map:{name}"
    if key not in req.cache:
        names = [n for n in ATTRIBUTIONS.names() if ATTRIBUTIONS.get(n).layer_map is not None
                 and (n in req.methods or n == name)]
        grads = _layer_pass(req)
        raw = torch.stack([ATTRIBUTIONS.get(n).layer_map(grads) for n in names], dim=1)  # B x M x h x w
        up = F.interpolate(raw, size=req.size, mode="bilinear", align_corners=False) \
            if tuple(raw.shape[-2:]) != req.size else raw
        req.cache.update({f"map:{n}": up[:, i] for i, n in enumerate(names)})
    return req.cache[key]


@register_method("grad_cam", "Grad-CAM", yields_logits=True, forward_pass="layer", layer_map=grad_cam_raw)
def grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Grad-CAM (ReLU on) at `req.layer`, bilinearly upsampled to the input size."""
    return _layer_map(req, "grad_cam")


@register_method("sgdrop", "SGDrop", yields_logits=True, forward_pass="layer", layer_map=sgdrop_raw)
def sgdrop(req: AttributionRequest) -> torch.Tensor:
    """The SGDrop attribution sum_c relu(dy/dz * z) at `req.layer`, bilinearly upsampled."""
    return _layer_map(req, "sgdrop")


@register_method("saliency", "saliency", yields_logits=True, forward_pass="input_gradients")
def saliency(req: AttributionRequest) -> torch.Tensor:
    """Input-gradient saliency: absolute gradient, max over colour channels."""
    return _input_gradients(req).abs().amax(dim=1)


@register_method("input_x_gradient", "input x gradient", yields_logits=True,
                 forward_pass="input_gradients")
def input_x_gradient(req: AttributionRequest) -> torch.Tensor:
    """Input x gradient summed over colour channels, ReLU applied."""
    return torch.relu((req.images * _input_gradients(req)).sum(dim=1))


@register_method("integrated_gradients", "integrated gradients")
def integrated_gradients(req: AttributionRequest) -> torch.Tensor:
    """Captum's Integrated Gradients from a zero baseline, channel sum, ReLU applied."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(req.forward_fn())
    attr = ig.attribute(req.images, baselines=torch.zeros_like(req.images), target=req.targets,
                        n_steps=req.ig_steps, internal_batch_size=max(1, len(req.images)))
    return torch.relu(attr.sum(dim=1))


@register_method("guided_grad_cam", "guided Grad-CAM")
def guided_grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Captum's Guided Grad-CAM at `req.layer` (bilinear upsampling), channel sum, ReLU applied."""
    from captum.attr import GuidedGradCam

    method = GuidedGradCam(req.model, get_module(req.model, req.layer))
    with warnings.catch_warnings():  # Captum warns that it hooks the ReLUs; they are removed after
        warnings.simplefilter("ignore")
        attr = method.attribute(req.images, target=req.targets, interpolate_mode="bilinear")
    return torch.relu(attr.sum(dim=1))
