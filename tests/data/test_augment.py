"""BoxAwareAugment: the boxes move with the pixels; randomness from (seed, epoch, index) alone."""
from __future__ import annotations

import numpy as np
import pytest

from overfocus.data.transforms import BoxAwareAugment

RECT = (8, 10, 30, 30)  # x0, y0, x1, y1 of a white rectangle on black, 64 x 64 (not centred)


def white_rectangle(size: int = 64) -> tuple:
    img = np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = RECT
    img[y0:y1, x0:x1] = 255
    return img, np.asarray([RECT], np.float32)


def white_bbox(img: np.ndarray):
    ys, xs = np.nonzero(img.max(2) > 127)
    return None if len(xs) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_box_follows_crop_and_flip():
    aug = BoxAwareAugment(size=64, seed=0)
    checked = 0
    for index in range(40):
        img, boxes = aug(*white_rectangle(), index)
        assert img.shape == (64, 64, 3) and boxes.dtype == np.float32
        found = white_bbox(img)
        if len(boxes) == 0:
            assert found is None or (found[2] - found[0]) * (found[3] - found[1]) <= 4
            continue
        w, h = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
        if w < 2 or h < 2:  # a sliver left by the crop: interpolation may leave no bright pixel
            continue
        assert found is not None and np.abs(found - boxes[0]).max() <= 1.5, (index, found, boxes)
        checked += 1
    assert checked >= 25


def test_flip_maps_x_to_width_minus_x():
    aug = BoxAwareAugment(size=64, seed=0, crop=False)
    img0, boxes0 = white_rectangle()
    flipped = plain = 0
    for index in range(20):
        img, boxes = aug(img0, boxes0, index)
        if np.array_equal(img, img0):
            assert boxes.tolist() == boxes0.tolist()
            plain += 1
        else:
            assert np.array_equal(img, img0[:, ::-1])
            assert boxes.tolist() == [[64 - 30, 10, 64 - 8, 30]]
            assert white_bbox(img).tolist() == boxes[0].tolist()
            flipped += 1
    assert flipped > 0 and plain > 0


def test_crop_without_flip_scales_the_box():
    aug = BoxAwareAugment(size=32, seed=5, flip=False)
    for index in range(10):
        img, boxes = aug(*white_rectangle(), index)
        assert img.shape == (32, 32, 3)
        if len(boxes) and (boxes[0, 2] - boxes[0, 0]) >= 2 and (boxes[0, 3] - boxes[0, 1]) >= 2:
            assert np.abs(white_bbox(img) - boxes[0]).max() <= 1.5


@pytest.mark.parametrize("index", [0, 7, 123])
def test_deterministic_per_seed_epoch_index(index):
    img, boxes = white_rectangle()
    a, b = BoxAwareAugment(64, seed=3), BoxAwareAugment(64, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    out_a, out_b = a(img, boxes, index), b(img, boxes, index)
    assert np.array_equal(out_a[0], out_b[0]) and np.array_equal(out_a[1], out_b[1])
    others = []
    for epoch, seed, idx in ((3, 3, index), (2, 4, index), (2, 3, index + 1)):
        c = BoxAwareAugment(64, seed=seed)
        c.set_epoch(epoch)
        others.append(c(img, boxes, idx))
    assert all(not np.array_equal(o[0], out_a[0]) or not np.array_equal(o[1], out_a[1]) for o in others)


def test_augment_through_a_file_dataset(tmp_path):
    """Resize to 32 first (the loader), then augment: boxes still bound the white pixels."""
    import cv2

    from overfocus.data import open_dataset

    img, _ = white_rectangle()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations").mkdir()
    x0, y0, x1, y1 = RECT
    for i in range(6):
        cv2.imwrite(str(tmp_path / "JPEGImages" / f"{i}.png"), img)
        (tmp_path / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.png</filename><object><name>box</name><bndbox><xmin>{x0 + 1}</xmin>"
            f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")
    aug = BoxAwareAugment(size=32, seed=0)
    ds = open_dataset(f"voc:{tmp_path}?test_fraction=0.01", "train", 32, augment=aug)
    plain = open_dataset(f"voc:{tmp_path}?test_fraction=0.01", "train", 32)
    assert plain[0]["boxes"].tolist() == [[x0 / 2, y0 / 2, x1 / 2, y1 / 2]]
    outputs = []
    for epoch in range(4):
        aug.set_epoch(epoch)
        for index in range(len(ds)):
            s = ds[index]
            outputs.append(s["image"])
            box = s["boxes"].numpy()
            if len(box) and (box[0, 2] - box[0, 0]) >= 2 and (box[0, 3] - box[0, 1]) >= 2:
                found = white_bbox((s["image"] * 255).permute(1, 2, 0).numpy())
                assert np.abs(found - box[0]).max() <= 1.5
    assert any(not np.array_equal(outputs[0], other) for other in outputs[len(ds)::len(ds)])
