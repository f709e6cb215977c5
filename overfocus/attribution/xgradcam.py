"""XGrad-CAM (Fu et al., BMVC 2020): Grad-CAM with each channel's gradient averaged with the
channel's own activations as weights, w_c = sum_ab(A_ab g_ab) / sum_ab(A_ab), which satisfies the
paper's sensitivity and conservation axioms. A channel that is zero everywhere gets weight 0."""
from __future__ import annotations

import torch

from .layer import LayerGradients
from .methods import AttributionRequest, register_method, shared_layer_map


def xgradcam_raw(grads: LayerGradients) -> torch.Tensor:
    """relu(sum_c w_c A_c), w_c = sum_ab(A g) / sum_ab(A): B x h x w.

    Example:
        >>> a = torch.tensor([[[[1.0, 3.0]]]])
        >>> g = torch.tensor([[[[2.0, 1.0]]]])
        >>> xgradcam_raw(LayerGradients(a, g, torch.zeros(1, 2))).tolist()  # w = 5 / 4
        [[[1.25, 3.75]]]
    """
    g, a = grads.gradients.float(), grads.activations.float()
    mass = a.sum(dim=(2, 3), keepdim=True)
    weighted = (a * g).sum(dim=(2, 3), keepdim=True)
    weights = torch.where(mass != 0, weighted / torch.where(mass != 0, mass, torch.ones_like(mass)),
                          torch.zeros_like(mass))
    return torch.relu((weights * a).sum(dim=1))


@register_method("xgradcam", "XGrad-CAM", yields_logits=True, forward_pass="layer", layer_map=xgradcam_raw)
def xgradcam(req: AttributionRequest) -> torch.Tensor:
    """XGrad-CAM at `req.layer`: activation-weighted gradient averages per channel, upsampled."""
    return shared_layer_map(req, "xgradcam")
