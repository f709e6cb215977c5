"""The built-in generated data: determinism, exact boxes, the decoy cue, option errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from overfocus.data import open_dataset
from overfocus.data.builtin import _SPLIT_ID, DECOY_COLOURS, _background
from overfocus.errors import OverfocusError


def as_uint8(image: torch.Tensor) -> np.ndarray:
    return (image * 255).round().byte().permute(1, 2, 0).numpy()


def decoy_patch(img: np.ndarray, cue: int) -> np.ndarray:
    """The pixels where the decoy of class `cue` sits (same placement rule as the generator)."""
    size = img.shape[0]
    side = max(2, size // 10)
    corner = cue % 4
    y = 1 if corner < 2 else size - side - 1
    x = 1 if corner % 2 == 0 else size - side - 1
    return img[y:y + side, x:x + side].reshape(-1, 3)


def patch_colour(img: np.ndarray, cue: int):
    """The decoy colour index when the class-`cue` patch is one flat decoy colour, else None."""
    patch = decoy_patch(img, cue)
    if not (patch == patch[0]).all():
        return None
    hits = np.nonzero((DECOY_COLOURS == patch[0]).all(1))[0]
    return int(hits[0]) if len(hits) else None


def test_same_seed_gives_identical_tensors_in_any_order():
    a = open_dataset("builtin?train=12&seed=3", "train", 32)
    b = open_dataset("builtin?train=12&seed=3", "train", 32)
    forward = [a[i] for i in range(12)]
    backward = [b[i] for i in reversed(range(12))][::-1]
    for x, y in zip(forward, backward):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["boxes"], y["boxes"])
        assert x["label"] == y["label"] and x["image_id"] == y["image_id"]
    other = open_dataset("builtin?train=12&seed=4", "train", 32)
    assert not torch.equal(other[0]["image"], forward[0]["image"])
    test = open_dataset("builtin?test=12&seed=3", "test", 32)
    assert not torch.equal(test[0]["image"], forward[0]["image"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_box_is_the_bounding_box_of_the_object_pixels(split):
    ds = open_dataset("builtin?classes=10&train=30&test=30&seed=1", split, 48)
    for index in range(30):
        s = ds[index]
        rng = np.random.default_rng([1, _SPLIT_ID[split], index])
        assert int(rng.integers(10)) == s["label"]
        changed = (as_uint8(s["image"]) != _background(rng, 48)).any(2)  # the drawn object, nothing else
        ys, xs = np.nonzero(changed)
        found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert s["boxes"].shape == (1, 4)
        # an edge pixel painted in exactly the background colour is possible but vanishingly rare
        assert np.abs(np.asarray(found) - s["boxes"][0].numpy()).max() <= 1, index


def test_boxes_and_labels_are_sane_at_every_size():
    for size in (16, 33, 64):
        ds = open_dataset("builtin?classes=6&train=20", "train", size)
        labels = [ds[i]["label"] for i in range(20)]
        assert set(labels) <= set(range(6)) and len(set(labels)) > 2
        for i in range(20):
            x0, y0, x1, y1 = ds[i]["boxes"][0].tolist()
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert (x1 - x0) >= 0.15 * size  # objects are 25-55 % of the side


def test_decoy_present_in_train_absent_at_test():
    train = open_dataset("builtin?classes=6&train=40&test=40&decoy=absent", "train", 40)
    test = open_dataset("builtin?classes=6&train=40&test=40&decoy=absent", "test", 40)
    for i in range(40):
        s = train[i]
        assert patch_colour(as_uint8(s["image"]), s["label"]) == s["label"]
    at_test = [patch_colour(as_uint8(test[i]["image"]), test[i]["label"]) for i in range(40)]
    assert at_test.count(None) >= 38  # no flat decoy square where the cue would be
    plain = open_dataset("builtin?classes=6&train=40", "train", 40)
    assert sum(patch_colour(as_uint8(plain[i]["image"]), plain[i]["label"]) is not None for i in range(40)) <= 2


def test_decoy_shuffled_at_test():
    test = open_dataset("builtin?classes=6&test=60&decoy=shuffled", "test", 40)
    mismatched = 0
    for i in range(60):
        img, label = as_uint8(test[i]["image"]), test[i]["label"]
        cues = [c for c in range(6) if patch_colour(img, c) == c]
        assert len(cues) >= 1  # a decoy is drawn, of some class's colour at that class's corner
        mismatched += label not in cues
    assert mismatched >= 30  # 5 of 6 should point at a wrong class


@pytest.mark.parametrize("spec, message", [
    ("builtin?colour=red", "unknown builtin data option"),
    ("builtin?classes=1", "classes=1"),
    ("builtin?classes=11", "classes=11"),
    ("builtin?decoy=sometimes", "decoy="),
    ("builtin?train", "needs key=value"),
])
def test_option_errors(spec, message):
    with pytest.raises(OverfocusError, match=message):
        open_dataset(spec, "train", 32)


def test_too_small_image_size_is_an_error():
    with pytest.raises(OverfocusError, match="too small"):
        open_dataset("builtin", "train", 8)
