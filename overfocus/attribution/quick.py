"""The short route to a map: `overfocus.attribute(model, images)` and `overfocus.overlay(image, map)`.

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

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import OverfocusError
from .api import attribute as attribute_raw
from .api import normalize_maps


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
    from ..data import normalize
    from ..loading import default_layer
    from ..models.tokens import layer_layout

    if images.dim() != 4:
        raise OverfocusError(f"images must be B x C x H x W, got shape {tuple(images.shape)}")
    if (mean is None) != (std is None):
        raise OverfocusError("pass mean and std together (or neither, for images already normalised)")
    x = normalize(images, tuple(mean), tuple(std)) if mean is not None else images
    layer = layer or default_layer(model, x)
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

    from ..loading import small_layer_note

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


def overlay(image, attribution_map, alpha: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """An attribution map blended over its image: H x W x 3 uint8 RGB (save with PIL or cv2 in RGB order).

    Args:
        image: 3 x H x W tensor in [0, 1] (as given to `attribute`), or H x W x 3 uint8 / float array.
        attribution_map: H x W map in [0, 1] (one entry of `attribute`'s result), tensor or array.
        alpha: the map's opacity; cmap: a Matplotlib colormap name.
    """
    from ..render.overlay import overlay_map

    return overlay_map(_rgb_uint8(image), _array(attribution_map), alpha=alpha, cmap=cmap)


def _array(value) -> np.ndarray:
    return value.detach().float().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def _rgb_uint8(image) -> np.ndarray:
    """H x W x 3 uint8 from a C x H x W tensor in [0, 1] or an H x W x 3 array (uint8, or float in [0, 1])."""
    arr = _array(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise OverfocusError(f"overlay needs a 3 x H x W or H x W x 3 image, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
