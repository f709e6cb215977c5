"""The model registry: every model declares where it is cut into encoder and classifier."""
from __future__ import annotations

from dataclasses import dataclass
import inspect
from typing import Any, Callable, Mapping, Optional

import torch.nn as nn

from ..errors import OverfocusError, shorten
from ..registry import Registry, did_you_mean


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its factory and the names of its latent and Grad-CAM layers.

    `build(num_classes, width, small_input)` returns an nn.Module with random weights.
    `latent_layer` is the module whose output is z (METHODS.md's cut f = psi o phi).
    """

    name: str
    build: Callable[..., nn.Module]
    latent_layer: str
    gradcam_layer: str
    description: str = ""
    optim: Optional[Mapping[str, Any]] = None  # the family's optimizer defaults (config.family_optim_defaults)


MODELS: Registry = Registry("model")


def register_model(name: str, latent_layer: str, gradcam_layer: str = "", description: str = "",
                   optim: Optional[Mapping[str, Any]] = None):
    """Decorator registering a factory `f(num_classes, width, small_input) -> nn.Module`; `optim`:
    optimizer settings (keys of `config.OptimConfig`) this model trains with unless told otherwise."""

    def decorator(factory):
        MODELS.register(name)(ModelEntry(name, factory, latent_layer, gradcam_layer or latent_layer, description,
                                         dict(optim) if optim else None))
        return factory

    return decorator


def build_model(name: str, num_classes: int, width: float = 1.0, small_input: bool = False,
                batch_norm: Optional[bool] = None) -> nn.Module:
    """Build a registered model with random weights.

    `batch_norm` (None = the architecture's default) is an option of the VGGs only: True or False
    for another model is a one-line error.

    Example:
        >>> m = build_model("cifarnet", num_classes=10, width=0.25, small_input=True)
        >>> type(m).__name__
        'CifarNet'
    """
    if num_classes < 1:
        raise OverfocusError(f"num_classes must be at least 1, got {num_classes}")
    if width <= 0:
        raise OverfocusError(f"model width must be positive, got {width}")
    entry = MODELS.get(name)
    if batch_norm is None:
        model = entry.build(num_classes=num_classes, width=width, small_input=small_input)
    elif "batch_norm" not in inspect.signature(entry.build).parameters:
        raise OverfocusError(f"model.batch_norm={str(batch_norm).lower()}: model {name!r} has no BatchNorm option "
                             "(only the VGGs do); leave model.batch_norm unset")
    else:
        model = entry.build(num_classes=num_classes, width=width, small_input=small_input, batch_norm=batch_norm)
    # declared on the instance, so that `overfocus.attribute(model, images)` finds its layer
    model.overfocus_layers = {"latent": entry.latent_layer, "gradcam": entry.gradcam_layer}
    return model


MAX_PARAMETERS = 1 << 30  # 1.07 billion: with gradients and Adam's two moments, 16 GiB of float32


def check_model_size(name: str, num_classes: int, width: float = 1.0, small_input: bool = False,
                     batch_norm: Optional[bool] = None) -> int:
    """The parameter count of a registered model, counted on the meta device (no memory used);
    above MAX_PARAMETERS it is refused with one line naming the width, before anything is built.

    Example:
        >>> check_model_size("cifarnet", 10, 0.25, True) < 10 ** 6
        True
    """
    import torch

    with torch.device("meta"):
        model = build_model(name, num_classes, width, small_input, batch_norm)
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise OverfocusError(f"model {name} with width {width:g} and {num_classes} classes has {count / 1e9:.1f} "
                             f"billion parameters (more than {MAX_PARAMETERS / 1e9:.2f} billion fit a training's "
                             "memory): use a smaller model.width")
    return count


def get_module(model: nn.Module, name: str, option: str = "") -> nn.Module:
    """The submodule called `name` (dotted), with a one-line error listing close names.

    `option` names where the layer was asked for (e.g. "model.latent_layer") in that error.

    Example:
        >>> get_module(nn.ModuleDict({"features": nn.Conv2d(3, 4, 3)}), "feature", "--layer")
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: --layer 'feature': the model has no such layer (did you mean 'features'?): top-level layers are ['features']; pass a dotted name such as features.10 or layer4
    """
    modules = dict(model.named_modules())
    if name not in modules:
        top = [n for n in modules if n and "." not in n]
        shown = top if len(top) <= 12 else top[:6] + ["..."] + top[-3:]
        where = f"{option} {shorten(name)}: the model has no such layer" if option else \
            f"the model has no layer {shorten(name)}"
        raise OverfocusError(f"{where}{did_you_mean(name, [n for n in modules if n])}: top-level layers are "
                             f"{shown}; pass a dotted name such as features.10 or layer4")
    return modules[name]


def latent_layer_name(model_name: str, override: str = "") -> str:
    return override or MODELS.get(model_name).latent_layer
