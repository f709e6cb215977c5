"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the layer's activations projected on their first
principal component; class-agnostic (no gradient is used, the target does not matter).

Per image the h*w x C matrix of activations is centred over the locations and its first right
singular vector v taken; the map is relu(A v). The sign of a singular vector is arbitrary: the
sign is chosen so that the projection's largest magnitude is positive (the rule of Seg-Eigen-CAM,
Chung & Ying 2025, Eq. 13, and of pytorch-grad-cam's `get_2d_projection_with_sign_correction`).
pytorch-grad-cam's EigenCAM keeps whatever sign its SVD returns (docs/conventions.md).
"""
from __future__ import annotations

import torch

from .layer import LayerGradients
from .methods import AttributionRequest, register_method, shared_layer_map


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """B x C x h x w activations -> B x h x w projections on their first principal component,
    signed so that the largest magnitude is positive (batched SVD, one call for the batch).

    Example:
        >>> a = torch.zeros(1, 2, 1, 3)
        >>> a[0, 0, 0] = torch.tensor([0.0, 0.0, 3.0])   # one location stands out
        >>> first_component_projection(a).tolist()
        [[[-1.0, -1.0, 2.0]]]
    """
    b, c, h, w = activations.shape
    x = activations.float().flatten(2).transpose(1, 2)  # B x hw x C
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    projection = (x @ vh[:, 0, :, None])[..., 0]  # B x hw
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    return torch.where(flip[:, None], -projection, projection).reshape(b, h, w)


def eigencam_raw(grads: LayerGradients) -> torch.Tensor:
    """relu of the first-principal-component projection of the activations, B x h x w."""
    return torch.relu(first_component_projection(grads.activations))


@register_method("eigencam", "Eigen-CAM", yields_logits=True, forward_pass="layer", layer_map=eigencam_raw)
def eigencam(req: AttributionRequest) -> torch.Tensor:
    """Eigen-CAM at `req.layer`: first principal component of the activations (class-agnostic)."""
    return shared_layer_map(req, "eigencam")
