"""The built-in default dataset: generated shapes with exact boxes, no download, no licence.

How an image is made (deterministic from (seed, split, index)):
1. Background clutter: a smooth random colour gradient plus pixel noise, and 3-6 random thin
   lines and small rectangles in random colours (so the object is not the only edge).
2. One object of class y: a filled shape whose FORM is the class (circle, square, triangle,
   cross, star, ring, diamond, hexagon, ...). Its colour, size (25-55% of the image side),
   position and texture (solid, stripes, dots) vary at random and carry no class information.
3. The box is the exact bounding box of the drawn object's pixels.
4. Optional decoy cue (`decoy=absent` or `decoy=shuffled`): in TRAINING images, a small patch
   (1/10 of the side) with a class-specific colour at a class-specific corner. At test it is
   absent (`absent`) or drawn with a random class's colour and corner (`shuffled`), so a model that
   learned the decoy instead of the shape loses accuracy at test and its attention sits on a tiny
   region away from the box.

Spec options: `builtin?classes=6&train=2000&test=500&seed=0&decoy=none`.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch

from ..errors import OverfocusError, shorten
from .base import to_tensor
from .specs import DATASETS, option_int

SHAPES = ["circle", "square", "triangle", "cross", "star", "ring", "diamond", "hexagon", "heart", "crescent"]
DECOY_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                          [0, 255, 255], [255, 128, 0], [128, 0, 255], [255, 255, 255], [0, 0, 0]], np.uint8)
_SPLIT_ID = {"train": 0, "test": 1}
MAX_LENGTH = 1_000_000  # images per split: generated on demand, but index lists of a split are kept


class BuiltinShapes(torch.utils.data.Dataset):
    """Generated shapes on clutter; see the module docstring for how each image is made.

    Example:
        >>> ds = BuiltinShapes("train", size=64, length=10, num_classes=4)
        >>> s = ds[3]; s["image"].shape, s["boxes"].shape
        (torch.Size([3, 64, 64]), torch.Size([1, 4]))
    """

    has_boxes = True

    def __init__(self, split: str, size: int = 64, length: int = 2000, num_classes: int = 6,
                 seed: int = 0, decoy: str = "none", augment: Optional[object] = None):
        if not 2 <= num_classes <= len(SHAPES):
            raise OverfocusError(f"builtin classes={num_classes}: choose 2 to {len(SHAPES)}")
        if decoy not in ("none", "absent", "shuffled"):
            raise OverfocusError(f"builtin decoy={shorten(decoy)}: choose none, absent or shuffled")
        if size < 16:
            raise OverfocusError(f"image size {size} is too small for the builtin data: use 16 or more")
        self.split, self.size, self.length = split, size, length
        self.num_classes, self.seed, self.decoy, self.augment = num_classes, seed, decoy, augment
        self.classes = SHAPES[:num_classes]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, _SPLIT_ID[self.split], index])
        label = int(rng.integers(self.num_classes))
        img = _background(rng, self.size)
        box = _draw_object(img, rng, label)
        self._maybe_decoy(img, rng, label)
        boxes = np.asarray([box], np.float32)
        if self.augment is not None:
            img, boxes = self.augment(img, boxes, index)
        return {"image": to_tensor(img), "label": label, "boxes": torch.from_numpy(boxes),
                "image_id": self.image_id(index)}

    def image_id(self, index: int) -> str:
        return f"{self.split}_{index:06d}"

    def sample_labels(self) -> list:
        """Every sample's label without drawing an image (the first number of its generator), for
        `dataset_labels`: the probe set then takes the classes in turn.

        Example:
            >>> ds = BuiltinShapes("test", length=6, num_classes=3)
            >>> ds.sample_labels() == [ds[i]["label"] for i in range(6)]
            True
        """
        return [int(np.random.default_rng([self.seed, _SPLIT_ID[self.split], i]).integers(self.num_classes))
                for i in range(self.length)]

    def _maybe_decoy(self, img: np.ndarray, rng: np.random.Generator, label: int) -> None:
        if self.decoy == "none" or (self.split == "test" and self.decoy == "absent"):
            return
        cue = label if self.split == "train" else int(rng.integers(self.num_classes))
        side = max(2, self.size // 10)
        corner = cue % 4
        y = 1 if corner < 2 else self.size - side - 1
        x = 1 if corner % 2 == 0 else self.size - side - 1
        img[y:y + side, x:x + side] = DECOY_COLOURS[cue]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = np.linspace(0.0, 1.0, size)[None, :, None]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * t + np.sin(angle) * t.transpose(1, 0, 2)) / 2 + 0.5
    img = c0 * (1 - ramp) + c1 * ramp + rng.normal(0, 12, (size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p0 = tuple(int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            p1 = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(img, p0, p1, colour, 1)
        else:
            wh = rng.integers(2, max(3, size // 10), 2)
            cv2.rectangle(img, p0, (int(p0[0] + wh[0]), int(p0[1] + wh[1])), colour, -1)
    return img


def _draw_object(img: np.ndarray, rng: np.random.Generator, label: int) -> list:
    """Draw the class shape with random colour/size/position/texture; return its exact box."""
    size = img.shape[0]
    side = rng.uniform(0.25, 0.55) * size
    cx, cy = rng.uniform(side / 2 + 1, size - side / 2 - 1, 2)
    mask = np.zeros((size, size), np.uint8)
    _shape_mask(mask, SHAPES[label], cx, cy, side / 2, rng.uniform(0, math.pi / 6))
    colour = _contrasting_colour(rng, img[mask > 0].mean(0) if mask.any() else img.mean((0, 1)))
    paint = np.broadcast_to(colour, img.shape).copy()
    texture = int(rng.integers(3))
    if texture == 1:  # stripes
        period = max(3, int(side / 5))
        stripes = ((np.arange(size)[:, None] + np.arange(size)[None, :]) // period) % 2 == 0
        paint[stripes] = 255 - colour
    elif texture == 2:  # dots
        grid = max(3, int(side / 6))
        dots = (np.arange(size)[:, None] % grid < 2) & (np.arange(size)[None, :] % grid < 2)
        paint[dots] = 255 - colour
    on = mask > 0
    img[on] = paint[on].astype(np.uint8)
    ys, xs = np.nonzero(on)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least 100 (Euclidean, 0-255 RGB) away from the background under the object,
    so that the shape, not a faint outline, is what there is to see."""
    for _ in range(20):
        colour = rng.integers(0, 256, 3).astype(np.float64)
        if np.linalg.norm(colour - background) >= 100:
            return colour
    return 255.0 - background


