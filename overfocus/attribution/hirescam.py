"""HiResCAM (Draelos & Carin, 2020): the gradient multiplies the activation element-wise before
the channel sum, so the map is exactly the contribution of each location to the logit when the
head after the layer is linear (Grad-CAM's averaged gradients blur it)."""
from __future__ import annotations

import torch

from .layer import LayerGradients
from .methods import AttributionRequest, register_method, shared_layer_map


def hirescam_raw(grads: LayerGradients) -> torch.Tensor:
    """relu(sum_c g_c * A_c), B x h x w (SGDrop's map clips each channel's term before the sum).

    Example:
        >>> a, g = torch.ones(1, 2, 1, 1), torch.tensor([[[[2.0]], [[-3.0]]]])
        >>> hirescam_raw(LayerGradients(a, g, torch.zeros(1, 2))).tolist()
        [[[0.0]]]
    """
    return torch.relu((grads.gradients.float() * grads.activations.float()).sum(dim=1))


@register_method("hirescam", "HiResCAM", yields_logits=True, forward_pass="layer", layer_map=hirescam_raw)
def hirescam(req: AttributionRequest) -> torch.Tensor:
    """HiResCAM at `req.layer`: element-wise gradient x activation, channel sum, ReLU, upsampled."""
    return shared_layer_map(req, "hirescam")
