"""`voc:PATH`: Pascal VOC style detection data (VOC2007/2012 or any dataset in its XML format).

Layout: PATH/JPEGImages/<id>.jpg, PATH/Annotations/<id>.xml and, when present,
PATH/ImageSets/Main/{train,val,trainval,test}.txt (PATH may also be a folder holding exactly one
VOC-style folder, e.g. VOCdevkit/ or the folder above it).

Splits: with a test.txt whose images are annotated, train = trainval.txt (or train.txt) and
test = test.txt; otherwise train = train.txt and test = val.txt; without ImageSets, a
deterministic `test_fraction` (default 0.2) of the image ids is the test split.

Label rule (a classifier needs one label per image): the label is the class of the LARGEST object
(box area); the boxes are every object of that class. Images without objects are left out.
Classes are the sorted object names found in all annotation files. VOC boxes are 1-based
inclusive pixel corners, so x0 and y0 get -1 to become 0-based with exclusive x1, y1.
"""
from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import OverfocusError
from ..fileio import read_text_file
from .formats import (SPLIT_OPTIONS, Record, bad_entry, check_options, make_dataset, pick_label, require_dir,
                      require_path, split_fraction, split_records)
from .specs import DATASETS

LAYOUT = "PATH/JPEGImages/*.jpg + PATH/Annotations/*.xml (+ optional PATH/ImageSets/Main/{train,val,test}.txt)"
Objects = List[Tuple[str, Tuple[float, float, float, float]]]


def voc_root(root: Path) -> Path:
    """PATH itself, or the single VOC-style folder found up to two levels below it."""
    if (root / "Annotations").is_dir():
        return root
    found = sorted(p.parent for p in list(root.glob("*/Annotations")) + list(root.glob("*/*/Annotations")))
    if len(found) == 1:
        return found[0]
    hint = f" (found several: {', '.join(map(str, found))}; point at one)" if found else ""
    raise OverfocusError(f"missing folder {root / 'Annotations'}{hint}: a voc dataset is laid out as {LAYOUT}")


def parse_xml(path: Path) -> Tuple[str, Objects]:
    """(image file name, [(class name, (x0, y0, x1, y1))]) of one VOC annotation file."""
    try:
        tree = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise OverfocusError(f"cannot parse annotation {path}: {exc}") from None
    objects = []
    for number, obj in enumerate(tree.iter("object")):
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise OverfocusError(f"annotation {path} object {number}: it lacks a numeric bndbox") from None
        if not all(map(math.isfinite, (xmin, ymin, xmax, ymax))):
            raise OverfocusError(f"annotation {path} object {number}: its bndbox holds a value that is not finite")
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise OverfocusError(f"annotation {path} object {number}: its <name> is empty (the class of the object)")
        objects.append((name, (xmin - 1, ymin - 1, xmax, ymax)))
    return tree.findtext("filename", f"{path.stem}.jpg").strip(), objects


def read_voc(root: Path, skip_bad: bool = False) -> Tuple[Dict[str, Tuple[str, Objects]], Tuple[str, ...]]:
    """Every annotation of the folder and the classes; cached until Annotations/ changes. A bad
    annotation file is an error naming it, or left out with a warning under --skip-bad."""
    ann = require_dir(root / "Annotations", "voc", LAYOUT)
    return _read_voc(ann, ann.stat().st_mtime_ns, skip_bad)


@functools.lru_cache(maxsize=4)
def _read_voc(ann: Path, mtime_ns: int, skip_bad: bool) -> Tuple[Dict[str, Tuple[str, Objects]], Tuple[str, ...]]:
    # cached because train, its eval copy and test all need the whole parse (for the classes)
    table = {}
    for path in sorted(ann.glob("*.xml")):
        try:
            table[path.stem] = parse_xml(path)
        except OverfocusError as exc:
            bad_entry(str(exc), skip_bad)
    classes = tuple(sorted({name for _, objects in table.values() for name, _ in objects}))
    if not classes:
        raise OverfocusError(f"no annotated objects in {ann}: expected {LAYOUT}")
    return table, classes


def listed_ids(root: Path, split: str, annotated: Dict) -> Optional[List[str]]:
    """Ids of a split from ImageSets/Main, or None when the folder has no usable split files."""
    main = root / "ImageSets" / "Main"

    def ids(name: str) -> List[str]:
        path = main / f"{name}.txt"
        found = read_text_file(path, "split list").split() if path.is_file() else []
        return [i for i in found if i in annotated]

    if ids("test"):
        return ids("test") if split == "test" else (ids("trainval") or ids("train"))
    if ids("train") and ids("val"):
        return ids("train") if split == "train" else ids("val")
    return None


def voc_records(root: Path, split: str, fraction: float, skip_bad: bool = False) -> Tuple[List[Record], List[str]]:
    """Records of one split (images with at least one object) and the class names."""
    table, classes = read_voc(root, skip_bad)
    index = {name: i for i, name in enumerate(classes)}
    image_dir = require_dir(root / "JPEGImages", "voc", LAYOUT)
    ids = listed_ids(root, split, table)
    records = []
    for image_id in sorted(table) if ids is None else ids:
        filename, objects = table[image_id]
        picked = pick_label([(index[name], box) for name, box in objects])
        if picked is not None:
            records.append((str(image_dir / filename), picked[0], picked[1], image_id))
    return (split_records(records, split, fraction, root) if ids is None else records), list(classes)


@DATASETS.register("voc")
def open_voc(path: str, split: str, image_size: int, augment, skip_bad: bool, options: Dict):
    """Factory for `--data voc:PATH[?limit=N&test_fraction=0.2]` (label = largest object's class)."""
    check_options("voc", options, SPLIT_OPTIONS)
    root = voc_root(require_path(path, "voc", LAYOUT))
    records, classes = voc_records(root, split, split_fraction(options), skip_bad)
    return make_dataset(records, classes, image_size, augment, skip_bad, f"{root} ({split})", options)
