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

Further methods live in a file each and register on import (`attribution/__init__.py`): the CAM
family (grad_cam_pp.py, hirescam.py, xgradcam.py, layercam.py and eigencam.py share the layer
pass through `shared_layer_map`; score_cam.py and ablation_cam.py add batched perturbed
forwards) and the `captum:ClassName` family (captum_methods.py).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import from_dict
from ..errors import OverfocusError
from ..models import get_module
from ..models.tokens import layer_layout, patch_embedding
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
    arguments: Optional[Callable[[Mapping[str, Any]], Any]] = None  # checks --method-args; None: takes none
    uses_layer: bool = False  # its map explains the attribution layer (figures name the layer beside it)

    def __call__(self, req: "AttributionRequest") -> torch.Tensor:
        return self.fn(req)

    def parse_args(self, given: Mapping[str, Any]) -> Any:
        """The method's arguments (`--method-args NAME.KEY=VALUE`) checked, before any work."""
        if self.arguments is None:
            if given:
                raise OverfocusError(f"--method-args {self.name}: {self.name} takes no arguments "
                                     f"(given: {', '.join(sorted(given))})")
            return None
        return self.arguments(dict(given))

    def info(self) -> Dict[str, Any]:
        """The metadata analysis.json and report.json carry (`method_info`)."""
        return {"title": self.title, "yields_logits": self.yields_logits}


def register_method(name: str, title: str, yields_logits: bool = False, forward_pass: Optional[str] = None,
                    layer_map: Optional[Callable] = None, params: Optional[type] = None,
                    uses_layer: Optional[bool] = None) -> Callable:
    """Decorator: register `fn(req) -> map` in ATTRIBUTIONS with its metadata (one file per method).

    `params`: a dataclass of the method's arguments; `--method-args NAME.KEY=VALUE` sets its fields
    (unknown keys and wrong types are one-line errors) and `req.args(NAME)` hands it to the method.
    `uses_layer`: the map is made at the attribution layer (None: True for the layer maps).
    """

    def decorator(fn: Callable) -> Callable:
        arguments = dataclass_arguments(params, name) if params is not None else None
        at_layer = layer_map is not None if uses_layer is None else uses_layer
        ATTRIBUTIONS.register(name)(AttributionMethod(name, fn, title, yields_logits, forward_pass, layer_map,
                                                      arguments, at_layer))
        return fn

    return decorator


def dataclass_arguments(params: type, name: str) -> Callable[[Mapping[str, Any]], Any]:
    """A parser of `--method-args` for a method whose arguments are the fields of `params`."""
    return lambda given: from_dict(params, dict(given), where=f"method_args.{name}")


def check_method_args(methods: Sequence[str], method_args: Optional[Mapping[str, Mapping[str, Any]]]) -> None:
    """Every `--method-args` entry names a method of the call and only arguments it takes.

    Example:
        >>> check_method_args(["score_cam"], {"score_cam": {"batch_size": 32}})
        >>> check_method_args(["grad_cam"], {"score_cam": {"batch_size": 32}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: --method-args names score_cam, which is not among the methods ...
    """
    method_args = method_args or {}
    for name in method_args:
        if name not in methods:
            raise OverfocusError(f"--method-args names {name}, which is not among the methods "
                                 f"({', '.join(methods)}): add it to --methods or drop its arguments")
    for name in methods:  # also those without arguments: a method may need some (captum:Occlusion)
        ATTRIBUTIONS.get(name).parse_args(method_args.get(name, {}))


def layer_methods(methods) -> list:
    """The methods among `methods` whose maps are made at the attribution layer.

    Example:
        >>> layer_methods(["grad_cam", "saliency", "score_cam"])
        ['grad_cam', 'score_cam']
    """
    return [name for name in methods if ATTRIBUTIONS.get(name).uses_layer]


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
    method_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def forward_fn(self) -> Callable:
        """The model's forward with the target check; its first call's logits are the call's
        logits, so `attribute` runs the methods whose pass yields them (or a plain forward) first."""
        return checked_forward(self.model, self.targets, self.cache)

    def args(self, name: str) -> Any:
        """Method `name`'s checked arguments (its params dataclass, or a dict for a Captum class)."""
        return ATTRIBUTIONS.get(name).parse_args(self.method_args.get(name, {}))

    @property
    def size(self) -> tuple:
        return tuple(self.images.shape[-2:])


