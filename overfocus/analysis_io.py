"""Compatibility re-export: this module moved to `overfocus.analysis.storage`; import from there."""
from .analysis.storage import *  # noqa: F401,F403
