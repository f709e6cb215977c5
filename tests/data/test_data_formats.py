"""Every file format on tiny fixtures written here: labels, classes, splits, box scaling, errors.

The common fixture image is 100 x 50 (w x h) with one object at (10, 5, 60, 45) in 0-based pixels
with exclusive right/bottom edges; each format stores it in its own convention. Opened at
image_size 32, the box must become (3.2, 3.2, 19.2, 28.8) exactly (x * 32/100, y * 32/50).
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from overfocus.data import collate_samples, is_readable, open_dataset, skipped_files
from overfocus.data.base import read_rgb
from overfocus.data.imagefile import jpeg_is_complete
from overfocus.errors import OverfocusError

EXPECTED_32 = [3.2, 3.2, 19.2, 28.8]


def write_image(path: Path, w: int = 100, h: int = 50, value: int = 120, grey: bool = False) -> Path:
    """A small real image file (format from the suffix) with a bright rectangle in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w) if grey else (h, w, 3), value, np.uint8)
    img[5:45, 10:60] = 250
    ok, data = cv2.imencode(path.suffix.lower() if path.suffix.lower() != ".jpeg" else ".jpg", img)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def boxes_of(ds, index: int = 0) -> list:
    return ds[index]["boxes"].tolist()


def assert_box(actual, expected=EXPECTED_32):
    assert len(actual) == 1
    assert actual[0] == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------------- folder
def make_folder_split(root: Path) -> Path:
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("cat", "dog"):
            for i in range(n):
                write_image(root / split / cls / f"{cls}_{i}.png", value=40 * i)
    return root


def test_folder_with_train_and_val(tmp_path):
    root = make_folder_split(tmp_path / "imgs")
    train = open_dataset(f"folder:{root}", "train", 32)
    test = open_dataset(f"folder:{root}", "test", 32)
    assert train.classes == ["cat", "dog"] and test.classes == ["cat", "dog"]
    assert (len(train), len(test)) == (6, 4)
    assert train.has_boxes is False
    assert [train[i]["label"] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    s = test[3]
    assert s["image"].shape == (3, 32, 32) and tuple(s["boxes"].shape) == (0, 4)
    assert s["image_id"] == "val/dog/dog_1.png"


def test_folder_test_folder_and_unknown_class(tmp_path):
    root = make_folder_split(tmp_path / "imgs")
    (root / "val").rename(root / "test")
    assert len(open_dataset(f"folder:{root}", "test", 32)) == 4
    write_image(root / "test" / "bird" / "b.png")
    with pytest.raises(OverfocusError, match="bird"):
        open_dataset(f"folder:{root}", "test", 32)


def test_folder_single_tree_is_split_deterministically(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(10):
            write_image(tmp_path / "d" / cls / f"{i}.png", w=8, h=8)
    train = open_dataset(f"folder:{tmp_path / 'd'}?test_fraction=0.3", "train", 16)
    test = open_dataset(f"folder:{tmp_path / 'd'}?test_fraction=0.3", "test", 16)
    ids_train = {r[3] for r in train.records}
    ids_test = {r[3] for r in test.records}
    assert len(ids_train) + len(ids_test) == 30 and not ids_train & ids_test
    assert 0 < len(ids_test) < 30
    again = open_dataset(f"folder:{tmp_path / 'd'}?test_fraction=0.3", "test", 16)
    assert [r[3] for r in again.records] == [r[3] for r in test.records]


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no class folders"),
    (lambda p: write_image(p / "loose.png"), "no class folders"),
    (lambda p: (p / "train" / "a").mkdir(parents=True), "no val/ or test/"),
])
def test_folder_errors(tmp_path, setup, message):
    root = tmp_path / "x"
    setup(root)
    with pytest.raises(OverfocusError, match=message):
        open_dataset(f"folder:{root}", "train", 32)


def test_kind_without_path_is_an_error():
    with pytest.raises(OverfocusError, match="needs a path"):
        open_dataset("folder", "train", 32)


