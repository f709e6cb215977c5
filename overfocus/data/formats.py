"""Helpers shared by the file-based dataset kinds (tiny-imagenet, cub, voc, coco, yolo, folder).

Each kind builds a list of records `(path, label, boxes, image_id)` with boxes (x0, y0, x1, y1)
in pixels of the ORIGINAL image (YOLO: fractions of it) and hands them to `FileDataset`, which
reads, resizes to image_size x image_size (the boxes follow), augments and applies the bad-file
policy. The helpers here check paths and options, pick the label of a multi-object image, split
deterministically where a format has no split of its own, and apply `?limit=N`.
"""
from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError, shorten
from ..fileio import read_text_file
from .base import FileDataset
from .specs import option_int

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
COMMON_OPTIONS = {"limit"}
SPLIT_OPTIONS = {"test_fraction"}  # kinds that may need a deterministic split of their own
Record = Tuple[str, int, np.ndarray, str]


ENTRY_HINT = "fix that entry, or pass --skip-bad to skip such entries"
_WARNED: set = set()  # entries already reported in this process (train, its eval copy and test re-read a file)


def bad_entry(message: str, skip_bad: bool) -> None:
    """A bad entry of an annotation file (a COCO annotation, a YOLO label file, a VOC object).

    Without --skip-bad: a one-line OverfocusError `message` with the fix. With it: one warning on
    stderr per entry and process, and the caller leaves the entry out.

    Example:
        >>> bad_entry("a.json annotation 3: bbox has 3 values, not 4", skip_bad=False)
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: a.json annotation 3: bbox has 3 values, not 4; fix that entry, or pass --skip-bad to skip such entries
    """
    if not skip_bad:
        raise OverfocusError(f"{message}; {ENTRY_HINT}")
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: --skip-bad skipped a bad entry: {message}", file=sys.stderr, flush=True)


def check_options(kind: str, options: Dict, extra: Iterable[str] = ()) -> Dict:
    """Reject unknown spec options (a typo must not be silently ignored); return the options.

    Example:
        >>> check_options("cub", {"limit": 10})
        {'limit': 10}
    """
    known = COMMON_OPTIONS | set(extra)
    unknown = sorted(set(options) - known)
    if unknown:
        raise OverfocusError(f"unknown {kind} data option(s) {unknown}: known are {sorted(known)}")
    return options


def split_fraction(options: Dict) -> float:
    """The `test_fraction` option (share of images put in the test split), default 0.2; 1 makes
    every image a test image (a folder of test images, e.g. what audit scores)."""
    value = options.get("test_fraction", 0.2)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise OverfocusError(f"data option test_fraction={shorten(value)}: use a number in (0, 1], e.g. 0.2")
    return float(value)


def require_path(path: str, kind: str, layout: str) -> Path:
    """The dataset root as a Path; a missing or empty spec path is an error naming the layout."""
    if not path:
        raise OverfocusError(f"--data {kind} needs a path: use --data {kind}:PATH where PATH holds {layout}")
    root = Path(path).expanduser()
    if not root.exists():
        raise OverfocusError(f"dataset path {root} does not exist: --data {kind}:PATH expects {layout}")
    if not root.is_dir():
        raise OverfocusError(f"dataset path {root} is not a folder: --data {kind}:PATH expects {layout}")
    return root


def require_file(path: Path, kind: str, layout: str) -> Path:
    """An annotation file that must exist; the error names it and the expected layout."""
    if not path.is_file():
        raise OverfocusError(f"missing annotation file {path}: a {kind} dataset is laid out as {layout}")
    return path


ANNOTATION_BYTES = 64 << 20  # an annotation list (CUB's images.txt: 0.7 MB); more is not such a file


def read_annotation_text(path: Path, kind: str, layout: str) -> str:
    """The UTF-8 text of an annotation file that must exist (too big, not UTF-8: one line naming it)."""
    return read_text_file(require_file(path, kind, layout), "annotation file", ANNOTATION_BYTES)


def require_dir(path: Path, kind: str, layout: str) -> Path:
    """A sub-folder that must exist; the error names it and the expected layout."""
    if not path.is_dir():
        raise OverfocusError(f"missing folder {path}: a {kind} dataset is laid out as {layout}")
    return path


def is_image(path: Path) -> bool:
    """A visible file with an image suffix (case-insensitive)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> List[Path]:
    """Image files of a folder (optionally of its sub-folders too), sorted for a stable order."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image(p))


def in_test_split(image_id: str, fraction: float) -> bool:
    """Deterministic split from the image id alone: the same on every machine and every run.

    Example:
        >>> in_test_split("a.jpg", 0.2) == in_test_split("a.jpg", 0.2)
        True
    """
    return zlib.crc32(image_id.encode("utf-8", "surrogateescape")) / 2 ** 32 < fraction


def split_records(records: List[Record], split: str, fraction: float, source: object = "") -> List[Record]:
    """Keep the records of one split of a deterministic split (see `in_test_split`); a split
    left empty (a folder of a few images and no split of its own) is one line saying how to fix it."""
    want_test = split == "test"
    kept = [r for r in records if in_test_split(r[3], fraction) == want_test]
    if records and not kept:
        where = f" of {source}" if source else ""
        raise OverfocusError(f"none of the {len(records)} images{where} falls in the {split} split, which is a "
                             f"deterministic test_fraction={fraction:g} of them: add images, set another share with "
                             "?test_fraction=, or give the dataset its own train/ and val/ split")
    return kept


def apply_limit(records: List[Record], limit: int) -> List[Record]:
    """At most `limit` records (0 = all), spread over the dataset rather than its first classes.

    The kept records are those whose id hashes lowest, so the choice is deterministic and mixes
    classes; they stay in their original order.
    """
    if not limit or limit >= len(records):
        return records
    ranked = sorted(range(len(records)),
                    key=lambda i: (zlib.crc32(records[i][3].encode("utf-8", "surrogateescape")), i))
    keep = set(ranked[:limit])
    return [r for i, r in enumerate(records) if i in keep]


def pick_label(objects: Sequence[Tuple[int, Sequence[float]]]) -> Optional[Tuple[int, np.ndarray]]:
    """The label of a multi-object image: the class of its LARGEST object (box area).

    Returns (label, boxes of every object of that class) or None when there is no object.
    Ties go to the object listed first.

    Example:
        >>> label, boxes = pick_label([(2, (0, 0, 10, 10)), (5, (0, 0, 20, 20)), (5, (30, 30, 31, 31))])
        >>> label, boxes.tolist()
        (5, [[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 31.0, 31.0]])
    """
    if not objects:
        return None
    areas = [max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) for _, b in objects]
    label = objects[int(np.argmax(areas))][0]
    boxes = np.asarray([b for c, b in objects if c == label], np.float32).reshape(-1, 4)
    return int(label), boxes


def no_boxes() -> np.ndarray:
    """The (0, 4) box array of an image without boxes."""
    return np.zeros((0, 4), np.float32)


def make_dataset(records: List[Record], classes: List[str], image_size: int, augment, skip_bad: bool,
                 source: str, options: Dict, has_boxes: bool = True, cls=FileDataset) -> FileDataset:
    """Apply `?limit=N` and wrap the records in a FileDataset (or the subclass `cls`)."""
    if not classes:
        raise OverfocusError(f"no classes found in {source}: check the path and the layout")
    records = apply_limit(records, option_int(options, "limit", 0))
    dataset = cls(records, list(classes), image_size, augment, skip_bad, source)
    dataset.has_boxes = has_boxes
    return dataset
