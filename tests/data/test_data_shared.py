"""The real data of ../shared/data through the loaders (skipped where that folder is absent)."""
from __future__ import annotations

import numpy as np
import pytest

from overfocus.data import collate_samples, open_dataset
from tests.conftest import shared_data


def check_boxes_inside(dataset, width_height=None) -> None:
    """Every record has one box with positive area inside its image (64 px when given)."""
    for path, _, boxes, _ in dataset.records:
        assert boxes.shape == (1, 4), path
        x0, y0, x1, y1 = boxes[0]
        assert x1 > x0 >= 0 and y1 > y0 >= 0, path
        if width_height:
            assert x1 <= width_height[0] and y1 <= width_height[1], path


@pytest.mark.parametrize("split, count", [("train", 5000), ("test", 500)])
def test_tiny_imagenet_10(split, count):
    root = shared_data("tiny-imagenet-10")
    ds = open_dataset(f"tiny-imagenet:{root}", split, 64)
    assert len(ds) == count and len(ds.classes) == 10 and ds.classes == sorted(ds.classes)
    assert np.bincount([r[1] for r in ds.records]).tolist() == [count // 10] * 10
    check_boxes_inside(ds, (64, 64))
    batch = collate_samples([ds[i] for i in range(0, count, count // 8)][:8])
    assert batch.images.shape == (8, 3, 64, 64) and 0 <= batch.images.min() <= batch.images.max() <= 1
    assert all(((b >= 0) & (b <= 64)).all() for b in batch.boxes)


def test_tiny_imagenet_10_greyscale_becomes_rgb():
    import cv2

    root = shared_data("tiny-imagenet-10")
    ds = open_dataset(f"tiny-imagenet:{root}", "train", 64)
    grey = next(i for i, r in enumerate(ds.records[:1000]) if cv2.imread(r[0], cv2.IMREAD_UNCHANGED).ndim == 2)
    image = ds[grey]["image"]
    assert image.shape == (3, 64, 64)
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()


@pytest.mark.parametrize("split, count", [("train", 300), ("test", 243)])
def test_cub_10_classes(split, count):
    root = shared_data("cub-200-2011-10cls")
    ds = open_dataset(f"cub:{root}", split, 64)
    assert len(ds) == count and len(ds.classes) == 10
    assert ds.classes[0] == "001.Black_footed_Albatross"
    assert sorted({r[1] for r in ds.records}) == list(range(10))
    check_boxes_inside(ds)
    for i in range(0, count, count // 5):
        s = ds[i]
        assert s["image"].shape == (3, 64, 64) and s["boxes"].shape == (1, 4)
        assert (s["boxes"] >= 0).all() and (s["boxes"] <= 64).all()


def test_cub_boxes_fit_their_images():
    import cv2

    root = shared_data("cub-200-2011-10cls")
    ds = open_dataset(f"cub:{root}", "test", 64)
    for path, _, boxes, _ in ds.records[::40]:
        h, w = cv2.imread(path).shape[:2]
        assert boxes[0, 2] <= w + 1 and boxes[0, 3] <= h + 1, path
