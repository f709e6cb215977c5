"""Registered CNNs and vision transformers, each declaring its latent layer (METHODS.md) and default Grad-CAM layer."""
from . import zoo, vit  # noqa: F401  (registers the models)
from .registry import MODELS, ModelEntry, build_model, check_model_size, get_module, latent_layer_name, register_model

__all__ = ["MODELS", "ModelEntry", "build_model", "check_model_size", "get_module", "latent_layer_name", "register_model"]
