"""Grad-CAM++ (Chattopadhay et al., WACV 2018), from the layer pass that Grad-CAM shares.

The channel weight sums the positive gradients with pixel weights alpha (the paper's Eq. 19, the
closed form for an exponential of the logit): alpha = g^2 / (2 g^2 + sum_ab(A) g^3), which is
1 / (2 + sum_ab(A) g) wherever g != 0 (and 0 where g = 0). Written in that reduced form no small
number is squared or cubed, so no epsilon is needed; pytorch-grad-cam adds 1e-6 to the
denominator instead, which matters only where |g| is below about 1e-3 (docs/conventions.md).
"""
from __future__ import annotations

import torch

from .layer import LayerGradients
from .methods import AttributionRequest, register_method, shared_layer_map


def grad_cam_pp_raw(grads: LayerGradients) -> torch.Tensor:
    """relu(sum_c w_c A_c), w_c = sum_ab alpha_ab relu(g_ab): B x h x w at layer resolution.

    Example:
        >>> a = torch.ones(1, 1, 2, 2)
        >>> g = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
        >>> grad_cam_pp_raw(LayerGradients(a, g, torch.zeros(1, 2))).tolist()  # alpha = 1 / (2 + 4)
        [[[0.1666666716337204, 0.1666666716337204], [0.1666666716337204, 0.1666666716337204]]]
    """
    g, a = grads.gradients.float(), grads.activations.float()
    denominator = 2 + a.sum(dim=(2, 3), keepdim=True) * g
    alpha = torch.where((g != 0) & (denominator != 0), denominator.reciprocal(), torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(dim=1))


@register_method("grad_cam_pp", "Grad-CAM++", yields_logits=True, forward_pass="layer", layer_map=grad_cam_pp_raw)
def grad_cam_pp(req: AttributionRequest) -> torch.Tensor:
    """Grad-CAM++ at `req.layer`: positive gradients weighted per pixel, bilinearly upsampled."""
    return shared_layer_map(req, "grad_cam_pp")