def layer_pass(req: AttributionRequest):
    """The call's one forward + backward to `req.layer` (a `LayerGradients`), made once."""
    if "layer" not in req.cache:
        grads = layer_gradients(req.model, req.images, req.targets, req.layer)
        req.cache["layer"] = grads
        req.cache.setdefault("logits", grads.logits)
    return req.cache["layer"]


def require_feature_map(req: AttributionRequest, name: str) -> None:
    """A one-line error where `name` (a method that reads the layer as B x C x H x W itself, e.g.
    through Captum) is asked for at a transformer's token layer, whose tokens it would misread."""
    if patch_embedding(req.model) is None:  # a CNN: its layers are maps
        return
    layout = layer_layout(req.model, req.layer, req.images[:1])
    if not layout.is_map:
        raise OverfocusError(f"{name} needs a convolutional layer; {req.layer!r} outputs transformer tokens "
                             f"({layout.describe()}): use grad_cam or the CAM family, which read the token grid")


def _input_gradients(req: AttributionRequest) -> torch.Tensor:
    if "input_grad" not in req.cache:
        x = req.images.detach().clone().requires_grad_(True)
        logits = req.forward_fn()(x)
        selected = logits.gather(1, req.targets.view(-1, 1)).sum()
        (req.cache["input_grad"],) = torch.autograd.grad(selected, x)
    return req.cache["input_grad"]


def shared_layer_map(req: AttributionRequest, name: str) -> torch.Tensor:
    """One of the layer maps; those the call asks for come from one pass and ONE upsampling."""
    key = f"map:{name}"
    if key not in req.cache:
        names = [n for n in ATTRIBUTIONS.names() if ATTRIBUTIONS.get(n).layer_map is not None
                 and (n in req.methods or n == name)]
        grads = layer_pass(req)
        raw = torch.stack([ATTRIBUTIONS.get(n).layer_map(grads) for n in names], dim=1)  # B x M x h x w
        up = F.interpolate(raw, size=req.size, mode="bilinear", align_corners=False) \
            if tuple(raw.shape[-2:]) != req.size else raw
        req.cache.update({f"map:{n}": up[:, i] for i, n in enumerate(names)})
    return req.cache[key]


@register_method("grad_cam", "Grad-CAM", yields_logits=True, forward_pass="layer", layer_map=grad_cam_raw)
def grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Grad-CAM (ReLU on) at `req.layer`, bilinearly upsampled to the input size."""
    return shared_layer_map(req, "grad_cam")


@register_method("sgdrop", "SGDrop map", yields_logits=True, forward_pass="layer", layer_map=sgdrop_raw)
def sgdrop(req: AttributionRequest) -> torch.Tensor:
    """The SGDrop attribution sum_c relu(dy/dz * z) at `req.layer`, bilinearly upsampled."""
    return shared_layer_map(req, "sgdrop")


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


@register_method("guided_grad_cam", "guided Grad-CAM", uses_layer=True)
def guided_grad_cam(req: AttributionRequest) -> torch.Tensor:
    """Captum's Guided Grad-CAM at `req.layer` (bilinear upsampling), channel sum, ReLU applied."""
    from captum.attr import GuidedGradCam

    require_feature_map(req, "guided_grad_cam")
    method = GuidedGradCam(req.model, get_module(req.model, req.layer))
    with warnings.catch_warnings():  # Captum warns that it hooks the ReLUs; they are removed after
        warnings.simplefilter("ignore")
        attr = method.attribute(req.images, target=req.targets, interpolate_mode="bilinear")
    return torch.relu(attr.sum(dim=1))
