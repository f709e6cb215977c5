"""`cub:PATH`: Caltech-UCSD Birds-200-2011 (or any subset of it), one box per image.

Layout (the original archive; PATH may also be the folder that holds CUB_200_2011/):
    PATH/images/<class>/<file>.jpg
    PATH/images.txt             `id relative/path.jpg`
    PATH/bounding_boxes.txt     `id x y width height` (float pixels)
    PATH/image_class_labels.txt `id class_id`
    PATH/train_test_split.txt   `id is_train` (1 = train, 0 = test)
    PATH/classes.txt            `class_id name`
Only ids listed in images.txt are used (the other files may be the full 11,788-line originals).
Labels are the class ids of those images remapped to 0..K-1 in class-id order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..errors import OverfocusError
from .formats import Record, check_options, make_dataset, read_annotation_text, require_path
from .specs import DATASETS

LAYOUT = ("PATH/images/<class>/*.jpg with images.txt, bounding_boxes.txt, image_class_labels.txt, "
          "train_test_split.txt and classes.txt in PATH (CUB_200_2011's own layout)")


def read_table(path: Path, fields: int) -> Dict[str, List[str]]:
    """`id value...` lines -> {id: [values]}; a short line is an error naming the file."""
    table = {}
    for number, line in enumerate(read_annotation_text(path, "cub", LAYOUT).splitlines(), 1):
        parts = line.split(maxsplit=fields - 1)
        if not parts:
            continue
        if len(parts) != fields:
            raise OverfocusError(f"{path} line {number}: expected {fields} space-separated fields")
        table[parts[0]] = parts[1:]
    return table


def cub_root(root: Path) -> Path:
    """Accept the folder holding CUB_200_2011/ as well as CUB_200_2011 itself."""
    inner = root / "CUB_200_2011"
    return inner if not (root / "images.txt").is_file() and (inner / "images.txt").is_file() else root


def cub_tables(root: Path) -> Tuple[Dict, Dict, Dict, Dict, Dict]:
    """images, bounding boxes, class labels, train/test flags and class names, keyed by id."""
    return (read_table(root / "images.txt", 2), read_table(root / "bounding_boxes.txt", 5),
            read_table(root / "image_class_labels.txt", 2), read_table(root / "train_test_split.txt", 2),
            read_table(root / "classes.txt", 2))


def cub_records(root: Path, split: str) -> Tuple[List[Record], List[str]]:
    """Records of one split and the class names of the images present, in class-id order."""
    images, boxes, labels, is_train, names = cub_tables(root)
    missing = [i for i in images if i not in boxes or i not in labels or i not in is_train]
    if missing:
        raise OverfocusError(f"image id {missing[0]} of {root / 'images.txt'} has no box, label or split line: "
                             "the CUB annotation files do not match")
    class_ids = sorted({labels[i][0] for i in images}, key=int)
    index = {c: k for k, c in enumerate(class_ids)}
    want = "1" if split == "train" else "0"
    records = []
    for i in sorted((i for i in images if is_train[i][0] == want), key=int):
        x, y, w, h = (float(v) for v in boxes[i])
        rel = images[i][0]
        records.append((str(root / "images" / rel), index[labels[i][0]],
                        np.asarray([[x, y, x + w, y + h]], np.float32), rel))
    return records, [names.get(c, [c])[0] for c in class_ids]


@DATASETS.register("cub")
def open_cub(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data cub:PATH[?limit=N]` (the train/test split is CUB's own)."""
    check_options("cub", options)
    root = cub_root(require_path(path, "cub", LAYOUT))
    records, classes = cub_records(root, split)
    return make_dataset(records, classes, image_size, augment, skip_bad, f"{root} ({split})", options)