# ---------------------------------------------------------------------------- tiny-imagenet
def make_tiny_imagenet(root: Path, flat_val: bool = False) -> Path:
    for wnid in ("n02", "n01"):
        lines = []
        for i in range(2):
            name = f"{wnid}_{i}.JPEG"
            write_image(root / "train" / wnid / "images" / name, grey=(i == 1))
            lines.append(f"{name}\t10\t5\t59\t44")  # inclusive corners of (10, 5, 60, 45)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    ann = ["val_0.JPEG\tn01\t10\t5\t59\t44", "val_1.JPEG\tn02\t0\t0\t99\t49",
           "val_2.JPEG\tn01\t1\t1\t2\t2", "val_9.JPEG\tn07\t1\t1\t2\t2"]  # val_2: file absent
    if flat_val:
        for name in ("val_0.JPEG", "val_1.JPEG", "val_9.JPEG"):
            write_image(root / "val" / "images" / name)
        (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    else:
        write_image(root / "val" / "n01" / "val_0.JPEG")
        write_image(root / "val" / "n02" / "val_1.JPEG")
        (root / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    return root


@pytest.mark.parametrize("flat", [False, True])
def test_tiny_imagenet(tmp_path, flat):
    root = make_tiny_imagenet(tmp_path / "tin", flat_val=flat)
    train = open_dataset(f"tiny-imagenet:{root}", "train", 32)
    test = open_dataset(f"tiny-imagenet:{root}", "test", 32)
    assert train.classes == ["n01", "n02"]
    assert [r[1] for r in train.records] == [0, 0, 1, 1]
    assert_box(boxes_of(train, 0))
    grey = train[1]["image"]
    assert grey.shape == (3, 32, 32) and torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert len(test) == 2  # val_2 is absent, val_9's class n07 is not in train
    assert [r[1] for r in test.records] == [0, 1]
    assert_box(boxes_of(test, 0))
    assert_box(boxes_of(test, 1), [0, 0, 32, 32])


def test_tiny_imagenet_missing_annotation_files(tmp_path):
    root = make_tiny_imagenet(tmp_path / "tin")
    (root / "val_annotations.txt").unlink()
    with pytest.raises(OverfocusError, match="val_annotations.txt"):
        open_dataset(f"tiny-imagenet:{root}", "test", 32)
    (root / "train" / "n02" / "n02_boxes.txt").unlink()
    with pytest.raises(OverfocusError, match="n02_boxes.txt.*laid out as"):
        open_dataset(f"tiny-imagenet:{root}", "train", 32)


def test_tiny_imagenet_without_classes(tmp_path):
    (tmp_path / "tin" / "train").mkdir(parents=True)
    with pytest.raises(OverfocusError, match="no class folders"):
        open_dataset(f"tiny-imagenet:{tmp_path / 'tin'}", "train", 32)


# ---------------------------------------------------------------------------------------- cub
def make_cub(root: Path) -> Path:
    # ids 1-4 present; 5 only in the long files (as with the shared subset). Classes 3 and 7 used.
    present = {1: (3, 1), 2: (3, 0), 3: (7, 1), 4: (7, 0)}
    images, boxes, labels, split = [], [], [], []
    for i in range(1, 6):
        cls, is_train = present.get(i, (9, 1))
        rel = f"{cls:03d}.Bird_{cls}/img_{i}.jpg"
        if i in present:
            write_image(root / "images" / rel)
            images.append(f"{i} {rel}")
        boxes.append(f"{i} 10.0 5.0 50.0 40.0")
        labels.append(f"{i} {cls}")
        split.append(f"{i} {is_train}")
    for name, lines in (("images", images), ("bounding_boxes", boxes), ("image_class_labels", labels),
                        ("train_test_split", split)):
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(f"{c} {c:03d}.Bird_{c}" for c in range(1, 11)) + "\n")
    return root


def test_cub(tmp_path):
    root = make_cub(tmp_path / "parent" / "CUB_200_2011")
    train = open_dataset(f"cub:{root}", "train", 32)
    test = open_dataset(f"cub:{root}", "test", 32)
    assert train.classes == ["003.Bird_3", "007.Bird_7"]
    assert (len(train), len(test)) == (2, 2)
    assert [r[1] for r in train.records] == [0, 1] and [r[1] for r in test.records] == [0, 1]
    assert_box(boxes_of(train, 1))
    assert len(open_dataset(f"cub:{tmp_path / 'parent'}", "train", 32)) == 2  # the folder above works too


def test_cub_missing_file(tmp_path):
    root = make_cub(tmp_path / "cub")
    (root / "bounding_boxes.txt").unlink()
    with pytest.raises(OverfocusError, match="bounding_boxes.txt.*laid out as"):
        open_dataset(f"cub:{root}", "train", 32)


# ---------------------------------------------------------------------------------------- voc
def voc_xml(filename: str, objects) -> str:
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b in objects)
    return f"<annotation><filename>{filename}</filename>{objs}</annotation>"


