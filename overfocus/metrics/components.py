"""Boxes of thresholded maps for a whole batch at once, and their IoU with padded gt boxes.

The largest 8-connected component of every image comes from ONE OpenCV labelling of the batch
stacked into a tall image with a zero row under each image (so no component spans two images).
Images with at most one component need nothing more: their box is the box of all their pixels
above the threshold (per-row and per-column `any`). An image holds several components exactly
when its smallest and largest labels differ; only those images are resolved one by one: the
largest component, ties broken by the first pixel in raster order (what a per-image
`scipy.ndimage.label` + argmax of sizes gives), whatever order the labeller numbered them in.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def extent_boxes(binary: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Box (x0, y0, x1, y1) of all True pixels of each B x H x W image, and B bool: any pixel.

    Example:
        >>> b = np.zeros((1, 4, 5), bool); b[0, 1:3, 2] = True
        >>> extent_boxes(b)[0].tolist()
        [[2.0, 1.0, 3.0, 3.0]]
    """
    rows, cols = binary.any(axis=2), binary.any(axis=1)  # B x H, B x W
    found = rows.any(axis=1)
    height, width = binary.shape[1:]
    r0, r1 = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    c0, c1 = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    return np.stack([c0, r0, c1, r1], axis=1).astype(np.float64), found


def label_stack(binary: np.ndarray) -> np.ndarray:
    """8-connected labels of B x H x W images, B x (H + 1) x W int32 (the last row of each image
    is the zero separator); labels are unique across the batch, 0 is background."""
    import cv2

    b, h, w = binary.shape
    tall = np.zeros((b, h + 1, w), np.uint8)
    tall[:, :h] = binary
    _, labels = cv2.connectedComponents(tall.reshape(b * (h + 1), w), connectivity=8, ltype=cv2.CV_32S)
    return labels.reshape(b, h + 1, w)


def _largest_box(labels: np.ndarray) -> np.ndarray:
    """Box of the largest component of one image's labels (ties: first pixel in raster order)."""
    flat = labels.ravel()
    fg = flat[flat > 0]  # raster order kept: first occurrences compare as raster positions
    ids, first, sizes = np.unique(fg, return_index=True, return_counts=True)
    tied = np.flatnonzero(sizes == sizes.max())
    winner = ids[tied[np.argmin(first[tied])]]
    return extent_boxes((labels == winner)[None])[0][0]


def largest_component_boxes(binary: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Box of the largest 8-connected component of each B x H x W image (ties: the first in
    raster order), and B bool: the image has a component.

    Example:
        >>> b = np.zeros((1, 6, 6), bool); b[0, 0, 0] = True; b[0, 3:5, 2:5] = True
        >>> largest_component_boxes(b)[0].tolist()
        [[2.0, 3.0, 5.0, 5.0]]
    """
    boxes, found = extent_boxes(binary)
    if not found.any():
        return boxes, found
    labels = label_stack(binary)
    flat = labels.reshape(len(labels), -1)
    high = flat.max(axis=1)
    low = (flat.view(np.uint32) - np.uint32(1)).min(axis=1).astype(np.int64) + 1  # background wraps to the top
    for i in np.flatnonzero(found & (low != high)):
        boxes[i] = _largest_box(labels[i])
    return boxes, found


def best_iou(pred: np.ndarray, found: np.ndarray, gts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Best IoU of each image's predicted box (B x 4) with its valid gt boxes (B x K x 4).

    NaN where the image has no gt box; 0 where no pixel passed the threshold (`found` False).

    Example:
        >>> best_iou(np.array([[0., 0., 4., 4.]]), np.array([True]),
        ...          np.array([[[2., 2., 6., 6.], [0., 0., 4., 5.]]]), np.array([[True, True]])).tolist()
        [0.8]
    """
    p = pred[:, None, :]
    iw = np.clip(np.minimum(p[..., 2], gts[..., 2]) - np.maximum(p[..., 0], gts[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 3], gts[..., 3]) - np.maximum(p[..., 1], gts[..., 1]), 0, None)
    inter = iw * ih
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    union = area_p + (gts[..., 2] - gts[..., 0]) * (gts[..., 3] - gts[..., 1]) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    best = np.where(valid, iou, -np.inf).max(axis=1, initial=-np.inf)
    best = np.where(found, best, 0.0)
    return np.where(valid.any(axis=1), best, np.nan)
