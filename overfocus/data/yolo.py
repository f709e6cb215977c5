"""`yolo:PATH`: YOLO txt labels (Ultralytics / Darknet / Roboflow exports).

Layouts (the first found wins):
    PATH/images/{train,val}/*.jpg + PATH/labels/{train,val}/*.txt
    PATH/train/{images,labels}/ + PATH/valid/ (or val/, test/) with the same two folders
    PATH/images/*.jpg + PATH/labels/*.txt  (test split: a deterministic `test_fraction`, 0.2)
Split folders may carry a suffix (Ultralytics' COCO: `images/train2017`, `images/val2017`). Class
names come from PATH/data.yaml (`names:` as a list or an {id: name} map), else the one other
dataset YAML in PATH (`coco.yaml`), else PATH/classes.txt (one name a line). PATH may also BE an
Ultralytics dataset YAML: its `path:` (default: the YAML's folder) is the root, its `train:` and
`val:` name the image folders (labels beside them in `labels/`), its `names:` the classes. A label line is `class cx cy w h`, normalised to [0, 1] by the image size;
a segmentation line `class x1 y1 x2 y2 ...` counts as the box around its points.

Label rule: the label is the class of the LARGEST object (box area); the boxes are every object
of that class. Images with no label file or an empty one (YOLO's background images) are left out.
A bad label file (not UTF-8, a line that is not `class cx cy w h` numbers) is an error naming the
file and the line; `--skip-bad` leaves its image out with one warning.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..errors import OverfocusError, shorten
from ..fileio import read_text_file, read_yaml_file
from .base import FileDataset
from .formats import (SPLIT_OPTIONS, Record, bad_entry, check_options, list_images, make_dataset, pick_label,
                      require_path, split_fraction, split_records)
from .specs import DATASETS

LAYOUT = ("PATH/images/{train,val}/ + PATH/labels/{train,val}/ (or PATH/train/{images,labels}/ + "
          "PATH/valid/{images,labels}/, or flat PATH/images/ + PATH/labels/) and PATH/data.yaml or PATH/classes.txt")


class YoloDataset(FileDataset):
    """FileDataset whose record boxes are fractions of the image, scaled once the image is read.

    Scaling at read time avoids opening every image when the dataset is built.
    """

    def boxes_in_pixels(self, boxes: np.ndarray, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return boxes * np.array([w, h, w, h], np.float32)


def class_names(root: Path) -> List[str]:
    """Names from data.yaml (`names` as a list, or a map of class numbers to names) or
    classes.txt; neither, or a data.yaml of another shape, is an error naming the file."""
    if (root / "data.yaml").is_file():
        return _yaml_names(root / "data.yaml")
    others = sorted(p for pattern in ("*.yaml", "*.yml") for p in root.glob(pattern))
    if len(others) == 1:  # an Ultralytics dataset YAML under its own name (coco.yaml)
        return _yaml_names(others[0])
    if (root / "classes.txt").is_file():
        text = read_text_file(root / "classes.txt", "class list")
        return [line.strip() for line in text.splitlines() if line.strip()]
    raise OverfocusError(f"missing annotation file {root / 'data.yaml'} (or {root / 'classes.txt'}) with the "
                         f"class names: a yolo dataset is laid out as {LAYOUT}")


def _yaml_names(path: Path) -> List[str]:
    """The `names:` of a data.yaml: a list, or {0: name, 1: name, ...} with every number once."""
    data = read_yaml_file(path, "dataset file") or {}
    if not isinstance(data, dict):
        raise OverfocusError(f"{path} holds a {type(data).__name__}, not a mapping: write `names: [cat, dog]`")
    names = data.get("names")
    if isinstance(names, dict):
        keys = [k for k in names if isinstance(k, int) and not isinstance(k, bool)]
        if len(keys) != len(names) or sorted(keys) != list(range(len(keys))):
            raise OverfocusError(f"{path}: `names:` maps {shorten(sorted(map(str, names)), 80)} to names; the keys "
                                 "must be the class numbers 0, 1, 2, ... (or write a list)")
        names = [names[k] for k in sorted(keys)]
    if not isinstance(names, list) or not names:
        raise OverfocusError(f"{path} has no `names:` list of class names")
    if not all(isinstance(n, (str, int, float)) and not isinstance(n, bool) and str(n).strip() for n in names):
        raise OverfocusError(f"{path}: every class name in `names:` must be a non-empty text, got {shorten(names)}")
    return [str(n) for n in names]


def split_folders(root: Path, split: str) -> Tuple[Path, Path, bool]:
    """(images folder, labels folder, whether the split still has to be made) for one split."""
    names = ["train"] if split == "train" else ["val", "valid", "test"]
    for name in names:
        if (root / "images" / name).is_dir():
            return root / "images" / name, root / "labels" / name, False
        if (root / name / "images").is_dir():
            return root / name / "images", root / name / "labels", False
    for name in names:  # a split folder with a suffix: images/train2017, images/val2017
        found = sorted(p for p in (root / "images").glob(f"{name}*") if p.is_dir()) if (root / "images").is_dir() else []
        if found:
            return found[0], root / "labels" / found[0].name, False
    if (root / "images").is_dir() and list_images(root / "images"):
        return root / "images", root / "labels", True
    raise OverfocusError(f"no {split} images found under {root}: a yolo dataset is laid out as {LAYOUT}")


def from_dataset_yaml(path: Path, split: str) -> Tuple[Path, List[str], Path, Path]:
    """(root, classes, images folder, labels folder) of one split from an Ultralytics dataset YAML:
    `path:` the root (relative to the YAML's folder; default that folder), `train:` / `val:` the image
    folders under it; each labels folder is its images folder with `images` replaced by `labels`."""
    data = read_yaml_file(path, "dataset file") or {}
    if not isinstance(data, dict):
        raise OverfocusError(f"{path} holds a {type(data).__name__}, not a mapping with path:, train:, val:, names:")
    root = (path.parent / str(data.get("path") or ".")).resolve()
    key = "train" if split == "train" else next((k for k in ("val", "test") if data.get(k)), "val")
    entry = data.get(key)
    if not isinstance(entry, str) or not entry:
        raise OverfocusError(f"{path} has no `{key}:` folder of images: write e.g. `{key}: images/{key}2017`")
    images = root / entry
    if not images.is_dir():
        raise OverfocusError(f"{path}: `{key}: {entry}` is not a folder under {root} (image lists in .txt files "
                             "are not read: name the images folder)")
    parts = list(images.relative_to(root).parts)
    labels = root / Path(*[("labels" if p == "images" else p) for p in parts])
    return root, _yaml_names(path), images, labels


def parse_label_file(path: Path, num_classes: int) -> List[Tuple[int, Tuple[float, ...]]]:
    """[(class, (x0, y0, x1, y1) as fractions)] of one label file; a bad line is an error naming
    the file and the line (not UTF-8, not numbers, a class out of range, too few coordinates)."""
    objects = []
    for number, line in enumerate(read_text_file(path, "label file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, values = int(parts[0]), [float(v) for v in parts[1:]]
        except ValueError:
            raise OverfocusError(f"{path} line {number}: expected `class cx cy w h` numbers, got "
                                 f"{shorten(line.strip())}") from None
        if not 0 <= cls < num_classes or len(values) < 4 or (len(values) > 4 and len(values) % 2):
            raise OverfocusError(f"{path} line {number}: class {cls} of {num_classes} with {len(values)} "
                                 "coordinates; expected `class cx cy w h` (or a polygon of x y pairs)")
        if not all(map(math.isfinite, values)):
            raise OverfocusError(f"{path} line {number}: a coordinate is not a finite number")
        objects.append((cls, _to_corners(values)))
    return objects


def _to_corners(values: List[float]) -> Tuple[float, ...]:
    if len(values) == 4:
        cx, cy, w, h = values
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = values[0::2], values[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def yolo_records(root: Path, images: Path, labels: Path, num_classes: int, skip_bad: bool = False) -> List[Record]:
    """One record per image with a non-empty label file; boxes stay fractions of the image.
    An image whose label file is bad is an error, or left out with a warning under --skip-bad."""
    records = []
    for img in list_images(images, recursive=True):
        label_file = labels / img.relative_to(images).with_suffix(".txt")
        try:
            objects = parse_label_file(label_file, num_classes) if label_file.is_file() else []
        except OverfocusError as exc:
            bad_entry(str(exc), skip_bad)
            continue
        picked = pick_label(objects)
        if picked is not None:
            records.append((str(img), picked[0], picked[1], img.relative_to(root).as_posix()))
    return records


@DATASETS.register("yolo")
def open_yolo(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data yolo:PATH[?limit=N&test_fraction=0.2]` (label = largest object's class)."""
    check_options("yolo", options, SPLIT_OPTIONS)
    fraction = split_fraction(options)  # checked even where the data has its own split
    if Path(path).suffix.lower() in (".yaml", ".yml") and Path(path).is_file():
        root, classes, images, labels = from_dataset_yaml(Path(path), split)
        must_split = False
    else:
        root = require_path(path, "yolo", LAYOUT)
        classes = class_names(root)
        images, labels, must_split = split_folders(root, split)
    records = yolo_records(root, images, labels, len(classes), skip_bad)
    if must_split:
        records = split_records(records, split, fraction, root)
    return make_dataset(records, classes, image_size, augment, skip_bad, f"{root} ({split})", options,
                        cls=YoloDataset)