def make_voc(root: Path, image_sets: bool = True) -> Path:
    big = (11, 6, 60, 45)  # 1-based inclusive VOC corners of (10, 5, 60, 45)
    objects = {"a1": [("dog", big)], "a2": [("cat", (1, 1, 5, 5)), ("person", big), ("person", (2, 2, 4, 4))],
               "a3": [("cat", big)], "a4": [], "a5": [("dog", (1, 1, 20, 20))]}
    for stem, objs in objects.items():
        write_image(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", objs))
    if image_sets:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("a1\na2\na4\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("a3\na5\n")
    return root


def test_voc_with_image_sets(tmp_path):
    root = make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    train = open_dataset(f"voc:{root}", "train", 32)
    test = open_dataset(f"voc:{tmp_path}", "test", 32)  # the single VOC folder below is found
    assert train.classes == ["cat", "dog", "person"] and test.classes == train.classes
    assert [r[3] for r in train.records] == ["a1", "a2"]  # a4 has no object: left out
    assert [r[1] for r in train.records] == [1, 2]
    assert_box(boxes_of(train, 0))
    person = boxes_of(train, 1)  # largest object is a person: both person boxes, not the cat
    assert len(person) == 2 and person[0] == pytest.approx(EXPECTED_32, abs=1e-4)
    assert [r[3] for r in test.records] == ["a3", "a5"] and [r[1] for r in test.records] == [0, 1]


def test_voc_test_list_and_deterministic_split(tmp_path):
    root = make_voc(tmp_path / "voc")
    (root / "ImageSets" / "Main" / "test.txt").write_text("a5\n")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a1\na2\na3\n")
    assert [r[3] for r in open_dataset(f"voc:{root}", "train", 32).records] == ["a1", "a2", "a3"]
    assert [r[3] for r in open_dataset(f"voc:{root}", "test", 32).records] == ["a5"]
    plain = make_voc(tmp_path / "plain", image_sets=False)
    ids = [{r[3] for r in open_dataset(f"voc:{plain}?test_fraction=0.5", s, 32).records} for s in ("train", "test")]
    assert ids[0] | ids[1] == {"a1", "a2", "a3", "a5"} and not ids[0] & ids[1]


def test_voc_missing_annotations(tmp_path):
    (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(OverfocusError, match="Annotations.*laid out as"):
        open_dataset(f"voc:{tmp_path / 'voc'}", "train", 32)


# --------------------------------------------------------------------------------------- coco
def coco_json(images, anns) -> dict:
    cats = [{"id": 5, "name": "zebra"}, {"id": 2, "name": "bus"}, {"id": 9, "name": "kite"}]
    return {"images": [{"id": i, "file_name": f, "width": 100, "height": 50} for i, f in images],
            "annotations": [{"id": k, "image_id": i, "category_id": c, "bbox": b, "iscrowd": crowd}
                            for k, (i, c, b, crowd) in enumerate(anns)],
            "categories": cats}


def make_coco(root: Path) -> Path:
    (root / "annotations").mkdir(parents=True)
    train_imgs, val_imgs = [(1, "t1.jpg"), (2, "t2.jpg"), (3, "t3.jpg")], [(7, "v7.jpg")]
    train_anns = [(1, 5, [10, 5, 50, 40], 0),
                  (2, 2, [0, 0, 5, 5], 0), (2, 9, [10, 5, 50, 40], 0), (2, 9, [0, 0, 2, 2], 0),
                  (3, 2, [0, 0, 90, 45], 1)]  # image 3: crowd only -> left out
    for folder, imgs in (("train2017", train_imgs), ("val2017", val_imgs)):
        for _, name in imgs:
            write_image(root / folder / name)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(coco_json(train_imgs, train_anns)))
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps(coco_json(val_imgs, [(7, 2, [10, 5, 50, 40], 0)])))
    return root


def test_coco(tmp_path):
    root = make_coco(tmp_path / "coco")
    train = open_dataset(f"coco:{root}", "train", 32)
    test = open_dataset(f"coco:{root}", "test", 32)
    assert train.classes == ["bus", "zebra", "kite"]  # category-id order 2, 5, 9
    assert [r[1] for r in train.records] == [1, 2] and len(train) == 2
    assert_box(boxes_of(train, 0))
    kites = boxes_of(train, 1)
    assert len(kites) == 2 and kites[0] == pytest.approx(EXPECTED_32, abs=1e-4)
    assert [r[1] for r in test.records] == [0] and test.records[0][3] == "val2017/v7.jpg"
    assert_box(boxes_of(test, 0))


def test_coco_single_file_and_missing_file(tmp_path):
    root = make_coco(tmp_path / "coco")
    (root / "annotations" / "instances_val2017.json").unlink()
    ids = [[r[3] for r in open_dataset(f"coco:{root}?test_fraction=0.3", s, 32).records] for s in ("train", "test")]
    assert ids == [["train2017/t1.jpg"], ["train2017/t2.jpg"]]  # crc32 of the ids: 0.45 and 0.21
    (root / "annotations" / "instances_train2017.json").unlink()
    with pytest.raises(OverfocusError, match="instances_train2017.json.*laid out as"):
        open_dataset(f"coco:{root}", "train", 32)


# --------------------------------------------------------------------------------------- yolo
def make_yolo(root: Path, flat: bool = False) -> Path:
    labels = {"p1": "1 0.35 0.5 0.5 0.8\n", "p2": "0 0.1 0.1 0.02 0.02\n2 0.35 0.5 0.5 0.8\n2 0.05 0.05 0.1 0.1\n",
              "p3": "", "p4": "2 0.1 0.1 0.6 0.2 0.6 0.9\n"}  # p3 background; p4 a polygon
    for stem, text in labels.items():
        split = "" if flat else ("val" if stem == "p4" else "train")
        write_image(root / "images" / split / f"{stem}.png")
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split / f"{stem}.txt").write_text(text)
    (root / "data.yaml").write_text("names:\n  0: ant\n  1: bee\n  2: cow\n")
    return root


