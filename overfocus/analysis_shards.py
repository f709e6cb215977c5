"""Compatibility re-export: this module moved to `overfocus.analysis.shards`; import from there."""
from .analysis.shards import *  # noqa: F401,F403
