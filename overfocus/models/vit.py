"""The registered vision transformers `vit_tiny` and `vit_small` for 32-128 px inputs.

A plain ViT (Dosovitskiy et al. 2021) with a class token, learned position embeddings and pre-norm
blocks; the sizes are DeiT's (Touvron et al. 2021): tiny = 192 dims, 3 heads; small = 384 dims,
6 heads; 12 blocks, MLP ratio 4. `width` scales the embedding (a multiple of the head count, at
least 8 dims a head); the patch is 8 px, 4 px with `small_input` (a 64 px image gives an 8 x 8,
resp. 16 x 16 token grid). The position embeddings are learned for the grid of a 64 px input and
resized bicubically for other input sizes, so one model takes 32-128 px images.

Module names follow timm's ViT (`patch_embed.proj`, `cls_token`, `blocks.N.norm1`, `blocks.N.attn`
with `qkv`, `attn_drop`, `proj` and a `fused_attn` switch, `norm`, `head`), so the token-grid
discovery (`models/tokens.py`) and the attention hooks of the rollout methods read ours, timm's
and DeiT's alike. Declared layers: latent = Grad-CAM layer = `blocks.11.norm1`, the normalised
tokens entering the last block: every patch token reaches the class token there, and only through
the last attention (so dropping a token there removes it from the decision, docs/methods.md).

Example:
    >>> m = build_vit(10, dim=48, heads=3, patch=8)
    >>> m(torch.randn(2, 3, 64, 64)).shape, m(torch.randn(1, 3, 32, 32)).shape
    (torch.Size([2, 10]), torch.Size([1, 10]))
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_model

DEPTH = 12
BASE_SIZE = 64  # input size the position embeddings are learned for


class PatchEmbed(nn.Module):
    """Non-overlapping patches projected to `dim` channels (a conv with kernel = stride = patch)."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.patch_size = (patch, patch)
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Attention(nn.Module):
    """Multi-head self-attention. `fused_attn` True: torch's scaled_dot_product_attention; False:
    the explicit softmax(q k^T / sqrt(d)), whose probabilities pass through `attn_drop` (where the
    rollout methods read them)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = self.attn_drop((q * self.scale @ k.transpose(-2, -1)).softmax(dim=-1))
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a class token; the head reads the normalised class token."""

    num_prefix_tokens = 1  # the class token ahead of the patch grid (read by models/tokens.py)

    def __init__(self, num_classes: int, dim: int, heads: int, patch: int, depth: int = DEPTH):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        grid = BASE_SIZE // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated normal (std 0.02) for the embeddings and linear layers, zero biases (ViT's)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """1 x (1 + h*w) x C: the class token's and the grid's, the grid resized to h x w."""
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(math.isqrt(grid_pos.shape[1]))
        if (h, w) == (side, side):
            return self.pos_embed
        grid_pos = grid_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid_pos.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x)  # B x C x h x w
        b, _, h, w = patches.shape
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        tokens = self.blocks(tokens + self.position_embedding(h, w))
        return self.head(self.norm(tokens)[:, 0])


def _dim(base: int, heads: int, width: float) -> int:
    """The embedding of `width` x `base` dims: a multiple of `heads`, at least 8 dims a head."""
    return heads * max(8, int(round(base * width / heads)))


def build_vit(num_classes: int, dim: int, heads: int, patch: int) -> VisionTransformer:
    return VisionTransformer(num_classes, dim, heads, patch)


LAST_NORM = f"blocks.{DEPTH - 1}.norm1"
# How the ViTs train unless told otherwise (DeiT's recipe, Touvron et al. 2021, scaled to short
# runs: AdamW, weight decay 0.05, linear warm-up, cosine decay; lr 5e-4 for batches of 64-128).
OPTIM = {"name": "adamw", "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 5, "schedule": "cosine"}


@register_model("vit_tiny", latent_layer=LAST_NORM, optim=OPTIM,
                description="ViT-Ti/8 (DeiT-tiny sizes: 192 dims x width, 3 heads, 12 blocks; patch 4 with small input)")
def vit_tiny(num_classes: int, width: float = 1.0, small_input: bool = False) -> nn.Module:
    return build_vit(num_classes, _dim(192, 3, width), 3, 4 if small_input else 8)


@register_model("vit_small", latent_layer=LAST_NORM, optim=OPTIM,
                description="ViT-S/8 (DeiT-small sizes: 384 dims x width, 6 heads, 12 blocks; patch 4 with small input)")
def vit_small(num_classes: int, width: float = 1.0, small_input: bool = False) -> nn.Module:
    return build_vit(num_classes, _dim(384, 6, width), 6, 4 if small_input else 8)