def test_yolo(tmp_path):
    root = make_yolo(tmp_path / "y")
    train = open_dataset(f"yolo:{root}", "train", 32)
    test = open_dataset(f"yolo:{root}", "test", 32)
    assert train.classes == ["ant", "bee", "cow"]
    assert [r[3] for r in train.records] == ["images/train/p1.png", "images/train/p2.png"]
    assert [r[1] for r in train.records] == [1, 2]
    assert_box(boxes_of(train, 0))
    cows = boxes_of(train, 1)
    assert len(cows) == 2 and cows[0] == pytest.approx(EXPECTED_32, abs=1e-4)
    assert test.records[0][1] == 2
    assert_box(boxes_of(test, 0), [0.1 * 32, 0.1 * 32, 0.6 * 32, 0.9 * 32])  # polygon spans x 0.1-0.6, y 0.1-0.9


def test_yolo_flat_layout_and_classes_txt(tmp_path):
    root = make_yolo(tmp_path / "y", flat=True)
    (root / "data.yaml").unlink()
    (root / "classes.txt").write_text("ant\nbee\ncow\n")
    sizes = [len(open_dataset(f"yolo:{root}?test_fraction=0.5", s, 32)) for s in ("train", "test")]
    assert sum(sizes) == 3


def test_yolo_errors(tmp_path):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "train" / "p1.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(OverfocusError, match="p1.txt line 1"):
        open_dataset(f"yolo:{root}", "train", 32)
    (root / "data.yaml").unlink()
    with pytest.raises(OverfocusError, match="data.yaml.*classes.txt"):
        open_dataset(f"yolo:{root}", "train", 32)


