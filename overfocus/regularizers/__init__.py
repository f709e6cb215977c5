"""Training-time regularizers (METHODS.md); each module registers its method on import."""
from .base import REGULARIZERS, RegContext, Regularizer, StepInfo, build_regularizer, latent_hook
from . import dropout  # noqa: F401
from . import sgdrop, excitation_dropout, catchup_mix, guidance, saliency_guided  # noqa: F401

__all__ = ["REGULARIZERS", "RegContext", "Regularizer", "StepInfo", "build_regularizer", "latent_hook"]
