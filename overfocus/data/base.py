"""The one sample type shared by every dataset, the batch it collates into, and image reading.

Every dataset returns a dict sample:
    image     float tensor 3 x H x W in [0, 1] (NOT mean/std normalised: see `normalize`)
    label     int
    boxes     float tensor N x 4, (x0, y0, x1, y1) in pixels of the image AS THE MODEL SEES IT
              (after every resize and crop); N may be 0
    image_id  str, stable across runs (used to pick the same probe images every epoch)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import OverfocusError
from .imagefile import SKIP_HINT, decode_image
from .skiplog import SkipLog


@dataclass
class Batch:
    """A collated batch: images B x 3 x H x W in [0, 1], labels B, boxes list of N_i x 4, ids."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: List[torch.Tensor]
    image_ids: List[str]

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                     [b.to(device) for b in self.boxes], self.image_ids)

    def __len__(self) -> int:
        return len(self.image_ids)


def collate_samples(samples: Sequence[Dict]) -> Batch:
    """Stack dict samples into a Batch; boxes stay a list since counts differ per image.

    Example:
        >>> s = {"image": torch.zeros(3, 4, 4), "label": 1, "boxes": torch.zeros(0, 4), "image_id": "a"}
        >>> collate_samples([s, s]).images.shape
        torch.Size([2, 3, 4, 4])
    """
    samples = [s for s in samples if s is not None]  # None = a bad file skipped under --skip-bad
    if not samples:
        raise OverfocusError("every image of a batch was unreadable: check the data or drop --skip-bad")
    images = torch.stack([s["image"] for s in samples])
    labels = torch.tensor([int(s["label"]) for s in samples], dtype=torch.long)
    boxes = [torch.as_tensor(s["boxes"], dtype=torch.float32).reshape(-1, 4) for s in samples]
    return Batch(images, labels, boxes, [str(s["image_id"]) for s in samples])


def image_id_at(dataset, index: int) -> str:
    """The image_id of sample `index`, without decoding the image where the dataset allows it.

    Example:
        >>> from overfocus.data import open_dataset
        >>> image_id_at(open_dataset("builtin?test=4", "test", 32), 2)
        'test_000002'
    """
    fast = getattr(dataset, "image_id", None)
    return str(fast(index)) if callable(fast) else str(dataset[index]["image_id"])


