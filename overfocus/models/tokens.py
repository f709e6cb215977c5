"""Token models (vision transformers): where their maps live and how a layer's tokens become a map.

A layer map (Grad-CAM and its family, the SGDrop map, Score-CAM ...) needs a B x C x h x w tensor.
A convolutional layer gives one; a transformer layer gives tokens, read from the model itself:

- the patch grid: the output size of the PATCH EMBEDDING, the model's first Conv2d when its kernel
  equals its stride (> 1): timm ViT / DeiT / BEiT / Swin `patch_embed.proj`, torchvision
  `conv_proj` and `features.0.0`, ours. Windowed models halve it at each stage (patch merging),
  so a later stage's grid is the patch grid over 2**k (rounded up);
- B x N x C tokens (ViT family): the first `prefix` tokens are the class / distillation / register
  tokens (`num_prefix_tokens` of timm and of our models, `class_token` of torchvision: 1), the
  other N - prefix tokens are the grid in row-major order;
- B x h x w x C (windowed blocks: timm and torchvision Swin): channels last; a 4-D output is read
  as channels last when its dims 1-2 are a grid of the model and dims 2-3 are not, or (both
  being grids) when the layer normalises its last dimension (a LayerNorm of that size).

`token_layer` finds the layer to explain: the first normalisation of the LAST transformer block
(a module with an attention child and a LayerNorm child), i.e. `blocks[-1].norm1` (timm ViT),
`encoder.layers[-1].ln_1` (torchvision ViT), `layers[-1].blocks[-1].norm1` (timm Swin),
`features[-1][-1].norm1` (torchvision Swin): the tokens that enter the last attention, where every
patch token still reaches the class token (after the last block only the class token does).

Example:
    >>> import torch.nn as nn
    >>> layout = TokenLayout("tokens", (2, 2), prefix=1)
    >>> layout.to_map(torch.arange(10.).view(1, 5, 2)).shape     # 1 class token + 2 x 2 grid, 2 channels
    torch.Size([1, 2, 2, 2])
    >>> print(layout.describe())
    tokens: 1 prefix token dropped, 4 grid tokens -> 2 x 2
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import OverfocusError
from .hooks import Hooks
from .registry import get_module

Grid = Tuple[int, int]


@dataclass(frozen=True)
class TokenLayout:
    """How a layer's output becomes a B x C x h x w map: `map` (already one), `tokens` (B x N x C,
    `prefix` leading tokens dropped, the rest a `grid`) or `channels_last` (B x h x w x C)."""

    kind: str = "map"
    grid: Grid = (0, 0)
    prefix: int = 0

    @property
    def is_map(self) -> bool:
        return self.kind == "map"

    def to_map(self, t: torch.Tensor) -> torch.Tensor:
        """The layer output (or its gradient) as B x C x h x w.

        Example:
            >>> TokenLayout("channels_last", (1, 2)).to_map(torch.zeros(3, 1, 2, 5)).shape
            torch.Size([3, 5, 1, 2])
        """
        if self.kind == "map":
            return t
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2)
        h, w = self.grid
        return t[:, self.prefix:, :].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)

    def from_map(self, m: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The inverse of `to_map`: a B x C x h x w tensor back in the layer's own shape. For
        tokens, `prefix_tokens` (B x prefix x C) are put back in front; None: ones (a mask that
        keeps them). A mask of 1 x 1 locations (per channel) broadcasts over every token.

        Example:
            >>> layout = TokenLayout("tokens", (1, 2), prefix=1)
            >>> layout.from_map(torch.zeros(1, 3, 1, 2)).shape, layout.from_map(torch.zeros(1, 3, 1, 1)).shape
            (torch.Size([1, 3, 3]), torch.Size([1, 1, 3]))
        """
        if self.kind == "map":
            return m
        if self.kind == "channels_last":
            return m.permute(0, 2, 3, 1)
        flat = m.flatten(2).transpose(1, 2)  # B x hw x C
        if flat.shape[1] == 1 and self.grid != (1, 1):
            return flat
        if not self.prefix:
            return flat
        if prefix_tokens is None:
            prefix_tokens = torch.ones(flat.shape[0], self.prefix, flat.shape[2], dtype=flat.dtype, device=flat.device)
        return torch.cat([prefix_tokens.to(flat.dtype), flat], dim=1)

    def describe(self) -> str:
        """One line naming the reshape (what `overfocus.attribute` and the CLI report)."""
        h, w = self.grid
        if self.kind == "map":
            return "feature map B x C x H x W (no reshape)"
        if self.kind == "channels_last":
            return f"channels last: B x {h} x {w} x C -> B x C x {h} x {w}"
        dropped = f"{self.prefix} prefix token{'s' if self.prefix != 1 else ''} dropped, " if self.prefix else ""
        return f"tokens: {dropped}{h * w} grid tokens -> {h} x {w}"


