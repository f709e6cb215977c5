"""`tiny-imagenet:PATH`: Tiny ImageNet (CS231n) or a class subset of it, one box per image.

Layout (the original archive, or a subset of its classes):
    PATH/train/<wnid>/images/*.JPEG and PATH/train/<wnid>/<wnid>_boxes.txt
        (`file x0 y0 x1 y1`, tab separated)
    PATH/val/<wnid>/*.JPEG sorted into class folders, with PATH/val_annotations.txt or
        PATH/val/val_annotations.txt (`file wnid x0 y0 x1 y1`); only lines whose file is present
        apply; or the original flat PATH/val/images/*.JPEG with PATH/val/val_annotations.txt.
The test split is `val` (Tiny ImageNet's own test images have no labels). Classes are the sorted
wnid folder names of train/. The box corners are INCLUSIVE pixel indices (a full 64-px image is
0 0 63 63), so x1 and y1 get +1 to become the exclusive edges used everywhere else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..errors import OverfocusError
from .formats import (Record, check_options, list_images, make_dataset, no_boxes, read_annotation_text, require_dir,
                      require_path)
from .specs import DATASETS

LAYOUT = ("PATH/train/<wnid>/images/*.JPEG + PATH/train/<wnid>/<wnid>_boxes.txt, and PATH/val/<wnid>/*.JPEG "
          "+ PATH/val_annotations.txt (or PATH/val/images/*.JPEG + PATH/val/val_annotations.txt)")


def read_annotations(path: Path, with_wnid: bool) -> Dict[str, Tuple[str, np.ndarray]]:
    """file name -> (wnid or "", 1 x 4 box with exclusive x1, y1) from a Tiny ImageNet box file."""
    table = {}
    width = 6 if with_wnid else 5
    for number, line in enumerate(read_annotation_text(path, "tiny-imagenet", LAYOUT).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width:
            raise OverfocusError(f"{path} line {number}: expected {width} tab-separated fields, got {len(parts)}")
        x0, y0, x1, y1 = (float(v) for v in parts[-4:])
        table[parts[0]] = (parts[1] if with_wnid else "", np.asarray([[x0, y0, x1 + 1, y1 + 1]], np.float32))
    return table


def train_records(root: Path, classes: List[str]) -> List[Record]:
    """The train split: every image of train/<wnid>/images/ with its box from <wnid>_boxes.txt."""
    records = []
    for label, wnid in enumerate(classes):
        boxes = read_annotations(root / "train" / wnid / f"{wnid}_boxes.txt", with_wnid=False)
        for img in list_images(root / "train" / wnid / "images"):
            box = boxes[img.name][1] if img.name in boxes else no_boxes()
            records.append((str(img), label, box, img.relative_to(root).as_posix()))
    return records


def val_records(root: Path, classes: List[str]) -> List[Record]:
    """The val split, from class folders or from the original flat layout."""
    val = require_dir(root / "val", "tiny-imagenet", LAYOUT)
    flat = (val / "images").is_dir()
    candidates = [val / "val_annotations.txt"] + ([] if flat else [root / "val_annotations.txt"])
    ann = next((p for p in candidates if p.is_file()), candidates[0])
    table = read_annotations(ann, with_wnid=True)
    index = {wnid: i for i, wnid in enumerate(classes)}
    if flat:  # label from the annotation file; lines of classes absent from train/ are left out
        return [(str(val / "images" / f), index[w], box, f"val/images/{f}") for f, (w, box) in sorted(table.items())
                if w in index and (val / "images" / f).is_file()]
    records = []
    for wnid in classes:
        for img in list_images(val / wnid) if (val / wnid).is_dir() else []:
            box = table[img.name][1] if img.name in table else no_boxes()
            records.append((str(img), index[wnid], box, img.relative_to(root).as_posix()))
    return records


def wnid_classes(root: Path) -> List[str]:
    """The sorted wnid folder names of train/ (the class list of both splits)."""
    train = require_dir(root / "train", "tiny-imagenet", LAYOUT)
    classes = sorted(d.name for d in train.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise OverfocusError(f"no class folders in {train}: expected {LAYOUT}")
    return classes


@DATASETS.register("tiny-imagenet")
def open_tiny_imagenet(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data tiny-imagenet:PATH[?limit=N]` (test split = Tiny ImageNet's val)."""
    check_options("tiny-imagenet", options)
    root = require_path(path, "tiny-imagenet", LAYOUT)
    classes = wnid_classes(root)
    records = train_records(root, classes) if split == "train" else val_records(root, classes)
    return make_dataset(records, classes, image_size, augment, skip_bad, f"{root} ({split})", options)
