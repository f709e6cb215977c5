"""A run written by `overfocus train` and one written by the Tracker for the same weights hold the same
run.json facts: the data's fingerprint, the classes, the layers, the probe ids (readable images only,
chosen by `data.splits.probe_ids`), and the accuracies measured on THE evaluation loaders
(`runs.accuracy.eval_loaders`), because both end their epochs through the same hooks and writer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import folder_with_a_bad_first_test_image
import torch

import overfocus
from overfocus.config import build_config
from overfocus.models import build_model
from overfocus.training.engine import train

FACTS = ("dataset", "num_classes", "gradcam_layer", "latent_layer", "probe_ids", "epoch0_is_initial", "schema")
SMALL = ["data.image_size=32", "model.name=cifarnet", "model.width=0.125", "train.epochs=1",
         "train.progress=false", "data.batch_size=8"]


def _manifest(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _weights(run: Path, epoch: int) -> dict:
    return torch.load(run / "checkpoints" / f"epoch_{epoch:04d}.pt", weights_only=True)["model"]


def _net(weights: dict) -> torch.nn.Module:
    classes = [v for k, v in weights.items() if k.endswith("weight") and v.dim() == 2][-1].shape[0]
    net = build_model("cifarnet", classes, width=0.125)
    net.load_state_dict(weights)
    return net


def _track(out: Path, cfg, trained: Path, **options) -> Path:
    """The Tracker fed the weights the train run wrote at epochs 0 and 1."""
    d = cfg.data
    tracker = overfocus.Tracker(out, data=d.spec, model_name="cifarnet", model_kwargs={"width": 0.125},
                                image_size=d.image_size, mean=d.mean, std=d.std, batch_size=d.batch_size,
                                seed=cfg.train.seed, **options)
    accuracies = {}
    if not options.get("measure", True):  # the data has a file that does not read: pass what train measured
        accuracies = {r["epoch"]: {"train_acc": r["train_acc"], "test_acc": r["test_acc"]}
                      for r in map(json.loads, (trained / "metrics.jsonl").read_text().splitlines())}
    tracker.start(_net(_weights(trained, 0)))
    tracker.epoch_end(1, _net(_weights(trained, 1)), **accuracies.get(1, {}))
    tracker.finish()
    return out


def test_probe_ids_are_the_readable_ones_in_both(tmp_path):
    data = folder_with_a_bad_first_test_image(tmp_path / "data")
    cfg = build_config(overrides=[f"data.spec=folder:{data}", *SMALL, "data.skip_bad=true"])
    trained = train(cfg, tmp_path / "train")
    tracked = _track(tmp_path / "tracked", cfg, trained, measure=False)
    ours, theirs = _manifest(trained), _manifest(tracked)
    assert {k: ours[k] for k in FACTS} == {k: theirs[k] for k in FACTS}
    assert len(ours["probe_ids"]) == 7 and "val/a/a_0.png" not in ours["probe_ids"]  # 8 test images, one bad
    assert theirs["source"] == {"kind": "tracker"} and "source" not in ours


def test_accuracies_are_measured_the_same_way(tmp_path):
    cfg = build_config(overrides=["data.spec=builtin?train=24&test=12&classes=3", *SMALL])
    trained = train(cfg, tmp_path / "train")
    tracked = _track(tmp_path / "tracked", cfg, trained)
    ours, theirs = _manifest(trained), _manifest(tracked)
    assert {k: ours[k] for k in FACTS} == {k: theirs[k] for k in FACTS}
    keys = ("epoch", "train_acc", "test_acc")
    assert [{k: e[k] for k in keys} for e in ours["epochs"]] == [{k: e[k] for k in keys} for e in theirs["epochs"]]
    rows = [json.loads(line) for line in (tracked / "metrics.jsonl").read_text().splitlines()]
    assert [r["gap"] for r in rows] == pytest.approx([e["train_acc"] - e["test_acc"] for e in ours["epochs"]])
    for epoch in (0, 1):  # the same weights, hence the same files for analysis to read
        assert all(torch.equal(a, b) for a, b in zip(_weights(trained, epoch).values(),
                                                       _weights(tracked, epoch).values()))
