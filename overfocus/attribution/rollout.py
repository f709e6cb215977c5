"""Attention rollout (Abnar & Zuidema, ACL 2020, "Quantifying Attention Flow in Transformers").

Per block l the attention probabilities are averaged over the heads, the residual connection is
added as the identity and the rows renormalised: A_l = (mean_h P_l + I) / 2 (each row of P sums
to 1). The rollout multiplies them over the blocks, R = A_L ... A_2 A_1, and the map is the class
token's row of R over the patch tokens (models without a class token: the mean row of the patch
tokens), on the patch grid, bilinearly upsampled to the input size. Gradient-free and
class-agnostic (the target does not matter); one forward, shared with `grad_rollout`, reading
the probabilities through hooks that are removed afterwards (`attention.py`).
"""
from __future__ import annotations

from typing import List

import torch

from .attention import attention_pass, rollout_map
from .layer import upsample
from .methods import AttributionRequest, register_method


def attention_rollout_relevance(maps: List[torch.Tensor]) -> torch.Tensor:
    """B x N x N rollout of per-block B x heads x N x N attention probabilities.

    Example:
        >>> p = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])   # every token attends to token 1
        >>> attention_rollout_relevance([p, p]).tolist()      # ((P + I) / 2)^2
        [[[0.25, 0.75], [0.0, 1.0]]]
    """
    relevance = None
    for probs in maps:
        a = probs.detach().float().mean(dim=1)
        a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        relevance = a if relevance is None else a @ relevance
    return relevance


@register_method("attention_rollout", "attention rollout", yields_logits=True, forward_pass="attention")
def attention_rollout(req: AttributionRequest) -> torch.Tensor:
    """Attention rollout of a ViT: the class token's rolled-out attention over the patch grid."""
    found = attention_pass(req)
    raw = rollout_map(attention_rollout_relevance(found.maps), found.prefix, found.grid)
    return upsample(raw, req.size)
