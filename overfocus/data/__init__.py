"""Datasets with boxes behind one sample type; registered kinds are filled by the imports below."""
from .base import Batch, collate_samples, dataset_labels, image_id_at, is_readable, normalize, skipped_files
from .specs import DATASETS, open_dataset, parse_spec
from . import builtin  # noqa: F401  (registers `builtin`)
from . import coco, cub, folder, tiny_imagenet, voc, yolo  # noqa: F401  (register the file formats)
from . import clickme, heatmap_folder, osie  # noqa: F401  (register the human-map kinds)

__all__ = ["Batch", "collate_samples", "dataset_labels", "image_id_at", "is_readable", "normalize", "skipped_files", "DATASETS",
           "open_dataset", "parse_spec"]