MAP = TokenLayout()


# ---- what the model says about itself ------------------------------------------------------------
def patch_embedding(model: nn.Module) -> Optional[Tuple[str, nn.Conv2d]]:
    """(name, module) of the patch embedding: the model's first Conv2d, if its kernel equals its
    stride (> 1); None for a convolutional network (its first conv overlaps its windows).

    Example:
        >>> patch_embedding(nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.ReLU()))[0]
        '0'
        >>> patch_embedding(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())) is None
        True
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            return (name, module) if kernel == stride and min(stride) > 1 else None
    return None


def patch_grid(model: nn.Module, size: Sequence[int]) -> Optional[Grid]:
    """The patch embedding's output grid for an H x W input (None: no patch embedding).

    Example:
        >>> patch_grid(nn.Sequential(nn.Conv2d(3, 8, 8, stride=8)), (64, 32))
        (8, 4)
    """
    found = patch_embedding(model)
    if found is None:
        return None
    conv = found[1]
    if isinstance(conv.padding, str):
        pads: Tuple[int, int] = (0, 0)
    else:
        pads = tuple(conv.padding)  # type: ignore[assignment]
    return tuple(  # type: ignore[return-value]
        (int(size[i]) + 2 * pads[i] - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1) // conv.stride[i] + 1
        for i in range(2))


def stage_grids(grid: Grid, stages: int = 6) -> List[Grid]:
    """The patch grid and its halvings (the grids of a windowed model's stages), largest first.

    Example:
        >>> stage_grids((8, 6), 3)
        [(8, 6), (4, 3), (2, 2)]
    """
    out: List[Grid] = []
    for k in range(stages):
        g = (math.ceil(grid[0] / 2 ** k), math.ceil(grid[1] / 2 ** k))
        if g not in out:
            out.append(g)
    return out


def prefix_tokens(model: nn.Module) -> int:
    """Class / distillation / register tokens ahead of the grid, from the model's attributes:
    `num_prefix_tokens` (timm, ours), else a `class_token` parameter (torchvision: 1), else 0.

    Example:
        >>> m = nn.Module(); m.num_prefix_tokens = 2
        >>> prefix_tokens(m), prefix_tokens(nn.Linear(2, 2))
        (2, 0)
    """
    declared = getattr(model, "num_prefix_tokens", None)
    if isinstance(declared, int):
        return declared
    return 1 if isinstance(getattr(model, "class_token", None), torch.Tensor) else 0


def is_token_model(model: nn.Module) -> bool:
    """A patch embedding and at least one transformer block (see `token_layer`)."""
    return patch_embedding(model) is not None and _last_block(model) is not None


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _is_layer_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__ in ("LayerNorm", "LayerNorm2d", "RmsNorm")


def _last_block(model: nn.Module) -> Optional[Tuple[str, nn.Module]]:
    """(name, module) of the last transformer block: a module with an attention child and a
    LayerNorm child (in the order the modules are defined)."""
    found = None
    for name, module in model.named_modules():
        children = list(module.children())
        if any(_is_attention(c) for c in children) and any(_is_layer_norm(c) for c in children):
            found = (name, module)
    return found


def token_layer_name(model: nn.Module) -> Optional[str]:
    """The first LayerNorm child of the last transformer block, None for a model without blocks or
    without a patch embedding (a CNN).

    Example:
        >>> from overfocus.models import build_model
        >>> token_layer_name(build_model("vit_tiny", 3, width=0.25))
        'blocks.11.norm1'
        >>> token_layer_name(build_model("cifarnet", 3, width=0.125)) is None
        True
    """
    if patch_embedding(model) is None:
        return None
    block = _last_block(model)
    if block is None:
        return None
    name, module = block
    first_norm = next(child for child, m in module.named_children() if _is_layer_norm(m))
    return f"{name}.{first_norm}" if name else first_norm


# ---- the layout of one layer's output ------------------------------------------------------------
def layout_of(model: nn.Module, module: nn.Module, shape: Sequence[int], size: Sequence[int],
              layer: str = "") -> TokenLayout:
    """How `module`'s output of `shape` (for H x W = `size` inputs) becomes a map; a one-line error
    for an output that is neither a map nor a token grid of the model.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 6, 4, stride=4))
        >>> layout_of(m, m[0], (1, 6, 2, 2), (8, 8))
        TokenLayout(kind='map', grid=(0, 0), prefix=0)
        >>> m.num_prefix_tokens = 1
        >>> layout_of(m, nn.LayerNorm(6), (1, 5, 6), (8, 8))
        TokenLayout(kind='tokens', grid=(2, 2), prefix=1)
    """
    shape = tuple(int(s) for s in shape)
    grid = patch_grid(model, size)
    if len(shape) == 4:
        return _four_d_layout(module, shape, grid)
    if len(shape) == 3 and grid is not None:
        prefix = prefix_tokens(model)
        for g in stage_grids(grid):
            if g[0] * g[1] == shape[1] - prefix:
                return TokenLayout("tokens", g, prefix)
            if prefix and g[0] * g[1] == shape[1]:  # a windowed stage's tokens: no prefix
                return TokenLayout("tokens", g, 0)
        raise OverfocusError(f"layer {layer!r} outputs {shape[1]} tokens, which are no grid of the model's "
                             f"{grid[0]} x {grid[1]} patches (with {prefix} prefix token(s)): pass a layer of "
                             "the transformer blocks (e.g. blocks.N.norm1)")
    what = "a patch grid" if grid is not None else "a B x C x H x W feature map"
    raise OverfocusError(f"layer {layer!r} outputs {shape}; the layer maps need {what}: pass a convolutional "
                         "layer or block" + (", or a transformer block's layer" if grid is not None else ""))


def _four_d_layout(module: nn.Module, shape: Tuple[int, ...], grid: Optional[Grid]) -> TokenLayout:
    if grid is None:
        return MAP
    grids = stage_grids(grid)
    last, first = shape[1:3] in grids, shape[2:4] in grids
    if last and (not first or _normalises_last_dim(module, shape[3])):
        return TokenLayout("channels_last", (shape[1], shape[2]))
    return MAP


def _normalises_last_dim(module: nn.Module, size: int) -> bool:
    return any(_is_layer_norm(m) and tuple(getattr(m, "normalized_shape", ())) == (size,) for m in module.modules())


@torch.no_grad()
def find_token_layer(model: nn.Module, images: torch.Tensor) -> Optional[Tuple[str, TokenLayout]]:
    """(layer, layout) a transformer's maps come from, checked on one image; None for a CNN.

    Example:
        >>> from overfocus.models import build_model
        >>> find_token_layer(build_model("vit_tiny", 3, width=0.25), torch.zeros(1, 3, 32, 32))
        ('blocks.11.norm1', TokenLayout(kind='tokens', grid=(4, 4), prefix=1))
    """
    name = token_layer_name(model)
    if name is None:
        return None
    module = dict(model.named_modules())[name]
    shape = _output_shape(model, module, images[:1])
    if shape is None:
        return None
    layout = layout_of(model, module, shape, images.shape[-2:], name)
    return (name, layout) if not layout.is_map else None


def _output_shape(model: nn.Module, module: nn.Module, image: torch.Tensor) -> Optional[Tuple[int, ...]]:
    seen: List[Tuple[int, ...]] = []

    def hook(_m, _i, out):
        if torch.is_tensor(out) and not seen:
            seen.append(tuple(out.shape))

    was_training = model.training
    try:
        model.eval()
        with Hooks().forward(module, hook):
            model(image)
    finally:
        model.train(was_training)
    return seen[0] if seen else None


def layer_layout(model: nn.Module, layer: str, images: torch.Tensor) -> TokenLayout:
    """The layout of `layer`'s output for inputs of `images`' size (one image's forward).

    Example:
        >>> from overfocus.models import build_model
        >>> print(layer_layout(build_model("vit_tiny", 3, width=0.25), "blocks.11.norm1",
        ...                    torch.zeros(1, 3, 64, 64)).describe())
        tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8
    """
    module = get_module(model, layer, "--layer")
    with torch.no_grad():
        shape = _output_shape(model, module, images[:1])
    if shape is None:
        raise OverfocusError(f"layer {layer!r} gives no tensor output in a forward pass: pass another --layer")
    return layout_of(model, module, shape, images.shape[-2:], layer)
