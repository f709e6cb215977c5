"""`coco:PATH`: COCO-format detection data (MS COCO itself or any export in its JSON format).

Layout: PATH/annotations/instances_train*.json and PATH/annotations/instances_val*.json (or the
same files directly in PATH), with the images in PATH/<tag>/, PATH/images/<tag>/ or PATH/images/
where <tag> is the file name after `instances_` (e.g. train2017). With a single instances*.json,
a deterministic `test_fraction` (default 0.2) of its images is the test split.

Label rule: the label is the category of the LARGEST non-crowd object (box area); the boxes are
every non-crowd object of that category. Images without such objects are left out. Classes are the
train file's categories in category-id order, remapped to 0..K-1. COCO boxes are `[x, y, w, h]`
in 0-based float pixels: (x0, y0, x1, y1) = (x, y, x + w, y + h).

Bad entries are named (file, annotation or image number, field): a bbox that is not four finite
numbers, a missing or unknown category_id, an image without id or file_name, images sharing an
id; `--skip-bad` leaves such entries out with one warning each. `images`, `annotations` and
`categories` must be lists.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import OverfocusError, shorten
from .formats import (SPLIT_OPTIONS, Record, bad_entry, check_options, make_dataset, pick_label, require_path,
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
    """The parsed instances file (cached until the file changes), its three lists checked."""
    return _read_coco(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_coco(path: Path, mtime_ns: int) -> Dict:
    # cached: the train file is opened for train, its eval copy and (for the classes) test
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else shorten(str(exc), 120)[1:-1]
        raise OverfocusError(f"cannot parse annotation file {path}: {reason}") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise OverfocusError(f"{path} is not a COCO instances file: it needs images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise OverfocusError(f"{path}: `{key}` must be a list of entries, not a {type(data[key]).__name__}; "
                                 f"a coco dataset is laid out as {LAYOUT}")
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


def categories_of(path: Path) -> List[Dict]:
    """The categories of an instances file in id order; a bad or repeated category is an error
    (every annotation of it would lose its class)."""
    found: Dict[int, Dict] = {}
    for number, cat in enumerate(read_coco(path)["categories"]):
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_id(cid) or not isinstance(cat.get("name"), (str, int)):
            raise OverfocusError(f"{path} category {number}: needs an integer `id` and a `name`, got {shorten(cat)}")
        if cid in found:
            raise OverfocusError(f"{path}: categories {shorten(found[cid])} and {shorten(cat)} share id {cid}: "
                                 "give each category its own id")
        found[cid] = cat
    return [found[k] for k in sorted(found, key=_id_order)]


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _id_order(value):
    return (isinstance(value, str), value)


def _bbox(ann: Dict) -> Optional[str]:
    """Why an annotation's bbox is unusable, or None when it is 4 finite numbers."""
    box = ann.get("bbox")
    if not isinstance(box, (list, tuple)):
        return f"bbox is {shorten(box)}, not a list [x, y, w, h]"
    if len(box) != 4:
        return f"bbox has {len(box)} values, not 4 ([x, y, w, h])"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box):
        return f"bbox {shorten(box)} holds a value that is not a finite number"
    return None


def objects_by_image(path: Path, index: Dict[int, int], skip_bad: bool = False) -> Dict[int, List]:
    """image id -> [(label, (x0, y0, x1, y1))] of its non-crowd objects with an area.

    A bad annotation (no image_id, a category id missing or unknown, a bbox that is not four
    finite numbers) is an error naming it, or skipped with a warning under --skip-bad."""
    found: Dict[int, List] = {}
    for number, ann in enumerate(read_coco(path)["annotations"]):
        where = f"{path} annotation {number}" + (f" (id {shorten(ann.get('id'))})" if isinstance(ann, dict)
                                                  and "id" in ann else "")
        problem = _annotation_problem(ann, index)
        if problem:
            bad_entry(f"{where}: {problem}", skip_bad)
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
            continue
        found.setdefault(ann["image_id"], []).append((index[ann["category_id"]], (x, y, x + w, y + h)))
    return found


def _annotation_problem(ann, index: Dict[int, int]) -> Optional[str]:
    if not isinstance(ann, dict):
        return f"an annotation must be an object, got {shorten(ann)}"
    if not _is_id(ann.get("image_id")):
        return f"image_id is {shorten(ann.get('image_id'))}, not an image id"
    if "category_id" not in ann:
        return "it has no category_id"
    if not _is_id(ann["category_id"]) or ann["category_id"] not in index:
        return f"category_id {shorten(ann['category_id'])} is not among the file's categories"
    return _bbox(ann)


def image_entries(path: Path, skip_bad: bool = False) -> List[Dict]:
    """The file's image entries in id order. An entry without an id or a file_name, and images
    that share an id (whose boxes could not be told apart), are errors or, under --skip-bad,
    skipped with a warning (every image of a shared id)."""
    by_id: Dict = {}
    for number, im in enumerate(read_coco(path)["images"]):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str) \
                or not im["file_name"]:
            bad_entry(f"{path} image {number}: needs an `id` and a `file_name`, got {shorten(im)}", skip_bad)
            continue
        by_id.setdefault(im["id"], []).append((number, im))
    entries = []
    for image_id in sorted(by_id, key=_id_order):
        same = by_id[image_id]
        if len(same) > 1:
            names = ", ".join(f"{n} ({shorten(im['file_name'])})" for n, im in same[:3])
            bad_entry(f"{path}: images {names} share id {shorten(image_id)}, so their boxes cannot be told apart",
                      skip_bad)
            continue
        entries.append(same[0][1])
    return entries


def coco_records(root: Path, json_path: Path, index: Dict[int, int], skip_bad: bool = False) -> List[Record]:
    """One record per image of the file that has a non-crowd object (label: largest object)."""
    images = image_entries(json_path, skip_bad)
    if not images:
        raise OverfocusError(f"{json_path} lists no usable images: expected {LAYOUT}")
    folder = image_folder(root, json_path, images[0]["file_name"])
    objects = objects_by_image(json_path, index, skip_bad)
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
    fraction = split_fraction(options)  # checked even where the data has its own split
    train_json, test_json = annotation_files(root)
    categories = categories_of(train_json)
    index = {c["id"]: i for i, c in enumerate(categories)}
    if test_json is None:
        records = split_records(coco_records(root, train_json, index, skip_bad), split, fraction, root)
    else:
        records = coco_records(root, train_json if split == "train" else test_json, index, skip_bad)
    return make_dataset(records, [str(c["name"]) for c in categories], image_size, augment, skip_bad,
                        f"{root} ({split})", options)
