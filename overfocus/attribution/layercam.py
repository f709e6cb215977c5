"""LayerCAM (Jiang et al., IEEE TIP 2021): each location's activation weighted by its own positive
gradient, relu(sum_c relu(g_c) * A_c). On a post-ReLU layer (A >= 0) it equals the SGDrop map,
sum_c relu(g_c * A_c); on a layer with negative activations the two differ."""
from __future__ import annotations

import torch

from .layer import LayerGradients
from .methods import AttributionRequest, register_method, shared_layer_map


def layercam_raw(grads: LayerGradients) -> torch.Tensor:
    """relu(sum_c relu(g_c) * A_c), B x h x w.

    Example:
        >>> a, g = torch.tensor([[[[-1.0]], [[2.0]]]]), torch.tensor([[[[1.0]], [[-1.0]]]])
        >>> layercam_raw(LayerGradients(a, g, torch.zeros(1, 2))).tolist()
        [[[0.0]]]
    """
    return torch.relu((torch.relu(grads.gradients.float()) * grads.activations.float()).sum(dim=1))


@register_method("layercam", "LayerCAM", yields_logits=True, forward_pass="layer", layer_map=layercam_raw)
def layercam(req: AttributionRequest) -> torch.Tensor:
    """LayerCAM at `req.layer`: activations weighted by their positive gradients, upsampled."""
    return shared_layer_map(req, "layercam")
