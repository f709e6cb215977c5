"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): a channel's weight is the relative drop of the
target logit when that channel of the layer is set to zero, w_k = (y - y_k) / y, and the map is
relu(sum_k w_k A_k). Gradient-free: the layer pass gives the activations and y; the ablated
activations go through the part of the network after the layer only (`HeadRunner`, the model
surgery SGDrop uses), in chunks of `batch_size` copies (`--method-args ablation_cam.batch_size=N`,
default 64). An image whose target logit y is exactly 0 gets an all-zero (degenerate) map.

As in the paper the channel is zeroed; pytorch-grad-cam does so only when the layer's activations
have minimum 0 (a post-ReLU layer) and otherwise writes min - 1e7 (docs/conventions.md).
On a transformer's token layer the channel is zeroed on the grid tokens; the class / register
tokens are fed back unchanged.
"""
from __future__ import annotations

import torch

from ..regularizers.common import HeadRunner  # model surgery shared with SGDrop
from .layer import upsample
from .methods import AttributionRequest, layer_pass, register_method
from .perturbed import PerturbationParams, scores_per_channel


def ablated(activations: torch.Tensor, image_idx: torch.Tensor, channel_idx: torch.Tensor) -> torch.Tensor:
    """Copies of the images' activations with one channel each set to zero.

    Example:
        >>> ablated(torch.ones(1, 2, 1, 1), torch.tensor([0, 0]), torch.tensor([1, 0]))[:, :, 0, 0].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    z = activations[image_idx].clone()
    z[torch.arange(len(image_idx), device=z.device), channel_idx] = 0
    return z


@register_method("ablation_cam", "Ablation-CAM", yields_logits=True, params=PerturbationParams,
                 uses_layer=True)
def ablation_cam(req: AttributionRequest) -> torch.Tensor:
    """Ablation-CAM at `req.layer`: channels weighted by the relative logit drop when each is zeroed."""
    params: PerturbationParams = req.args("ablation_cam")
    grads = layer_pass(req)
    acts = grads.activations
    y = grads.logits.float().gather(1, req.targets.view(-1, 1))  # B x 1
    head = HeadRunner(req.model, req.layer, req.images[:1])

    layout, output = grads.layout, grads.output  # a token layer: the ablated grid goes back as tokens
    prefix = output[:, :layout.prefix] if output is not None and layout.prefix else None

    def ablated_logits(image_idx: torch.Tensor, channel_idx: torch.Tensor) -> torch.Tensor:
        z = layout.from_map(ablated(acts, image_idx, channel_idx), None if prefix is None else prefix[image_idx])
        return head(z, req.images[image_idx])

    dropped = y - scores_per_channel(acts.shape[0], acts.shape[1], params.batch_size, req.targets, ablated_logits)
    weights = torch.where(y != 0, dropped / torch.where(y != 0, y, torch.ones_like(y)), torch.zeros_like(dropped))
    raw = torch.relu((weights[:, :, None, None] * acts.float()).sum(dim=1))
    return upsample(raw, req.size)
