"""Human importance maps: the registry of human-map kinds, their spec strings and shared helpers.

Every human-map dataset yields the samples of `overfocus.data.base` (image in [0, 1], label,
boxes, image_id) plus `human`: an image_size x image_size float tensor, max-normalised to 1 (an
all-zero map stays zero). Their classes are not the model's: `label` is the shard's label for
ClickMe and -1 otherwise; score a model on its predicted class. Open one with
`open_human_dataset(spec, size)`; the kinds, one module each, register themselves in HUMAN_MAPS:

    osie:PATH[?source=eye|mouse&sigma=24]       overfocus/data/osie.py
    clickme:PATH[?verify=true&raw_dtype=uint8]  overfocus/data/clickme.py (TFRecords: tfrecord.py)
    heatmaps:PATH                               overfocus/data/heatmap_folder.py

A kind is a Dataset class registered with `@HUMAN_MAPS.register("name")`, constructed as
`cls(path, image_size, **options)`, with class attributes `OPTIONS` (the spec options it takes)
and `USAGE` (its spec, shown in errors); its module is imported in `overfocus/data/__init__.py`.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple  # noqa: F401  (Optional: for loaders appended at the end)

import numpy as np
import torch

from ..errors import OverfocusError
from ..fileio import load_scalar
from ..registry import Registry, did_you_mean
from .base import Batch, collate_samples, resize_with_boxes, to_tensor
from .imagefile import decode_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OSIE_SIGMA = 24.0  # px at 800 x 600: about one degree of visual angle in OSIE's recordings
HUMAN_MAPS: Registry = Registry("human-map kind")

# ----------------------------------------------------------------------------------------------
# Maps from points, resizing
# ----------------------------------------------------------------------------------------------


def points_to_map(points_xy: np.ndarray, height: int, width: int, sigma: float = OSIE_SIGMA) -> np.ndarray:
    """Place 0-based (x, y) points (x = column) on a height x width map, blur, normalise to max 1.

    Example:
        >>> m = points_to_map(np.array([[70.0, 10.0]]), 50, 100, sigma=2)
        >>> tuple(int(v) for v in np.unravel_index(m.argmax(), m.shape))   # (row, column)
        (10, 70)
    """
    import cv2

    canvas = np.zeros((height, width), np.float32)
    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    cols = np.clip(np.round(pts[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(pts[:, 1]).astype(int), 0, height - 1)
    np.add.at(canvas, (rows, cols), 1.0)
    if sigma > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
    return normalise_map(canvas)


def normalise_map(heatmap: np.ndarray) -> np.ndarray:
    """Float32 map divided by its max; negative values clipped; an all-zero map stays zero."""
    heatmap = np.nan_to_num(np.asarray(heatmap, np.float32)).clip(min=0)
    peak = float(heatmap.max()) if heatmap.size else 0.0
    return heatmap / peak if peak > 0 else heatmap


def resize_map(heatmap: np.ndarray, size: int) -> np.ndarray:
    """Resize an H x W map to size x size as the photo is resized (area when shrinking)."""
    import cv2

    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.shape != (size, size):
        shrink = min(heatmap.shape) > size
        heatmap = cv2.resize(heatmap, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return heatmap


def make_sample(image: np.ndarray, heatmap: np.ndarray, image_size: int, label: int, image_id: str) -> Dict:
    """A base sample (no boxes) plus `human`, both at image_size x image_size."""
    img, boxes = resize_with_boxes(image, np.zeros((0, 4), np.float32), image_size)
    human = torch.from_numpy(normalise_map(resize_map(heatmap, image_size)))
    return {"image": to_tensor(img), "label": int(label), "boxes": torch.from_numpy(boxes),
            "image_id": image_id, "human": human}


def collate_human(samples: Sequence[Dict]) -> Tuple[Batch, torch.Tensor]:
    """Collate human-map samples: the usual Batch and the human maps B x H x W.

    Example:
        >>> s = {"image": torch.zeros(3, 4, 4), "label": -1, "boxes": torch.zeros(0, 4),
        ...      "image_id": "a", "human": torch.zeros(4, 4)}
        >>> collate_human([s, s])[1].shape
        torch.Size([2, 4, 4])
    """
    samples = [s for s in samples if s is not None]
    return collate_samples(samples), torch.stack([s["human"] for s in samples])


def read_heatmap(path: Path) -> np.ndarray:
    """A heatmap file (any OpenCV image, 8 or 16 bit, or .npy) as a float32 H x W map."""
    if path.suffix == ".npy":
        heat = np.load(path, allow_pickle=False)
    else:
        heat = decode_image(np.fromfile(str(path), np.uint8), path, hint="replace the heatmap")
    heat = np.asarray(heat, np.float32)
    return heat.mean(axis=2) if heat.ndim == 3 else heat


# Names that lived here before the kinds got modules of their own: still importable from here.
_MOVED = {"OSIEDataset": "osie", "ClickMeDataset": "clickme", "decode_array": "clickme",
          "HeatmapFolderDataset": "heatmap_folder", "heatmap_pairs": "heatmap_folder",
          **{name: "tfrecord" for name in ("crc32c", "masked_crc32c", "tfrecord_index", "read_tfrecord",
                                           "iter_tfrecords", "parse_example")}}


def __getattr__(name: str):
    """Old import paths (`from overfocus.data.human import ClickMeDataset`) keep working."""
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# Spec strings
# ----------------------------------------------------------------------------------------------

def open_human_dataset(spec: str, image_size: int):
    """Open a human-map dataset from a spec `KIND:PATH[?key=value&...]` of a registered kind.

    Example:
        >>> open_human_dataset("nope:/x", 64)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: unknown human-map kind 'nope' in 'nope:/x': use clickme:PATH...
    """
    head, _, query = spec.partition("?")
    kind, _, path = head.partition(":")
    if kind not in HUMAN_MAPS:
        raise OverfocusError(f"unknown human-map kind {kind!r} in {spec!r}{did_you_mean(kind, HUMAN_MAPS)}: use "
                             f"{', '.join(HUMAN_MAPS.get(name).USAGE for name in HUMAN_MAPS)}")
    if not path:
        raise OverfocusError(f"human-map spec {spec!r} has no path: write {kind}:PATH")
    factory = HUMAN_MAPS.get(kind)
    options = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or key not in factory.OPTIONS:
            raise OverfocusError(f"bad option {part!r} in {spec!r}: {kind} takes {sorted(factory.OPTIONS) or 'none'}")
        options[key] = load_scalar(value, f"human-map option {key}")
    return factory(path, image_size, **options)


# ----------------------------------------------------------------------------------------------
# Maps named after image ids (audit --human DIR)
# ----------------------------------------------------------------------------------------------
HUMAN_MAP_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg")


def human_map_file(root: Path, image_id: str) -> Optional[Path]:
    """The human map of an image: ROOT/<image_id>[.npy|.png|.jpg], also without the image's suffix."""
    stem = Path(image_id).with_suffix("") if Path(image_id).suffix else Path(image_id)
    candidates = [root / image_id] + [root / f"{stem}{s}" for s in HUMAN_MAP_SUFFIXES]
    candidates += [root / f"{Path(image_id).stem}{s}" for s in HUMAN_MAP_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


def load_maps_by_id(root: Path, image_ids: Sequence[str], size: int) -> Tuple[torch.Tensor, int]:
    """B x size x size human maps named after `image_ids` in `root` (bilinear resize, negative
    values clipped); a missing one is all zero. Returns (maps, number found).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> np.save(root / "a.npy", np.ones((4, 4), np.float32))
        >>> maps, found = load_maps_by_id(root, ["a.jpg", "b"], 2)
        >>> maps.shape, found, maps[0].tolist()
        (torch.Size([2, 2, 2]), 1, [[1.0, 1.0], [1.0, 1.0]])
    """
    import cv2

    maps, found = torch.zeros(len(image_ids), size, size), 0
    for i, image_id in enumerate(image_ids):
        path = human_map_file(Path(root), image_id)
        if path is None:
            continue
        arr = read_heatmap(path)
        if arr.ndim != 2:
            raise OverfocusError(f"human map {path} is not a 2-D map: save H x W arrays or greyscale images")
        arr = cv2.resize(np.asarray(arr, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        maps[i] = torch.from_numpy(np.clip(arr, 0, None))
        found += 1
    return maps, found
