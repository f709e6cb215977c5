"""A subset of a dataset that keeps the attributes the stages read (classes, has_boxes, image ids).

The one implementation used by train (the fixed train subset), analyze (--limit, a rank's share)
and audit (evenly spaced test images).

Example:
    >>> from overfocus.data import open_dataset
    >>> part = Subset(open_dataset("builtin?test=6", "test", 32), [1, 3])
    >>> len(part), part.image_id(1), part.classes == part.dataset.classes
    (2, 'test_000003', True)
"""
from __future__ import annotations

import torch

from .base import image_id_at


class Subset(torch.utils.data.Subset):
    """torch Subset that keeps `classes`, `has_boxes` and the cheap `image_id(index)` of its dataset."""

    @property
    def classes(self):
        return self.dataset.classes

    @property
    def has_boxes(self):
        return getattr(self.dataset, "has_boxes", False)

    def image_id(self, index: int) -> str:
        return image_id_at(self.dataset, self.indices[index])
