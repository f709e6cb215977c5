"""Localisation metrics over batched maps: area ratio, box IoU / hit, pointing game, energy.

Pixel convention (docs/conventions.md): pixel (row r, column c) covers [c, c+1) x [r, r+1); a box
(x0, y0, x1, y1), x = column, covers the pixels whose CENTRE (c + 0.5, r + 0.5) lies inside it
(borders included). So an integer box covers columns x0 .. x1-1 and rows y0 .. y1-1, and the
box of a set of pixels is (min c, min r, max c + 1, max r + 1).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np
import torch

from ..attribution.api import normalize_maps
from ..errors import OverfocusError

NAN = float("nan")


def check_maps(maps: torch.Tensor) -> torch.Tensor:
    """Validate B x H x W maps (a B x 1 x H x W channel axis is squeezed) and return float32."""
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.dim() != 3:
        raise OverfocusError(f"attribution maps must be B x H x W, got shape {tuple(maps.shape)}")
    return maps.detach().float()


def check_boxes(boxes: Optional[Sequence[torch.Tensor]], batch: int) -> List[torch.Tensor]:
    """Boxes as a list of B tensors N_i x 4 (x0, y0, x1, y1) in input pixels."""
    if boxes is None:
        raise OverfocusError("this metric needs ground-truth boxes: use a dataset with boxes")
    if len(boxes) != batch:
        raise OverfocusError(f"{len(boxes)} box lists for {batch} maps: pass one (possibly empty) list per image")
    return [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu() for b in boxes]


def box_pixel_ranges(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inclusive pixel index ranges (c0, r0, c1, r1) of the pixels whose centres lie in each box.

    A box covering no pixel centre gets c1 < c0 (or r1 < r0): it covers nothing.
    """
    c0 = torch.ceil(boxes[:, 0] - 0.5).clamp(min=0)
    r0 = torch.ceil(boxes[:, 1] - 0.5).clamp(min=0)
    c1 = torch.floor(boxes[:, 2] - 0.5).clamp(max=width - 1)
    r1 = torch.floor(boxes[:, 3] - 0.5).clamp(max=height - 1)
    return torch.stack([c0, r0, c1, r1], dim=1)


def pad_boxes(boxes: Sequence[torch.Tensor], device=None) -> tuple:
    """Boxes as one B x K x 4 tensor (padded with zeros) and a B x K bool tensor of real boxes."""
    k = max([len(b) for b in boxes] + [1])
    padded = torch.zeros(len(boxes), k, 4)  # filled on the CPU, moved once
    valid = torch.zeros(len(boxes), k, dtype=torch.bool)
    for i, b in enumerate(boxes):
        padded[i, :len(b)] = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu()
        valid[i, :len(b)] = True
    return padded.to(device), valid.to(device)


