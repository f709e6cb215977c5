"""One batch of maps and boxes with the intermediate results that several metrics share.

`compute_map_metrics` wraps a batch once and hands the same `MapBatch` to every metric, so the
per-sample normalisation, the padded boxes, the union masks and the thresholded-map boxes are
computed once per batch instead of once per metric. Each metric function also accepts a plain
tensor (it then wraps it itself), so calling one metric on its own works as before.

Pixel convention (docs/conventions.md): pixel (row r, column c) covers [c, c+1) x [r, r+1); a box
(x0, y0, x1, y1), x = column, covers the pixels whose CENTRE (c + 0.5, r + 0.5) lies inside it
(borders included). So an integer box covers columns x0 .. x1-1 and rows y0 .. y1-1, and the
box of a set of pixels is (min c, min r, max c + 1, max r + 1).
"""
from __future__ import annotations

from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from ..attribution.api import normalize_maps
from ..errors import OverfocusError


def check_maps(maps: torch.Tensor) -> torch.Tensor:
    """Validate B x H x W maps (a B x 1 x H x W channel axis is squeezed) and return float32."""
    if isinstance(maps, MapBatch):
        return maps.maps
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

    Works on any ... x 4 tensor. A box covering no pixel centre gets c1 < c0 (or r1 < r0).
    """
    c0 = torch.ceil(boxes[..., 0] - 0.5).clamp(min=0)
    r0 = torch.ceil(boxes[..., 1] - 0.5).clamp(min=0)
    c1 = torch.floor(boxes[..., 2] - 0.5).clamp(max=width - 1)
    r1 = torch.floor(boxes[..., 3] - 0.5).clamp(max=height - 1)
    return torch.stack([c0, r0, c1, r1], dim=-1)


def pad_boxes(boxes: Sequence[torch.Tensor], device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Boxes as one B x K x 4 tensor (padded with zeros) and a B x K bool tensor of real boxes.

    Example:
        >>> padded, valid = pad_boxes([torch.ones(2, 4), torch.zeros(0, 4)])
        >>> padded.shape, valid.tolist()
        (torch.Size([2, 2, 4]), [[True, True], [False, False]])
    """
    boxes = [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu() for b in boxes]
    counts = torch.tensor([len(b) for b in boxes], dtype=torch.long)
    k = max(int(counts.max()) if len(boxes) else 0, 1)
    padded = torch.zeros(len(boxes), k, 4)  # filled on the CPU in one scatter, moved once
    valid = torch.arange(k)[None, :] < counts[:, None]
    if int(counts.sum()):
        padded[valid] = torch.cat(boxes)  # row-major order of `valid` = image by image, box by box
    return padded.to(device), valid.to(device)


def masks_from_padded(padded: torch.Tensor, valid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """B x H x W union masks of padded B x K x 4 boxes: a broadcast comparison, any over K."""
    rng = box_pixel_ranges(padded, height, width)
    cols = torch.arange(width, device=padded.device)
    rows = torch.arange(height, device=padded.device)
    in_c = (cols >= rng[..., 0:1]) & (cols <= rng[..., 2:3])  # B x K x W
    in_r = (rows >= rng[..., 1:2]) & (rows <= rng[..., 3:4]) & valid[..., None]  # B x K x H
    if padded.shape[1] == 1:  # the common case of one box per image: no B x K x H x W temporary
        return in_r[:, 0, :, None] & in_c[:, 0, None, :]
    return (in_r[..., :, None] & in_c[..., None, :]).any(dim=1)


def boxes_to_masks(boxes: Sequence[torch.Tensor], height: int, width: int,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """Union of each image's boxes as a bool mask B x H x W (pixel centres inside a box).

    Example:
        >>> boxes_to_masks([torch.tensor([[1., 0., 3., 1.]])], 2, 4).int().tolist()
        [[[0, 1, 1, 0], [0, 0, 0, 0]]]
    """
    padded, valid = pad_boxes(boxes, device)
    return masks_from_padded(padded, valid, height, width)


class MapBatch:
    """B x H x W maps (and optionally their boxes) with lazily computed, shared intermediates.

    Every property is computed on first use and kept: one normalisation, one set of padded
    boxes and masks, one thresholded-map box per (threshold, component) for the whole batch.

    Example:
        >>> mb = MapBatch(torch.rand(2, 8, 8), boxes=[torch.tensor([[0., 0., 4., 4.]])] * 2)
        >>> mb.normalized[0].amax().item(), mb.masks.shape
        (1.0, torch.Size([2, 8, 8]))
    """

    def __init__(self, maps: torch.Tensor, boxes: Optional[Sequence[torch.Tensor]] = None):
        self.maps = check_maps(maps)
        self._raw_boxes = boxes
        self.cache: Dict[tuple, object] = {}  # results keyed by their options, e.g. ("iou", 0.5, "largest")

    @classmethod
    def wrap(cls, maps: Union[torch.Tensor, "MapBatch"], boxes=None) -> "MapBatch":
        """`maps` itself when it is already a MapBatch, else a new one over `maps` and `boxes`."""
        if not isinstance(maps, MapBatch):
            return cls(maps, boxes)
        if boxes is not None and boxes is not maps._raw_boxes:
            raise OverfocusError("a MapBatch carries its own boxes: pass boxes=None or the same list")
        return maps

    def __len__(self) -> int:
        return self.maps.shape[0]

    @property
    def size(self) -> Tuple[int, int]:
        return int(self.maps.shape[1]), int(self.maps.shape[2])

    @cached_property
    def _normalized(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return normalize_maps(self.maps)

    @property
    def normalized(self) -> torch.Tensor:
        """Per-sample max-normalised maps (never NaN)."""
        return self._normalized[0]

    @property
    def degenerate(self) -> torch.Tensor:
        """B bool: all-zero (or non-finite) maps."""
        return self._normalized[1]

    @cached_property
    def positive(self) -> torch.Tensor:
        """The maps with negative values clipped to 0."""
        return self.maps.clamp_min(0)

    @cached_property
    def boxes(self) -> List[torch.Tensor]:
        """The checked boxes (raises OverfocusError when the batch has none)."""
        return check_boxes(self._raw_boxes, len(self))

    @cached_property
    def padded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B x K x 4 boxes, B x K valid) on the maps' device."""
        return pad_boxes(self.boxes, self.maps.device)

    @cached_property
    def has_box(self) -> torch.Tensor:
        """B bool on the maps' device: the image has at least one box."""
        return self.padded[1].any(dim=1)

    @cached_property
    def masks(self) -> torch.Tensor:
        """B x H x W bool union of each image's boxes."""
        return masks_from_padded(*self.padded, *self.size)