# ------------------------------------------------------------------------- options, bad files
@pytest.mark.parametrize("kind", ["folder", "tiny-imagenet", "cub", "voc", "coco", "yolo"])
def test_unknown_option_is_an_error(tmp_path, kind):
    with pytest.raises(OverfocusError, match="unknown .*option.*colour"):
        open_dataset(f"{kind}:{tmp_path}?colour=red", "train", 32)


def test_limit_keeps_a_deterministic_mix_of_classes(tmp_path):
    for cls in ("a", "b"):
        for i in range(20):
            write_image(tmp_path / "d" / "train" / cls / f"{i}.png", w=8, h=8)
            write_image(tmp_path / "d" / "val" / cls / f"{i}.png", w=8, h=8)
    ds = open_dataset(f"folder:{tmp_path / 'd'}?limit=10", "train", 16)
    again = open_dataset(f"folder:{tmp_path / 'd'}?limit=10", "train", 16)
    assert len(ds) == 10 and [r[3] for r in ds.records] == [r[3] for r in again.records]
    assert {r[1] for r in ds.records} == {0, 1}
    with pytest.raises(OverfocusError, match="limit"):
        open_dataset(f"folder:{tmp_path / 'd'}?limit=-1", "train", 16)


def test_truncated_jpeg_is_named_or_skipped_and_counted(tmp_path):
    root = make_folder_split(tmp_path / "imgs")
    bad = root / "train" / "cat" / "cat_1.jpg"
    write_image(bad, w=64, h=64)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    ds = open_dataset(f"folder:{root}", "train", 32)
    index = [r[0] for r in ds.records].index(str(bad))
    with pytest.raises(OverfocusError, match="cat_1.jpg"):
        ds[index]
    lenient = open_dataset(f"folder:{root}", "train", 32, skip_bad=True)
    samples = [lenient[i] for i in range(len(lenient))]
    assert samples[index] is None and sum(s is None for s in samples) == 1
    assert lenient.bad_files == [str(bad)]
    assert len(collate_samples(samples)) == len(samples) - 1


def test_truncated_jpeg_message_says_corrupt_in_one_line(tmp_path):
    bad = write_image(tmp_path / "t.jpg", w=64, h=64)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 40])  # the end marker and the end of the scan are gone
    with pytest.raises(OverfocusError, match=r"t\.jpg.*corrupt") as info:
        read_rgb(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("padding", [bytes(4096 - 1), b"\x00" * 3, b"\xff" * 17, b"junk after the end"])
def test_jpeg_with_bytes_after_its_end_marker_reads_like_the_original(tmp_path, padding):
    good = write_image(tmp_path / "good.jpg", w=64, h=48)
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(good.read_bytes() + padding)  # e.g. zero padding to a block size
    assert np.array_equal(read_rgb(padded), read_rgb(good))


def test_jpeg_completeness_follows_the_segments():
    data = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))[1].tobytes()
    assert jpeg_is_complete(data) and jpeg_is_complete(data + bytes(512))
    cut = data[: len(data) - 2]  # only the EOI marker missing
    assert not jpeg_is_complete(cut) and not jpeg_is_complete(cut + bytes(512))
    thumb_like = data[:2] + b"\xff\xe1\x00\x06\xff\xd9\x00\x00" + data[2: len(data) - 2]  # EOI bytes inside APP1
    assert not jpeg_is_complete(thumb_like)


