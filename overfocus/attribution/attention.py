"""The attention probabilities of a vision transformer's blocks, read during one forward.

What the rollout methods (`rollout.py`, `grad_rollout.py`) need: for each block, in forward
order, softmax(q k^T / sqrt(d)) as B x heads x N x N, as the tensor the block itself multiplies
with its values (so that the gradient of a logit with respect to it is defined). Two kinds of
attention module are read:

- timm-style `Attention` (timm ViT / DeiT / BEiT and `overfocus.models.vit`): a module with
  `qkv`, `attn_drop` and a `fused_attn` switch. The switch is set to False for the pass (the
  fused kernel never materialises the probabilities) and restored; the probabilities are the
  output of `attn_drop` (the identity in eval mode), read by a forward hook.
- `torch.nn.MultiheadAttention` (torchvision `vit_*`): its fast path returns no probabilities on
  the graph, so for the pass its `forward` is an explicit self-attention with the module's own
  weights (`explicit_self_attention`, equal to torch's to float precision) and restored after.

Every hook is removed and every switch restored when the pass ends, also on an exception.

Example:
    >>> from overfocus.models import build_model
    >>> m = build_model("vit_tiny", 3, width=0.25).eval()
    >>> with AttentionRecorder(m) as rec:
    ...     _ = m(torch.zeros(1, 3, 32, 32))
    >>> len(rec.maps), tuple(rec.maps[0].shape), m.blocks[0].attn.fused_attn
    (12, (1, 3, 17, 17), True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models.hooks import Hooks
from ..models.tokens import patch_grid, prefix_tokens


def _timm_style(module: nn.Module) -> bool:
    return hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module) \
        and hasattr(module, "qkv")


def attention_modules(model: nn.Module) -> List[nn.Module]:
    """The global self-attention modules of the model, in definition order (= forward order of
    the blocks). Windowed attention (Swin) has no token-to-token matrix over the image: not listed."""
    return [m for m in model.modules() if isinstance(m, nn.MultiheadAttention) or
            (_timm_style(m) and "Window" not in type(m).__name__)]


def explicit_self_attention(mha: nn.MultiheadAttention, store: List[torch.Tensor]) -> Callable:
    """A `forward` for `mha` computing softmax(q k^T / sqrt(d)) v with its own weights, appending
    the B x heads x N x N probabilities to `store` (self-attention, packed in-projection, no masks)."""

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key_padding_mask is not None or attn_mask is not None or is_causal or mha.bias_k is not None \
                or mha.add_zero_attn or mha.in_proj_weight is None or not (query is key is value):
            raise OverfocusError("the attention rollout reads plain self-attention only; this MultiheadAttention "
                                 "has masks, separate projections or cross-attention")
        x = query if mha.batch_first else query.transpose(0, 1)
        b, n, e = x.shape
        heads = mha.num_heads
        qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).view(b, n, 3, heads, e // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(e // heads)).softmax(dim=-1)
        store.append(attn)
        out = mha.out_proj((attn @ v).transpose(1, 2).reshape(b, n, e))
        out = out if mha.batch_first else out.transpose(0, 1)
        weights = (attn.mean(dim=1) if average_attn_weights else attn) if need_weights else None
        return out, weights

    return forward


class AttentionRecorder:
    """Context manager: inside, each forward of the model appends every block's attention
    probabilities to `maps` (forward order); outside, the model is as before."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.modules = attention_modules(model)
        if not self.modules:
            raise OverfocusError(f"{type(model).__name__} has no global self-attention (a ViT, DeiT or BEiT "
                                 "block): the rollout methods need one; use grad_cam on its token grid")
        self.maps: List[torch.Tensor] = []
        self._undo: List[Callable[[], Any]] = []
        self._hooks = Hooks()

    def __enter__(self) -> "AttentionRecorder":
        try:
            for module in self.modules:
                self._attach(module)
        except BaseException:
            self._restore()
            raise
        return self

    def _attach(self, module: nn.Module) -> None:
        if isinstance(module, nn.MultiheadAttention):
            module.forward = explicit_self_attention(module, self.maps)
            self._undo.append(lambda m=module: delattr(m, "forward"))
            return
        fused = module.fused_attn
        module.fused_attn = False
        self._undo.append(lambda m=module, f=fused: setattr(m, "fused_attn", f))
        self._hooks.forward(module.attn_drop, self._keep)

    def _keep(self, _module, _inputs, out: torch.Tensor) -> torch.Tensor:
        """Record the probabilities; a constant one becomes a leaf on the graph (its gradient is
        still defined: the block multiplies its values with the tensor returned here)."""
        if not out.requires_grad and torch.is_grad_enabled():
            out = out.detach().requires_grad_(True)
        self.maps.append(out)
        return out

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        self._hooks.remove()
        for undo in reversed(self._undo):
            undo()
        self._undo = []


@dataclass
class AttentionPass:
    """One forward's attention probabilities (per block, B x heads x N x N, on the graph of an
    input that needs grad), its logits, and how the N tokens sit on the patch grid."""

    maps: List[torch.Tensor]
    logits: torch.Tensor
    prefix: int
    grid: Tuple[int, int]

    def gradients(self, targets: torch.Tensor) -> List[torch.Tensor]:
        """d(target logits) / d(attention probabilities), per block (computed once per pass)."""
        score = self.logits.gather(1, targets.view(-1, 1)).sum()
        return [g.detach() for g in torch.autograd.grad(score, self.maps)]


def attention_pass(req) -> AttentionPass:
    """The call's one recorded forward (cached in `req.cache`: rollout and gradient rollout share it)."""
    if "attention" not in req.cache:
        x = req.images.detach().clone().requires_grad_(True)  # parameters are frozen: the graph needs it
        with AttentionRecorder(req.model) as rec:
            logits = req.forward_fn()(x)
        grid = patch_grid(req.model, req.size)
        if grid is None:
            raise OverfocusError("the rollout methods need a patch embedding (a first Conv2d with kernel = "
                                 "stride) to place the tokens on the image")
        prefix = prefix_tokens(req.model)
        n = rec.maps[0].shape[-1]
        if n - prefix != grid[0] * grid[1]:
            raise OverfocusError(f"the attention covers {n} tokens, not {prefix} prefix token(s) and the "
                                 f"{grid[0]} x {grid[1]} patch grid: the rollout methods need a plain ViT")
        req.cache["attention"] = AttentionPass(rec.maps, logits, prefix, grid)
    return req.cache["attention"]


def rollout_map(relevance: torch.Tensor, prefix: int, grid: Tuple[int, int]) -> torch.Tensor:
    """B x N x N token relevance -> B x h x w: the class token's row over the grid tokens (the
    first prefix token is the class token); without prefix tokens the mean row of the grid tokens.

    Example:
        >>> r = torch.eye(5)[None]; r[0, 0, 1:] = torch.tensor([1., 2., 3., 4.])
        >>> rollout_map(r, 1, (2, 2)).tolist()
        [[[1.0, 2.0], [3.0, 4.0]]]
    """
    row = relevance[:, 0, prefix:] if prefix else relevance[:, prefix:, prefix:].mean(dim=1)
    return row.reshape(relevance.shape[0], *grid)