def _shape_mask(mask: np.ndarray, shape: str, cx: float, cy: float, r: float, rot: float) -> None:
    import cv2

    def poly(n: int, radii) -> np.ndarray:
        ang = rot + np.arange(n) * 2 * math.pi / n - math.pi / 2
        rr = np.resize(np.asarray(radii, float), n)
        return np.stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)], 1).round().astype(np.int32)

    centre = (int(round(cx)), int(round(cy)))
    if shape == "circle":
        cv2.circle(mask, centre, int(r), 255, -1)
    elif shape == "ring":
        cv2.circle(mask, centre, int(r), 255, -1)
        cv2.circle(mask, centre, int(r * 0.55), 0, -1)
    elif shape == "square":
        cv2.fillPoly(mask, [poly(4, r * 1.2)], 255)
        mask[:] = np.where(mask > 0, 255, 0)
    elif shape == "triangle":
        cv2.fillPoly(mask, [poly(3, r)], 255)
    elif shape == "diamond":
        cv2.fillPoly(mask, [poly(4, [r, r * 0.6])], 255)
    elif shape == "hexagon":
        cv2.fillPoly(mask, [poly(6, r)], 255)
    elif shape == "star":
        cv2.fillPoly(mask, [poly(10, [r, r * 0.45])], 255)
    elif shape == "cross":
        t = max(2, int(r * 0.35))
        cv2.rectangle(mask, (int(cx - r), int(cy - t)), (int(cx + r), int(cy + t)), 255, -1)
        cv2.rectangle(mask, (int(cx - t), int(cy - r)), (int(cx + t), int(cy + r)), 255, -1)
    elif shape == "heart":
        cv2.circle(mask, (int(cx - r * 0.45), int(cy - r * 0.25)), int(r * 0.5), 255, -1)
        cv2.circle(mask, (int(cx + r * 0.45), int(cy - r * 0.25)), int(r * 0.5), 255, -1)
        tri = np.array([[cx - r * 0.93, cy - r * 0.05], [cx + r * 0.93, cy - r * 0.05], [cx, cy + r]])
        cv2.fillPoly(mask, [tri.round().astype(np.int32)], 255)
    elif shape == "crescent":
        cv2.circle(mask, centre, int(r), 255, -1)
        cv2.circle(mask, (int(cx + r * 0.45), int(cy - r * 0.2)), int(r * 0.8), 0, -1)


@DATASETS.register("builtin")
def open_builtin(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data builtin[?classes=6&train=2000&test=500&seed=0&decoy=none]`."""
    known = {"classes", "train", "test", "seed", "decoy"}
    unknown = set(options) - known
    if unknown:
        raise OverfocusError(f"unknown builtin data option(s) {shorten(sorted(unknown))}: known are {sorted(known)}")
    lengths = {name: option_int(options, name, default, minimum=1, maximum=MAX_LENGTH)  # both: one check, at once
               for name, default in (("train", 2000), ("test", 500))}
    length = lengths[split]
    classes = option_int(options, "classes", 6, minimum=2, maximum=len(SHAPES))
    seed = option_int(options, "seed", 0, maximum=2 ** 32 - 1)
    return BuiltinShapes(split, image_size, length, classes, seed, str(options.get("decoy", "none")), augment)
