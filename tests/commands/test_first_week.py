"""The smaller things a researcher met in a first week on their own data (issue 24, point 8): each
now says what it should."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from overfocus.cli import main
from overfocus.errors import OverfocusError

ROOT = Path(__file__).resolve().parents[2]


def test_tracker_model_kwargs_with_arch_point_to_num_classes(tmp_path):
    from overfocus.training.tracker import Tracker

    with pytest.raises(OverfocusError) as caught:
        Tracker(tmp_path / "t", data="builtin?train=8&test=4", arch="torchvision.models:resnet18",
                model_kwargs={"num_classes": 10})
    assert "pass num_classes=10 to Tracker itself" in str(caught.value) and "module:Factory" not in str(caught.value)
    with pytest.raises(OverfocusError, match="takes no model_kwargs"):
        Tracker(tmp_path / "t", data="builtin?train=8&test=4", arch="torchvision.models:resnet18",
                model_kwargs={"width": 0.5})


def test_readme_quick_example_needs_no_download():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("In Python (notebooks), one map for any CNN in five lines")
    block = readme[readme.index("```python", start):readme.index("```", readme.index("```python", start) + 9)]
    assert 'weights="DEFAULT"' not in block.split("#")[0] and "resnet18(" in block


def test_an_ultralytics_dataset_yaml_with_train2017_folders(tmp_path):
    from overfocus.data import open_dataset

    root = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), np.full((20, 20, 3), 40 * i, np.uint8))
            (root / "labels" / split / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.4\n")
    (root / "coco.yaml").write_text("path: .\ntrain: images/train2017\nval: images/val2017\n"
                                    "names:\n  0: person\n  1: bicycle\n")
    for spec in (f"yolo:{root}", f"yolo:{root / 'coco.yaml'}"):
        train, test = open_dataset(spec, "train", 32), open_dataset(spec, "test", 32)
        assert len(train) == 3 and len(test) == 3 and train.classes == ["person", "bicycle"]
        assert test.records[0][0].endswith("val2017/0.jpg") and test.has_boxes


def test_train_names_the_model_it_trains(tmp_path, capsys):
    code = main(["train", "--data", "builtin?train=8&test=4", "--epochs", "0", "--set", "model.width=0.125",
                 "--set", "data.image_size=32", "--set", "train.progress=false", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    assert "overfocus train: cifarnet (width 0.125, the default model: --model NAME chooses another)" in out
    main(["train", "--model", "cifarnet", "--data", "builtin?train=8&test=4", "--epochs", "0", "--set",
          "model.width=0.125", "--set", "data.image_size=32", "--set", "train.progress=false", "--out",
          str(tmp_path / "s")])
    assert "the default model" not in capsys.readouterr().out


def test_the_sgdrop_map_is_not_named_like_the_regularizer():
    from overfocus.attribution.methods import ATTRIBUTIONS
    from overfocus.regularizers import REGULARIZERS

    assert ATTRIBUTIONS.get("sgdrop").title == "SGDrop map" and "sgdrop" in REGULARIZERS.names()


def test_the_probe_set_alternates_the_classes_of_a_sorted_split(tmp_path):
    """A folder's test split is sorted by class: the probe set's first images (a filmstrip's rows)
    still show every class, for `train`, the tracker and `analyze FOLDER` alike."""
    from overfocus.data import dataset_labels, open_dataset
    from overfocus.data.splits import probe_ids, readable_probe_indices

    for split, n in (("train", 2), ("val", 6)):
        for cls in ("a", "b", "c"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(tmp_path / split / cls / f"{cls}_{i}.png"), np.full((16, 16, 3), 9 * i, np.uint8))
    test = open_dataset(f"folder:{tmp_path}", "test", 32)
    labels = dataset_labels(test)
    assert labels == sorted(labels)  # the split itself is sorted by class
    picked = readable_probe_indices(test, 16)
    assert [labels[i] for i in picked[:6]] == [0, 1, 2, 0, 1, 2] and len(set(picked)) == 16
    assert list(probe_ids(test)) == [test.image_id(i) for i in picked]


def test_audit_on_data_without_boxes_ranks_examples_by_confidence(tmp_path, capsys):
    import json

    import torch

    from overfocus.models import build_model

    for split in ("train", "val"):
        for k, cls in enumerate(("a", "b")):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(4):
                cv2.imwrite(str(tmp_path / "data" / split / cls / f"{cls}_{i}.png"),
                            (np.random.default_rng(10 * k + i).random((24, 24, 3)) * 255).astype(np.uint8))
    torch.manual_seed(0)
    torch.save(build_model("cifarnet", 2, 0.125, True).state_dict(), tmp_path / "m.pt")
    code = main(["audit", str(tmp_path / "m.pt"), "--model", "cifarnet", "--width", "0.125", "--small-input",
                 "--num-classes", "2", "--data", f"folder:{tmp_path / 'data'}", "--image-size", "32",
                 "--out", str(tmp_path / "a")])
    capsys.readouterr()
    assert code in (0, 1)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    examples = report["examples"]
    assert examples["score_metric"] == "confidence"
    best = [e["score"] for e in examples["best"]]
    assert best == sorted(best, reverse=True) and all(e["label"] == e["pred"] for e in examples["best"])
    html = (tmp_path / "a" / "report.html").read_text()
    assert "most confident" in html and "Green boxes" not in html and "audited images of folder:" in html
