"""Attribution maps following the conventions of specs/METRICS.md (docs/conventions.md)."""
from .api import attribute, normalize_maps
from .context import attribution_mode
from .layer import LayerGradients, grad_cam_raw, layer_cams, layer_gradients, sgdrop_raw, upsample
from .methods import (ATTRIBUTIONS, DEFAULT_METHODS, AttributionMethod, AttributionRequest, check_method_args,
                      method_info, register_method)
# one file per method beyond methods.py; importing them registers them
from . import grad_cam_pp, hirescam, xgradcam, layercam, eigencam, score_cam, ablation_cam  # noqa: F401,E402
from . import captum_methods  # noqa: F401,E402  (the captum:ClassName family)
from . import random_map  # noqa: F401,E402  (registers `random`)
from . import rollout, grad_rollout  # noqa: F401,E402  (the transformer-native maps)

__all__ = ["attribute", "normalize_maps", "attribution_mode", "ATTRIBUTIONS", "AttributionRequest",
           "AttributionMethod", "DEFAULT_METHODS", "check_method_args", "method_info", "register_method",
           "LayerGradients", "layer_gradients", "layer_cams", "grad_cam_raw", "sgdrop_raw", "upsample"]
