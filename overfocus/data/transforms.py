"""Training augmentation that moves the boxes with the image.

Randomness comes from (seed, epoch, index) rather than a global RNG, so an epoch's augmented
images are the same whether the run was interrupted and resumed or not, and whatever the number
of loader workers.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from .base import clip_boxes


class BoxAwareAugment:
    """Random resized crop (scale and ratio ranges as torchvision's) and horizontal flip.

    Example:
        >>> aug = BoxAwareAugment(size=32, seed=0)
        >>> img, boxes = aug(np.zeros((32, 32, 3), np.uint8), np.array([[0, 0, 16, 16]], np.float32), 0)
        >>> img.shape
        (32, 32, 3)
    """

    def __init__(self, size: int, seed: int = 0, crop: bool = True, flip: bool = True,
                 scale: Tuple[float, float] = (0.35, 1.0), ratio: Tuple[float, float] = (3 / 4, 4 / 3)):
        self.size, self.seed, self.crop, self.flip = size, seed, crop, flip
        self.scale, self.ratio = scale, ratio
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, img: np.ndarray, boxes: np.ndarray, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if self.crop:
            img, boxes = self._random_resized_crop(img, boxes, rng)
        if self.flip and rng.random() < 0.5:
            img = img[:, ::-1].copy()
            w = img.shape[1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1).astype(np.float32)
        return img, boxes

    def _random_resized_crop(self, img, boxes, rng):
        import cv2

        h, w = img.shape[:2]
        x, y, cw, ch = 0, 0, w, h
        for _ in range(10):
            area = rng.uniform(*self.scale) * h * w
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            tw, th = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < tw <= w and 0 < th <= h:
                x, y, cw, ch = int(rng.integers(0, w - tw + 1)), int(rng.integers(0, h - th + 1)), tw, th
                break
        crop = img[y:y + ch, x:x + cw]
        out = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        moved = boxes - np.array([x, y, x, y], np.float32)
        moved[:, [0, 2]] *= self.size / cw
        moved[:, [1, 3]] *= self.size / ch
        return out, clip_boxes(moved, self.size, self.size)
