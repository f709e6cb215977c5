"""Attribution maps following the conventions of specs/METRICS.md (docs/conventions.md)."""
from .api import attribute, normalize_maps
from .context import attribution_mode
from .layer import LayerGradients, grad_cam_raw, layer_cams, layer_gradients, sgdrop_raw, upsample
from . import random_map  # noqa: F401  (registers `random`)
from .methods import ATTRIBUTIONS, DEFAULT_METHODS, AttributionMethod, AttributionRequest, method_info, register_method

__all__ = ["attribute", "normalize_maps", "attribution_mode", "ATTRIBUTIONS", "AttributionRequest",
           "AttributionMethod", "DEFAULT_METHODS", "method_info", "register_method",
           "LayerGradients", "layer_gradients", "layer_cams", "grad_cam_raw", "sgdrop_raw", "upsample"]
