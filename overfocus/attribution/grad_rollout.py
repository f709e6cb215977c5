"""Gradient-weighted attention rollout (Chefer, Gur & Wolf, ICCV 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers", Eqs. 5-6; the
successor of their CVPR 2021 "Transformer Interpretability Beyond Attention Visualization").

Per block the attention probabilities P are weighted by the gradient of the target logit with
respect to them and only the positive part kept, averaged over the heads: A = E_h[(dy/dP * P)+].
The relevance starts as the identity and accumulates R <- R + A R over the blocks in forward
order; the map is the class token's row of R over the patch tokens (no class token: the mean row
of the patch tokens), on the patch grid, bilinearly upsampled. One forward and one backward to
the attention probabilities, the forward shared with `attention_rollout`.
"""
from __future__ import annotations

from typing import List

import torch

from .attention import attention_pass, rollout_map
from .layer import upsample
from .methods import AttributionRequest, register_method


def gradient_rollout_relevance(maps: List[torch.Tensor], grads: List[torch.Tensor]) -> torch.Tensor:
    """B x N x N relevance from per-block probabilities and their gradients (B x heads x N x N).

    Example:
        >>> p = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])
        >>> g = torch.tensor([[[[0.0, 2.0], [1.0, -1.0]]]])   # A = relu(g * p) = [[0, 1], [0, 0]]
        >>> gradient_rollout_relevance([p], [g]).tolist()      # I + A I
        [[[1.0, 1.0], [0.0, 1.0]]]
    """
    relevance = None
    for probs, grad in zip(maps, grads):
        a = torch.relu(grad.float() * probs.detach().float()).mean(dim=1)
        if relevance is None:
            relevance = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a).clone()
        relevance = relevance + a @ relevance
    return relevance


@register_method("grad_rollout", "gradient-weighted rollout", yields_logits=True, forward_pass="attention")
def grad_rollout(req: AttributionRequest) -> torch.Tensor:
    """Chefer et al.'s gradient-weighted attention rollout of the target class over the patch grid."""
    found = attention_pass(req)
    raw = rollout_map(gradient_rollout_relevance(found.maps, found.gradients(req.targets)), found.prefix, found.grid)
    return upsample(raw, req.size)
