"""The short route to a map: `overfocus.attribute(model, images)` (drawn by `overfocus.overlay`, render/overlay.py).

A thin layer over `attribution.api.attribute` (the one implementation of the methods) that fills
in what a new user does not want to think about: the explained class (the predicted one), the
layer (the model's declared one, else the last convolutional block before the classifier),
mean/std normalisation of raw [0, 1] images, and maps scaled to [0, 1] for display.

Example:
    >>> import torch, overfocus
    >>> from overfocus.models import build_model
    >>> model = build_model("cifarnet", num_classes=3, width=0.125)
    >>> images = torch.rand(2, 3, 32, 32)                        # raw RGB in [0, 1]
    >>> maps = overfocus.attribute(model, images, mean=(0.5,) * 3, std=(0.25,) * 3)
    >>> maps["grad_cam"].shape, float(maps["grad_cam"].max()) <= 1.0
    (torch.Size([2, 32, 32]), True)
    >>> overfocus.overlay(images[0], maps["grad_cam"][0]).shape   # H x W x 3 uint8, ready to save
    (32, 32, 3)
    >>> maps.layer, maps.reshape                                  # what the layer methods explained
    ('block3', 'feature map B x C x H x W (no reshape)')
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn

from ..data import normalize
from ..errors import OverfocusError
from ..models.layers import choose_layer, small_layer_note
from ..models.tokens import layer_layout
from .api import attribute as attribute_raw, normalize_maps


class AttributionMaps(dict):
    """method -> B x H x W map, plus the layer the layer methods used (`layer`) and how its output
    became a map (`reshape`: a token grid's reshape, read from the model, or none)."""

    def __init__(self, maps: Mapping[str, torch.Tensor], layer: str, reshape: str):
        super().__init__(maps)
        self.layer, self.reshape = layer, reshape


def attribute(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
              methods: Union[str, Sequence[str]] = ("grad_cam",), layer: Optional[str] = None,
              mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
              method_args: Optional[Mapping[str, Mapping[str, Any]]] = None) -> AttributionMaps:
    """Attribution maps ready to overlay: method -> B x H x W float32 in [0, 1] (each map / its max);
    the result's `.layer` and `.reshape` say which layer was explained and how its output was read.

    Args:
        model: any nn.Module returning B x K logits (evaluated in eval mode; its state is restored).
        images: B x 3 x H x W on the model's device; raw [0, 1] when `mean`/`std` are given,
            else already normalised as the model expects.
        targets: B class indices to explain; None: each image's predicted class.
        methods: names of `overfocus list methods` (default Grad-CAM).
        layer: dotted module name for the layer methods; None: the model's declared layer
            (models of `overfocus.models`), else for a vision transformer (timm ViT / DeiT / BEiT /
            Swin, torchvision vit_* / swin_*) the first norm of its last block, read as a token
            grid, else the last module with a 4-D output.
        mean, std: per-channel normalisation applied to `images` first (e.g. ImageNet's).
        method_args: per method, its arguments, e.g. {"captum:Occlusion": {"sliding_window_shapes": [3, 16, 16]}}.

    Use `overfocus.attribution.attribute` for raw (unscaled) maps, as the metrics need them.
    """
    if images.dim() != 4:
        raise OverfocusError(f"images must be B x C x H x W, got shape {tuple(images.shape)}")
    if (mean is None) != (std is None):
        raise OverfocusError("pass mean and std together (or neither, for images already normalised)")
    x = normalize(images, tuple(mean), tuple(std)) if mean is not None else images
    layer = choose_layer(model, x, asked=layer).name
    warn_small_layer(model, layer, x)
    if targets is None:
        targets = predicted_classes(model, x)
    try:
        reshape = layer_layout(model, layer, x).describe()
    except OverfocusError:  # not a map: only methods without a layer can run (a layer method says why)
        reshape = "none: the layer gives no map"
    maps = attribute_raw(model, x, targets, methods=methods, layer=layer, method_args=method_args)
    return AttributionMaps({name: normalize_maps(m)[0] for name, m in maps.items()}, layer, reshape)


def warn_small_layer(model: nn.Module, layer: str, images: torch.Tensor) -> None:
    """A UserWarning of one line when `layer` is below 4 x 4 at this size (near-constant maps)."""
    import warnings


    note = small_layer_note(model, layer, images)
    if note:
        warnings.warn(note, stacklevel=3)


def predicted_classes(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The argmax class of each image, in eval mode (the model's mode is restored)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            return model(images).argmax(1)
    finally:
        model.train(was_training)