def huge_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid small PNG whose IHDR claims width x height (CRC fixed, pixel data of a 1 x 1 image)."""
    data = bytearray(cv2.imencode(".png", np.zeros((1, 1), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_image_claiming_huge_size_is_one_line_or_skipped_and_reported(tmp_path, capsys):
    root = make_folder_split(tmp_path / "imgs")
    bad = huge_png(root / "train" / "dog" / "dog_9.png")
    with pytest.raises(OverfocusError, match=r"dog_9\.png claims 10,000,000,000 pixels"):
        read_rgb(bad)
    strict = open_dataset(f"folder:{root}", "train", 32)
    index = [r[0] for r in strict.records].index(str(bad))
    with pytest.raises(OverfocusError, match="dog_9.png"):
        strict[index]
    assert not is_readable(strict, index) and is_readable(strict, 0)
    lenient = open_dataset(f"folder:{root}", "train", 32, skip_bad=True)
    capsys.readouterr()
    for _ in range(2):  # two epochs: one warning
        samples = [lenient[i] for i in range(len(lenient))]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "dog_9.png" in warnings[0] and "10,000,000,000 pixels" in warnings[0]
    assert samples[index] is None and skipped_files(lenient) == [str(bad)]


def test_skipped_files_seen_through_subsets_and_cli_exit(tmp_path, capsys):
    root = make_folder_split(tmp_path / "imgs")
    bad = root / "val" / "cat" / "cat_0.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    test = open_dataset(f"folder:{root}", "test", 32, skip_bad=True)
    index = [r[0] for r in test.records].index(str(bad))
    whole = torch.utils.data.Subset(test, list(range(len(test))))
    subset = torch.utils.data.Subset(whole, [index, (index + 1) % len(test)])
    assert not is_readable(subset, 0) and is_readable(subset, 1)
    assert skipped_files(subset, open_dataset("builtin?test=2", "test", 32)) == [str(bad)]
    from overfocus.cli import main
    capsys.readouterr()
    out = tmp_path / "run"
    code = main(["train", "--data", f"folder:{root}", "--model", "cifarnet", "--epochs", "1", "--out", str(out),
                 "--set", "data.image_size=32", "--set", "train.progress=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cat_0.png" in err[0] and "Traceback" not in err[0]


def test_skips_met_by_dataloader_workers_are_reported(tmp_path, capfd):
    root = make_folder_split(tmp_path / "imgs")
    bad = root / "train" / "dog" / "dog_2.png"
    bad.write_bytes(b"")
    ds = open_dataset(f"folder:{root}", "train", 32, skip_bad=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_samples)
    for _ in range(2):
        assert sum(len(batch) for batch in loader) == len(ds) - 1
    assert skipped_files(ds) == [str(bad)] and ds.bad_files == [str(bad)]
    warnings = [line for line in capfd.readouterr().err.splitlines() if "--skip-bad skipped" in line]
    assert len(warnings) == 1 and "dog_2.png" in warnings[0]
    log = Path(ds._skip_log.path)
    del ds, loader
    import gc
    gc.collect()
    assert not log.exists()  # the temporary list goes with the dataset


# ------------------------------------------------------------- bad entries of annotation files
def coco_with(root: Path, edit) -> Path:
    """The COCO fixture at `root` with its train file edited by `edit(data)` (in place)."""
    root = make_coco(root)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return root


def _set_ann(index: int, **fields):
    def edit(data):
        data["annotations"][index].update(fields)
    return edit


def _drop_category(data):
    del data["annotations"][0]["category_id"]


def _images_as_dict(data):
    data["images"] = {"1": data["images"][0]}


def _duplicate_image_id(data):
    data["images"][1]["id"] = 1


@pytest.mark.parametrize("edit, message", [
    (_set_ann(0, bbox=[10, 5, 50]), r"annotation 0 \(id 0\): bbox has 3 values, not 4"),
    (_set_ann(0, bbox="10 5 50 40"), r"annotation 0 \(id 0\): bbox is '10 5 50 40', not a list"),
    (_set_ann(0, bbox=None), r"annotation 0 \(id 0\): bbox is None"),
    (_set_ann(0, bbox=[10, 5, "50", 40]), "not a finite number"),
    (_drop_category, r"annotation 0 \(id 0\): it has no category_id"),
    (_set_ann(0, category_id=77), "category_id 77 is not among the file's categories"),
    (_images_as_dict, "`images` must be a list of entries, not a dict"),
    (_duplicate_image_id, r"images 0 \('t1.jpg'\), 1 \('t2.jpg'\) share id 1"),
])
def test_coco_bad_entry_is_named(tmp_path, edit, message):
    root = coco_with(tmp_path / "coco", edit)
    with pytest.raises(OverfocusError, match=message) as info:
        open_dataset(f"coco:{root}", "train", 32)
    assert "instances_train2017.json" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("edit, kept", [
    (_set_ann(0, bbox=[10, 5, 50]), ["train2017/t2.jpg"]),  # image 1's only object skipped
    (_drop_category, ["train2017/t2.jpg"]),
    (_duplicate_image_id, []),  # images 1 and 2 share an id: both out; image 3 is crowd only
])
def test_coco_skip_bad_leaves_the_entry_out_with_one_warning(tmp_path, capsys, edit, kept):
    root = coco_with(tmp_path / "coco", edit)
    spec = f"coco:{root}"
    if not kept:
        with pytest.raises(OverfocusError, match="no images found"):
            open_dataset(spec, "train", 32, skip_bad=True)
    else:
        for _ in range(2):  # train and its eval copy read the file twice: one warning
            ds = open_dataset(spec, "train", 32, skip_bad=True)
        assert [r[3] for r in ds.records] == kept
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: --skip-bad skipped a bad entry")


def test_yolo_bad_label_files_are_named_or_skipped(tmp_path, capsys):
    root = make_yolo(tmp_path / "y")
    (root / "labels" / "train" / "p1.txt").write_bytes("1 0.35 0.5 0.5 0.8 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(OverfocusError, match=r"label file .*p1.txt is not UTF-8 text \(byte 0xe9 at line 1\)"):
        open_dataset(f"yolo:{root}", "train", 32)
    (root / "labels" / "train" / "p1.txt").write_text("1 0.35 nan 0.5 0.8\n")
    with pytest.raises(OverfocusError, match="p1.txt line 1: a coordinate is not a finite number"):
        open_dataset(f"yolo:{root}", "train", 32)
    ds = open_dataset(f"yolo:{root}", "train", 32, skip_bad=True)
    assert [r[3] for r in ds.records] == ["images/train/p2.png"]
    assert "p1.txt line 1" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("names: [ant, bee\n", "data.yaml is not valid YAML"),
    ("- ant\n- bee\n", "holds a list, not a mapping"),
    ("names:\n  a: ant\n  b: bee\n", "the keys must be the class numbers"),
    ("names:\n  0: ant\n  2: cow\n", "the keys must be the class numbers"),
    ("names: [ant, '', cow]\n", "non-empty text"),
    ("base: &b [ant]\nnames: *b\n", "YAML alias"),
])
def test_yolo_bad_data_yaml_is_named(tmp_path, text, message):
    root = make_yolo(tmp_path / "y")
    (root / "data.yaml").write_text(text)
    with pytest.raises(OverfocusError, match=message) as info:
        open_dataset(f"yolo:{root}", "train", 32)
    assert "data.yaml" in str(info.value)


def test_voc_empty_name_is_named_or_skipped(tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    (root / "Annotations" / "a1.xml").write_text(voc_xml("a1.jpg", [("  ", (11, 6, 60, 45))]))
    with pytest.raises(OverfocusError, match=r"a1.xml object 0: its <name> is empty"):
        open_dataset(f"voc:{root}", "train", 32)
    ds = open_dataset(f"voc:{root}", "train", 32, skip_bad=True)
    assert "" not in ds.classes and [r[3] for r in ds.records] == ["a2"]
    assert "a1.xml object 0" in capsys.readouterr().err


def test_nan_tiff_is_a_bad_image_without_numpy_warnings(tmp_path, capsys):
    import warnings

    root = make_folder_split(tmp_path / "imgs")
    bad = root / "train" / "cat" / "nan.tif"
    assert cv2.imwrite(str(bad), np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(OverfocusError, match=r"nan.tif: it holds non-finite pixel values"):
        read_rgb(bad)
    ds = open_dataset(f"folder:{root}", "train", 32, skip_bad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning per image would fail here
        samples = [ds[i] for i in range(len(ds))]
    assert sum(s is None for s in samples) == 1 and skipped_files(ds) == [str(bad)]
    assert "nan.tif" in capsys.readouterr().err


@pytest.mark.parametrize("make, kind", [(make_folder_split, "folder"), (make_coco, "coco"), (make_yolo, "yolo"),
                                        (make_voc, "voc")])
def test_test_fraction_is_checked_where_the_data_has_its_own_split(tmp_path, make, kind):
    root = make(tmp_path / "d")
    with pytest.raises(OverfocusError, match="test_fraction=nan"):
        open_dataset(f"{kind}:{root}?test_fraction=.nan", "train", 32)
