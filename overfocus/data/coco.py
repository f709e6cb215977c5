"""`coco:PATH`: COCO-format detection data (MS COCO itself or any export in its JSON format).

Layout: PATH/annotations/instances_train*.json and PATH/annotations/instances_val*.json (or the
same files directly in PATH), with the images in PATH/<tag>/, PATH/images/<tag>/ or PATH/images/
where <tag> is the file name after `instances_` (e.g. train2017). With a single instances*.json,
a deterministic `test_fraction` (default 0.2) of its images is the test split.

Label rule: the label is the category of the LARGEST non-crowd object (box area); the boxes are
every non-crowd object of that category. Images without such objects are left out. Classes are the
train file's categories in category-id order, remapped to 0..K-1. COCO boxes are `[x, y, w, h]`
in 0-based float pixels: (x0, y0, x1, y1) = (x, y, x + w, y + h).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import OverfocusError
from .formats import (SPLIT_OPTIONS, Record, check_options, make_dataset, pick_label, require_path,
                      split_fraction, split_records)
from .specs import DATASETS

LAYOUT = ("PATH/annotations/instances_train*.json + instances_val*.json, images in PATH/train2017/ "
          "(or PATH/images/train2017/, PATH/images/)")


def annotation_files(root: Path) -> Tuple[Path, Optional[Path]]:
    """(train json, test json), or (the only json, None) when the split must be made here."""
    folder = root / "annotations" if (root / "annotations").is_dir() else root
    trains, vals = sorted(folder.glob("instances_train*.json")), sorted(folder.glob("instances_val*.json"))
    if len(trains) > 1 or len(vals) > 1:
        raise OverfocusError(f"several instances files in {folder} ({', '.join(p.name for p in trains + vals)}): "
                             "keep one train and one val file per dataset folder")
    if trains and vals:
        return trains[0], vals[0]
    single = sorted(folder.glob("instances*.json"))
    if len(single) == 1:
        return single[0], None
    raise OverfocusError(f"missing annotation file {folder / 'instances_train2017.json'} (and val): "
                         f"a coco dataset is laid out as {LAYOUT}")


def read_coco(path: Path) -> Dict:
    """The parsed instances file (cached until the file changes)."""
    return _read_coco(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_coco(path: Path, mtime_ns: int) -> Dict:
    # cached: the train file is opened for train, its eval copy and (for the classes) test
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OverfocusError(f"cannot parse annotation file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise OverfocusError(f"{path} is not a COCO instances file: it needs images, annotations and categories")
    return data


def image_folder(root: Path, json_path: Path, first_file: str) -> Path:
    """The folder that holds the images of one annotation file."""
    tag = json_path.stem.replace("instances_", "", 1)
    candidates = [root / tag, root / "images" / tag, root / "images", root]
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise OverfocusError(f"image {first_file} of {json_path.name} is in none of "
                         f"{', '.join(str(c) for c in candidates)}: expected {LAYOUT}")


def objects_by_image(data: Dict, index: Dict[int, int]) -> Dict[int, List]:
    """image id -> [(label, (x0, y0, x1, y1))] of its non-crowd objects with an area."""
    found: Dict[int, List] = {}
    for ann in data["annotations"]:
        x, y, w, h = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0 or ann["category_id"] not in index:
            continue
        found.setdefault(ann["image_id"], []).append((index[ann["category_id"]], (x, y, x + w, y + h)))
    return found


def coco_records(root: Path, json_path: Path, index: Dict[int, int]) -> List[Record]:
    """One record per image of the file that has a non-crowd object (label: largest object)."""
    data = read_coco(json_path)
    images = sorted(data["images"], key=lambda im: im["id"])
    if not images:
        raise OverfocusError(f"{json_path} lists no images: expected {LAYOUT}")
    folder = image_folder(root, json_path, images[0]["file_name"])
    objects = objects_by_image(data, index)
    records = []
    for im in images:
        picked = pick_label(objects.get(im["id"], []))
        if picked is not None:
            records.append((str(folder / im["file_name"]), picked[0], picked[1], f"{folder.name}/{im['file_name']}"))
    return records


@DATASETS.register("coco")
def open_coco(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data coco:PATH[?limit=N&test_fraction=0.2]` (label = largest object's category)."""
    check_options("coco", options, SPLIT_OPTIONS)
    root = require_path(path, "coco", LAYOUT)
    train_json, test_json = annotation_files(root)
    categories = sorted(read_coco(train_json)["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    if test_json is None:
        records = split_records(coco_records(root, train_json, index), split, split_fraction(options))
    else:
        records = coco_records(root, train_json if split == "train" else test_json, index)
    return make_dataset(records, [str(c["name"]) for c in categories], image_size, augment, skip_bad,
                        f"{root} ({split})", options)
