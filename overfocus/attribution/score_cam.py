"""Score-CAM (Wang et al., CVPR-W 2020, Algorithm 1): each channel of the layer, upsampled to
the input size and min-max scaled to [0, 1], masks the (normalised) input; the target logits of
the C masked copies, softmax-ed over the channels, weight the channels: relu(sum_k alpha_k A_k).
The baseline term f(X_b) of the paper cancels in the softmax. Gradient-free; the layer pass
gives the activations (and is shared with the gradient CAMs of the same call).

Cost: B x C forwards, in chunks of `batch_size` masked copies (`--method-args
score_cam.batch_size=N`, default 64). Masks are upsampled bilinearly with align_corners=False, as
every map of overfocus and the authors' code are; pytorch-grad-cam uses align_corners=True
(`UpsamplingBilinear2d`), the one difference between the two (docs/conventions.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .layer import upsample
from .methods import AttributionRequest, layer_pass, register_method
from .perturbed import PerturbationParams, scores_per_channel


def unit_masks(activations: torch.Tensor, size) -> torch.Tensor:
    """n x h x w activation maps -> n x H x W masks, each min-max scaled to [0, 1] (a constant map
    gives an all-zero mask).

    Example:
        >>> unit_masks(torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]]]), (1, 2)).tolist()
        [[[0.0, 1.0]], [[0.0, 0.0]]]
    """
    up = upsample(activations.float(), size)
    flat = up.flatten(1)
    low, high = flat.amin(dim=1)[:, None, None], flat.amax(dim=1)[:, None, None]
    span = high - low
    return torch.where(span > 0, (up - low) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(up))


@register_method("score_cam", "Score-CAM", yields_logits=True, params=PerturbationParams, uses_layer=True)
def score_cam(req: AttributionRequest) -> torch.Tensor:
    """Score-CAM at `req.layer`: channels weighted by the softmax of the logits of the masked inputs."""
    params: PerturbationParams = req.args("score_cam")
    acts = layer_pass(req).activations
    b, c = acts.shape[:2]

    def masked_logits(image_idx: torch.Tensor, channel_idx: torch.Tensor) -> torch.Tensor:
        masks = unit_masks(acts[image_idx, channel_idx], req.size)
        return req.model(req.images[image_idx] * masks[:, None].to(req.images.dtype))

    weights = F.softmax(scores_per_channel(b, c, params.batch_size, req.targets, masked_logits), dim=1)
    raw = torch.relu((weights[:, :, None, None] * acts.float()).sum(dim=1))
    return upsample(raw, req.size)
