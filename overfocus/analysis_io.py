"""Compatibility alias: this module is now `overfocus.analysis.storage` (the same module object)."""
import sys

from .analysis import storage as _moved

sys.modules[__name__] = _moved
