"""Localisation metrics over batched maps: area ratio, box IoU / hit, pointing game, energy.

Every function takes B x H x W maps or a `MapBatch` (what `compute_map_metrics` passes, so that
the normalisation, boxes and masks are shared between metrics; see batch.py, which also states
the pixel convention).
"""
from __future__ import annotations

import math

import torch

from ..errors import OverfocusError
from .batch import MapBatch, box_pixel_ranges
from .components import best_iou, extent_boxes, largest_component_boxes

NAN = float("nan")


def _nan_without_box(mb: MapBatch, values: torch.Tensor) -> torch.Tensor:
    """float32 values on the CPU, NaN where the image has no gt box."""
    return torch.where(mb.has_box, values.float(), torch.full_like(values, math.nan, dtype=torch.float32)).cpu()


def area_ratio(maps, boxes=None, labels=None, human=None, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of pixels whose per-sample max-normalised value is > `threshold`; 0 if degenerate.

    Example:
        >>> m = torch.zeros(1, 4, 4); m[0, 1, 2] = 3.0
        >>> area_ratio(m).tolist()
        [0.0625]
    """
    mb = MapBatch.wrap(maps, boxes)
    height, width = mb.size  # an integer count over the pixel count: the float mean, without a float copy
    return ((mb.normalized > threshold).sum(dim=(1, 2)).float() / (height * width)).cpu()


def thresholded_iou(mb: MapBatch, threshold: float = 0.5, component: str = "largest") -> torch.Tensor:
    """box_iou of a MapBatch, computed once per (threshold, component) and shared with `hit`."""
    if component not in ("largest", "all"):
        raise OverfocusError(f"box_iou component={component!r}: use largest or all")
    key = ("iou", float(threshold), component)
    if key not in mb.cache:
        padded, valid = mb.padded  # first: no boxes is an error before any work
        binary = (mb.normalized >= threshold).cpu().numpy()
        pred, found = (largest_component_boxes if component == "largest" else extent_boxes)(binary)
        iou = best_iou(pred, found, padded.cpu().double().numpy(), valid.cpu().numpy())
        mb.cache[key] = torch.from_numpy(iou).float()
    return mb.cache[key]


def box_iou(maps, boxes=None, labels=None, human=None, threshold: float = 0.5,
            component: str = "largest") -> torch.Tensor:
    """Best IoU between the box of the thresholded map (normalised >= `threshold`) and a gt box.

    `component`: "largest" (the largest 8-connected component, default) or "all" (every pixel
    above the threshold). NaN where the image has no box; 0 for a degenerate map.

    Example:
        >>> m = torch.zeros(1, 8, 8); m[0, 2:4, 1:6] = 1.0
        >>> box_iou(m, boxes=[torch.tensor([[1., 2., 6., 4.]])]).tolist()
        [1.0]
    """
    return thresholded_iou(MapBatch.wrap(maps, boxes), threshold, component).clone()


def hit(maps, boxes=None, labels=None, human=None, threshold: float = 0.5,
        component: str = "largest", iou_threshold: float = 0.5) -> torch.Tensor:
    """1 where box_iou >= `iou_threshold` (0.5), else 0; NaN where the image has no box."""
    iou = thresholded_iou(MapBatch.wrap(maps, boxes), threshold, component)
    return torch.where(torch.isnan(iou), iou, (iou >= iou_threshold).float())


def pointing_game(maps, boxes=None, labels=None, human=None, tolerance: float = 15.0) -> torch.Tensor:
    """1 if the argmax pixel lies within `tolerance` px (Euclidean) of a pixel of a gt box, else 0.

    Within means STRICTLY closer than `tolerance` (TorchRay's convention: a pixel exactly 15 px
    away misses at the default tolerance); a pixel inside a box always hits, so tolerance 0 asks
    for the pixel itself to be inside a box. The argmax is the first maximum in raster order. NaN
    where the image has no box; a degenerate (all-zero or non-finite) map points nowhere: 0.

    Example:
        >>> m = torch.zeros(1, 40, 40); m[0, 5, 30] = 1.0          # row 5, column 30
        >>> box = [torch.tensor([[28., 0., 32., 10.]])]            # x = columns 28-31
        >>> pointing_game(m, boxes=box, tolerance=0).tolist()
        [1.0]
        >>> pointing_game(m, boxes=[torch.tensor([[0., 0., 16., 10.]])], tolerance=15).tolist()  # 15 px away
        [0.0]
    """
    mb = MapBatch.wrap(maps, boxes)
    height, width = mb.size
    peak = mb.normalized.reshape(len(mb), -1).argmax(dim=1)
    row, col = (peak // width)[:, None].float(), (peak % width)[:, None].float()
    padded, valid = mb.padded
    rng = box_pixel_ranges(padded, height, width)  # B x K x 4 inclusive pixel ranges
    valid = valid & (rng[..., 2] >= rng[..., 0]) & (rng[..., 3] >= rng[..., 1])  # boxes covering no pixel centre
    dx = torch.clamp(torch.maximum(rng[..., 0] - col, col - rng[..., 2]), min=0)
    dy = torch.clamp(torch.maximum(rng[..., 1] - row, row - rng[..., 3]), min=0)
    squared = dx ** 2 + dy ** 2  # integers: exact, so the boundary (distance == tolerance) is exact too
    near = (squared < float(tolerance) ** 2) | (squared == 0)
    hits = (near & valid).any(dim=1) & ~mb.degenerate
    return _nan_without_box(mb, hits)


def energy_pg(maps, boxes=None, labels=None, human=None, eps: float = 1e-7) -> torch.Tensor:
    """Energy pointing game: positive attribution inside the union of boxes / total positive.

    0 where the total is below `eps` (1e-7) or the map is degenerate (all zero or holding a
    non-finite value); NaN where the image has no box.

    Example:
        >>> m = torch.zeros(1, 4, 6); m[0, 1, 4] = 3.0; m[0, 3, 0] = 1.0   # row 1, column 4
        >>> energy_pg(m, boxes=[torch.tensor([[4., 0., 6., 2.]])]).tolist()
        [0.75]
    """
    mb = MapBatch.wrap(maps, boxes)
    positive, masks = mb.positive, mb.masks
    total = positive.sum(dim=(1, 2))
    inside = torch.where(masks, positive, 0.0).sum(dim=(1, 2))
    empty = (total < eps) | mb.degenerate  # a NaN or inf map has no meaningful share: degenerate, 0
    energy = torch.where(empty, torch.zeros_like(total), inside / torch.where(empty, 1.0, total))
    return _nan_without_box(mb, energy)
