"""Compatibility alias: this module is now `overfocus.analysis.shards` (the same module object)."""
import sys

from .analysis import shards as _moved

sys.modules[__name__] = _moved
