"""Datasets with boxes behind one sample type; registered kinds are filled by the imports below."""
from .base import Batch, collate_samples, normalize
from .specs import DATASETS, open_dataset, parse_spec
from . import builtin  # noqa: F401  (registers `builtin`)

__all__ = ["Batch", "collate_samples", "normalize", "DATASETS", "open_dataset", "parse_spec"]