def boxes_to_masks(boxes: Sequence[torch.Tensor], height: int, width: int,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """Union of each image's boxes as a bool mask B x H x W (pixel centres inside a box).

    Example:
        >>> boxes_to_masks([torch.tensor([[1., 0., 3., 1.]])], 2, 4).int().tolist()
        [[[0, 1, 1, 0], [0, 0, 0, 0]]]
    """
    padded, valid = pad_boxes(boxes, device)
    rng = box_pixel_ranges(padded.reshape(-1, 4), height, width).reshape(len(boxes), -1, 4)
    cols = torch.arange(width, device=device)
    rows = torch.arange(height, device=device)
    in_c = (cols >= rng[..., 0:1]) & (cols <= rng[..., 2:3])  # B x K x W
    in_r = (rows >= rng[..., 1:2]) & (rows <= rng[..., 3:4]) & valid[..., None]  # B x K x H
    return (in_r[..., :, None] & in_c[..., None, :]).any(dim=1)


def area_ratio(maps: torch.Tensor, boxes=None, labels=None, human=None, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of pixels whose per-sample max-normalised value is > `threshold`; 0 if degenerate.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, 1, 2] = 3.0
        >>> area_ratio(m).tolist()
        [0.0625]
    """
    normed, _ = normalize_maps(check_maps(maps))
    return (normed > threshold).float().mean(dim=(1, 2)).cpu()


def _component_box(binary: np.ndarray, component: str) -> Optional[np.ndarray]:
    """Box (x0, y0, x1, y1) of the largest 8-connected component (or of all pixels); None if empty."""
    from scipy import ndimage

    if not binary.any():
        return None
    if component == "largest":
        labelled, count = ndimage.label(binary, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labelled.ravel())[1:]
        binary = labelled == (int(np.argmax(sizes)) + 1)  # ties: the first component in raster order
    rows, cols = np.nonzero(binary)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64)


def iou_one_to_many(box: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """IoU of one box with N boxes (all x0, y0, x1, y1)."""
    iw = np.clip(np.minimum(box[2], gts[:, 2]) - np.maximum(box[0], gts[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], gts[:, 3]) - np.maximum(box[1], gts[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_iou(maps: torch.Tensor, boxes=None, labels=None, human=None, threshold: float = 0.5,
            component: str = "largest") -> torch.Tensor:
    """Best IoU between the box of the thresholded map (normalised >= `threshold`) and a gt box.

    `component`: "largest" (the largest 8-connected component, default) or "all" (every pixel
    above the threshold). NaN where the image has no box; 0 for a degenerate map.

    Example:
        >>> m = torch.zeros(1, 8, 8); m[0, 2:4, 1:6] = 1.0
        >>> box_iou(m, boxes=[torch.tensor([[1., 2., 6., 4.]])]).tolist()
        [1.0]
    """
    if component not in ("largest", "all"):
        raise OverfocusError(f"box_iou component={component!r}: use largest or all")
    maps = check_maps(maps)
    boxes = check_boxes(boxes, len(maps))
    binary = (normalize_maps(maps)[0] >= threshold).cpu().numpy()
    out = torch.full((len(maps),), NAN)
    for i, gts in enumerate(boxes):
        if len(gts) == 0:
            continue
        pred = _component_box(binary[i], component)
        out[i] = 0.0 if pred is None else float(iou_one_to_many(pred, gts.double().numpy()).max())
    return out


def hit(maps: torch.Tensor, boxes=None, labels=None, human=None, threshold: float = 0.5,
        component: str = "largest", iou_threshold: float = 0.5) -> torch.Tensor:
    """1 where box_iou >= `iou_threshold` (0.5), else 0; NaN where the image has no box."""
    iou = box_iou(maps, boxes=boxes, threshold=threshold, component=component)
    return torch.where(torch.isnan(iou), iou, (iou >= iou_threshold).float())


def pointing_game(maps: torch.Tensor, boxes=None, labels=None, human=None, tolerance: float = 15.0) -> torch.Tensor:
    """1 if the argmax pixel lies within `tolerance` px (Euclidean) of a pixel of a gt box, else 0.

    The argmax is the first maximum in raster order; tolerance 0 asks for the pixel itself to be
    inside a box. NaN where the image has no box; a degenerate (all-zero) map points nowhere: 0.

    Example:
        >>> m = torch.zeros(1, 40, 40); m[0, 5, 30] = 1.0          # row 5, column 30
        >>> box = [torch.tensor([[28., 0., 32., 10.]])]            # x = columns 28-31
        >>> pointing_game(m, boxes=box, tolerance=0).tolist()
        [1.0]
    """
    maps = check_maps(maps)
    boxes = check_boxes(boxes, len(maps))
    height, width = maps.shape[-2:]
    normed, degenerate = normalize_maps(maps)
    peak = normed.reshape(len(maps), -1).argmax(dim=1)
    row, col = (peak // width)[:, None].float(), (peak % width)[:, None].float()
    padded, valid = pad_boxes(boxes, maps.device)
    rng = box_pixel_ranges(padded.reshape(-1, 4), height, width).reshape(len(maps), -1, 4)
    valid &= (rng[..., 2] >= rng[..., 0]) & (rng[..., 3] >= rng[..., 1])  # boxes covering no pixel centre
    dx = torch.clamp(torch.maximum(rng[..., 0] - col, col - rng[..., 2]), min=0)
    dy = torch.clamp(torch.maximum(rng[..., 1] - row, row - rng[..., 3]), min=0)
    hits = ((torch.sqrt(dx ** 2 + dy ** 2) <= tolerance + 1e-9) & valid).any(dim=1) & ~degenerate
    has_box = torch.tensor([len(b) > 0 for b in boxes], device=maps.device)
    return torch.where(has_box, hits.float(), torch.full_like(hits, math.nan, dtype=torch.float32)).cpu()


def energy_pg(maps: torch.Tensor, boxes=None, labels=None, human=None, eps: float = 1e-7) -> torch.Tensor:
    """Energy pointing game: positive attribution inside the union of boxes / total positive.

    0 where the total is below `eps` (1e-7); NaN where the image has no box.

    Example:
        >>> m = torch.zeros(1, 4, 6); m[0, 1, 4] = 3.0; m[0, 3, 0] = 1.0   # row 1, column 4
        >>> energy_pg(m, boxes=[torch.tensor([[4., 0., 6., 2.]])]).tolist()
        [0.75]
    """
    maps = check_maps(maps).clamp_min(0)
    boxes = check_boxes(boxes, len(maps))
    masks = boxes_to_masks(boxes, maps.shape[1], maps.shape[2], device=maps.device)
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    energy = torch.where(total < eps, torch.zeros_like(total), inside / torch.where(total < eps, 1.0, total))
    has_box = torch.tensor([len(b) > 0 for b in boxes], device=maps.device)
    return torch.where(has_box, energy, torch.full_like(energy, math.nan)).cpu()