def dataset_labels(dataset) -> Optional[List[int]]:
    """Every sample's label without decoding an image, where the dataset's records hold them (file
    formats, also through a Subset) or it draws them cheaply (`sample_labels()`: the built-in
    shapes); None otherwise.

    Example:
        >>> from overfocus.data import open_dataset
        >>> dataset_labels(open_dataset("builtin?test=4&classes=3", "test", 32))
        [1, 2, 1, 0]
    """
    indices = None
    while not (hasattr(dataset, "records") or hasattr(dataset, "sample_labels")) and hasattr(dataset, "dataset") \
            and hasattr(dataset, "indices"):
        indices = list(dataset.indices) if indices is None else [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    records = getattr(dataset, "records", None)
    if records is not None:
        labels = [int(r[1]) for r in records]
    elif callable(getattr(dataset, "sample_labels", None)):
        labels = dataset.sample_labels()
    else:
        return None
    return labels if indices is None else [labels[i] for i in indices]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Mean/std normalisation of a batch in [0, 1]; the single place where it happens."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB (greyscale and RGBA converted).

    A file that cannot be decoded (see `imagefile.decode_image`: corrupt, truncated JPEG, more
    pixels than overfocus reads) raises OverfocusError naming it: never a silent wrong sample.
    """
    import cv2  # imported here: keeps `import overfocus` light

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else b""
    img = decode_image(data, path)
    if img.dtype.kind == "f" and not np.isfinite(img).all():  # e.g. a float TIFF holding NaN
        raise OverfocusError(f"cannot use image {path}: it holds non-finite pixel values (NaN or infinity); {SKIP_HINT}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.dtype != np.uint8:
        img = (np.clip(img / max(1, img.max()), 0, 1) * 255).astype(np.uint8)
    return img


def resize_with_boxes(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple:
    """Resize H x W x 3 uint8 to size x size; boxes (N x 4, pixels) follow the resize."""
    import cv2

    h, w = img.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] *= size / w
    boxes[:, [1, 3]] *= size / h
    return img, clip_boxes(boxes, size, size)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip boxes to the image and drop those left with no area."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


class FileDataset(torch.utils.data.Dataset):
    """A dataset over a list of (path, label, boxes-in-original-pixels, image_id) records.

    Subclasses (one per file format) only build `records`; reading, resizing, augmentation and
    the bad-file policy live here once.
    """

    has_boxes = True

    def __init__(self, records: List[tuple], classes: List[str], image_size: int,
                 augment: Optional[object] = None, skip_bad: bool = False, source: str = ""):
        if not records:
            raise OverfocusError(f"no images found in {source or 'the dataset'}: check the path and layout")
        self.records, self.classes, self.image_size = records, classes, image_size
        self.augment, self.skip_bad, self.source = augment, skip_bad, source
        self._skip_log = SkipLog() if skip_bad else None  # shared with DataLoader workers

    @property
    def bad_files(self) -> List[str]:
        """Files skipped as unreadable so far (by this process or its DataLoader workers)."""
        return self._skip_log.paths() if self._skip_log is not None else []

    def __len__(self) -> int:
        return len(self.records)

    def image_id(self, index: int) -> str:
        return str(self.records[index][3])

    def boxes_in_pixels(self, boxes: np.ndarray, img: np.ndarray) -> np.ndarray:
        """Record boxes in pixels of the file's image; formats storing fractions override this."""
        return boxes

    def __getitem__(self, index: int) -> Optional[Dict]:
        path, label, boxes, image_id = self.records[index]
        try:
            img = read_rgb(Path(path))
        except OverfocusError as exc:
            if not self.skip_bad:
                raise
            self._skip(str(path), exc)
            return None
        img, boxes = resize_with_boxes(img, self.boxes_in_pixels(boxes, img), self.image_size)
        if self.augment is not None:
            img, boxes = self.augment(img, boxes, index)
        return {"image": to_tensor(img), "label": label, "boxes": torch.from_numpy(boxes), "image_id": image_id}

    def _skip(self, path: str, exc: OverfocusError) -> None:
        """Remember a skipped file and say so once, on stderr (it is read again every epoch)."""
        if not self._skip_log.add(path):
            return
        reason = str(exc).replace(f"; {SKIP_HINT}", "").replace(f": {SKIP_HINT}", "")
        print(f"warning: --skip-bad skipped an unreadable image: {reason}", file=sys.stderr, flush=True)


def skipped_files(*datasets) -> List[str]:
    """The files that `datasets` (or Subsets of them) skipped as unreadable under --skip-bad, sorted.

    For the run record (e.g. run.json `skipped_files`). Files are known once they were read, by
    this process or by its DataLoader workers.

    Example:
        >>> from overfocus.data import open_dataset
        >>> skipped_files(open_dataset("builtin?test=4", "test", 32))
        []
    """
    found = set()
    for dataset in datasets:
        while not hasattr(dataset, "bad_files") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset  # a Subset (or any wrapper keeping `.dataset`)
        found.update(getattr(dataset, "bad_files", ()))
    return sorted(found)


def is_readable(dataset, index: int) -> bool:
    """Whether sample `index` of `dataset` (a Subset too) decodes: for choosing probe images.

    Reads the sample once; an unreadable file is also recorded as skipped under --skip-bad.

    Example:
        >>> from overfocus.data import open_dataset
        >>> is_readable(open_dataset("builtin?test=4", "test", 32), 3)
        True
    """
    try:
        return dataset[index] is not None
    except OverfocusError:
        return False
