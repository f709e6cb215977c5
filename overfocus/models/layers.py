"""THE choice of the attribution layer: the layer a registered model declares, else a vision
transformer's token layer (models/tokens.py), else the last module with a spatial (4-D, more than
1 x 1) output, and the note when a layer is too small to say much."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import OverfocusError, option
from .hooks import Hooks
from .tokens import find_token_layer, layer_layout, patch_embedding


SKIP_LAYER_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.Identity, nn.Flatten,
                    nn.Dropout, nn.Dropout2d)


@dataclass(frozen=True)
class LayerChoice:
    """The attribution layer and why it was chosen (`automatic`: picked from a forward pass, which
    the callers announce, since the user did not name it)."""
    name: str
    reason: str
    automatic: bool


@torch.no_grad()
def choose_layer(model: nn.Module, images: torch.Tensor, asked: Optional[str] = None,
                 declared: Optional[str] = None) -> LayerChoice:
    """THE precedence of the attribution layer, for every caller (attribute, analyze, Tracker,
    audit): the layer asked for, else the declared one (`declared`, else the model's own
    `overfocus_layers["gradcam"]`), else `auto_layer`'s pick with its reason.

    Example:
        >>> from overfocus.models import build_model
        >>> choose_layer(build_model("resnet18", 3, width=0.125, small_input=True), torch.zeros(1, 3, 32, 32)).name
        'layer4'
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> choose_layer(m, torch.zeros(1, 3, 8, 8))
        LayerChoice(name='1', reason='the last module with a spatial output before the classifier', automatic=True)
        >>> choose_layer(m, torch.zeros(1, 3, 8, 8), asked="0").reason
        'asked for'
    """
    if asked:
        return LayerChoice(asked, "asked for", automatic=False)
    own = getattr(model, "overfocus_layers", None)
    declared = declared or (own.get("gradcam") if isinstance(own, dict) else None)
    if declared:
        return LayerChoice(declared, "the model's declared layer", automatic=False)
    found = auto_layer(model, images)
    return LayerChoice(found, auto_layer_reason(model, found, images), automatic=True)


def auto_layer(model: nn.Module, images: torch.Tensor) -> str:
    """A transformer's token layer (`models.tokens.find_token_layer`: the first norm of the last
    block, never the patch embedding), else the last module to finish with a 4-D output of more
    than 1 x 1 pixels (the conv trunk's end).

    Forward hooks fire when a module finishes, so a container (`layer4`, `features`) comes after
    its children: the last hit is the largest block that ends the convolutional part.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> auto_layer(m, torch.zeros(1, 3, 8, 8))
        '1'
    """
    tokens = find_token_layer(model, images)
    if tokens is not None:
        return tokens[0]
    spatial = [name for name, (h, w) in spatial_sizes(model, images) if h * w > 1]
    if not spatial:
        raise OverfocusError("found no convolutional layer with a spatial output: pass --layer NAME")
    return spatial[-1]


def layer_side(model: nn.Module, layer: str, images: torch.Tensor) -> Optional[Tuple[int, int]]:
    """The h x w of `layer`'s map at this input size: a transformer layer's token grid, else its
    4-D output's spatial size; None for a layer without a map.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> layer_side(m, "1", torch.zeros(1, 3, 8, 8))
        (6, 6)
    """
    return _token_grid(model, layer, images) or dict(spatial_sizes(model, images)).get(layer)


def _token_grid(model: nn.Module, layer: str, images: torch.Tensor) -> Optional[Tuple[int, int]]:
    """The token grid of a transformer layer (None for a CNN map or a layer without a map)."""
    if patch_embedding(model) is None:
        return None
    try:
        layout = layer_layout(model, layer, images)
    except OverfocusError:
        return None
    return None if layout.is_map else tuple(layout.grid)


def auto_layer_reason(model: nn.Module, layer: str, images: torch.Tensor) -> str:
    """Why `auto_layer` chose `layer`, for the one line that names it (analyze FOLDER, Tracker).

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("vit_tiny", 3, width=0.25)
        >>> auto_layer_reason(m, "blocks.11.norm1", torch.zeros(1, 3, 64, 64))
        'the first norm of the last transformer block, tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8'
    """
    layout = layer_layout(model, layer, images)
    if layout.is_map:
        return "the last module with a spatial output before the classifier"
    return f"the first norm of the last transformer block, {layout.describe()}"


# Below this many pixels a side, a layer's maps are near constant once upsampled (1 x 1: exactly).
MIN_LAYER_SIDE = 4


@torch.no_grad()
def spatial_sizes(model: nn.Module, images: torch.Tensor) -> List[Tuple[str, Tuple[int, int]]]:
    """(module name, (h, w)) of every module with a 4-D output, in the order they finish, for one image.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> spatial_sizes(m, torch.zeros(1, 3, 8, 8))
        [('0', (6, 6)), ('1', (6, 6))]
    """
    order: List[Tuple[str, Tuple[int, int]]] = []
    was_training = model.training
    with Hooks() as hooks:
        for name, m in model.named_modules():
            if name and not isinstance(m, SKIP_LAYER_TYPES):
                hooks.forward(m, _recorder(order, name))
        try:
            model.eval()
            model(images[:1])
        finally:
            model.train(was_training)
    return order


def small_layer_note(model: nn.Module, layer: str, images: torch.Tensor) -> Optional[str]:
    """One line when `layer` is below 4 x 4 at this input size (its maps say little), naming a larger
    layer to pass with --layer; None when the layer is large enough.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("resnet18", 3, width=0.125)                 # ImageNet stem: stride 32
        >>> print(small_layer_note(m, "layer4", torch.zeros(1, 3, 32, 32)))
        attribution layer 'layer4' is 1 x 1 at 32 x 32 px: its maps are constant (every area ratio 1.0); pass layer='layer2' (4 x 4)
        >>> small_layer_note(m, "layer4", torch.zeros(1, 3, 128, 128)) is None
        True
    """
    token_grid = _token_grid(model, layer, images)
    sizes = [] if token_grid else spatial_sizes(model, images)
    found = {layer: token_grid} if token_grid else dict(sizes)
    if layer not in found or min(found[layer]) >= MIN_LAYER_SIDE:
        return None
    h, w = found[layer]
    what = "constant (every area ratio 1.0)" if h * w == 1 else "nearly constant once upsampled"
    larger = [(name, hw) for name, hw in sizes if min(hw) >= MIN_LAYER_SIDE]
    advice = (f"pass {option('layer', repr(larger[-1][0]))} ({larger[-1][1][0]} x {larger[-1][1][1]})" if larger
              else f"use larger images ({option('image_size', 'PX')})")
    return (f"attribution layer {layer!r} is {h} x {w} at {images.shape[-2]} x {images.shape[-1]} px: its maps are "
            f"{what}; {advice}")


def _recorder(order: List[Tuple[str, Tuple[int, int]]], name: str):
    def hook(_module, _inputs, output):
        if torch.is_tensor(output) and output.dim() == 4:
            order.append((name, (int(output.shape[2]), int(output.shape[3]))))
    return hook
