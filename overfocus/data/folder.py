"""`folder:PATH`: plain class folders of images, no boxes (Imagenette, ImageWoof, your own photos).

PATH/train/<class>/ and PATH/val/<class>/ (or PATH/test/<class>/) are the two splits when PATH
has a `train` folder; otherwise PATH/<class>/ holds every image and the test split is a
deterministic `test_fraction` (default 0.2) of them, chosen from each file's path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import OverfocusError
from .formats import (SPLIT_OPTIONS, Record, check_options, list_images, make_dataset, no_boxes,
                      require_path, split_fraction, split_records)
from .specs import DATASETS

LAYOUT = "PATH/<class>/*.jpg, or PATH/train/<class>/*.jpg with PATH/val/<class>/*.jpg (or PATH/test/)"


def split_roots(root: Path) -> Tuple[Path, Optional[Path]]:
    """(train folder, test folder) of a split layout, or (root, None) for a single class tree."""
    if not (root / "train").is_dir():
        return root, None
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / "train", root / name
    raise OverfocusError(f"{root} has a train/ folder but no val/ or test/ beside it: expected {LAYOUT}")


def class_names(folder: Path) -> List[str]:
    """Sorted names of the sub-folders that hold at least one image (at any depth)."""
    names = [d.name for d in sorted(folder.iterdir())
             if d.is_dir() and not d.name.startswith(".") and list_images(d, recursive=True)]
    if not names:
        raise OverfocusError(f"no class folders with images in {folder}: expected {LAYOUT}")
    return names


def folder_records(folder: Path, root: Path, classes: List[str]) -> List[Record]:
    """One record per image of `folder/<class>/`; a class unknown to the train split is an error."""
    index = {name: i for i, name in enumerate(classes)}
    records = []
    for name in class_names(folder):
        if name not in index:
            raise OverfocusError(f"class folder {folder / name} has no counterpart in the train split: "
                                 "train and test must use the same class folders")
        for path in list_images(folder / name, recursive=True):
            records.append((str(path), index[name], no_boxes(), path.relative_to(root).as_posix()))
    return records


@DATASETS.register("folder")
def open_folder(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data folder:PATH[?limit=N&test_fraction=0.2]` (no boxes: has_boxes False)."""
    check_options("folder", options, SPLIT_OPTIONS)
    root = require_path(path, "folder", LAYOUT)
    fraction = split_fraction(options)  # checked even where the folder has its own split
    train_root, test_root = split_roots(root)
    classes = class_names(train_root)
    if test_root is None:
        records = split_records(folder_records(root, root, classes), split, fraction, root)
    else:
        records = folder_records(train_root if split == "train" else test_root, root, classes)
    return make_dataset(records, classes, image_size, augment, skip_bad, f"{root} ({split})", options,
                        has_boxes=False)
