"""Explanation drift and flips along the trajectory (analysis/trajectory.py), the stabilisation
epoch, and the files an analysis writes for them and for the faithfulness pass."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overfocus.analysis.onset import OnsetCollector, compute_onset
from overfocus.analysis.trajectory import drift_rows, flip_rows, update_trajectory
from conftest import copy_run


def test_drift_is_one_minus_spearman_matched_by_image_id():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 4)).astype(np.float32)
    reversed_ = a.max() - a
    now = {"image_ids": np.array(["x", "y", "z"]), "maps_m": np.stack([a[0], reversed_[1], a[2]])}
    then = {"image_ids": np.array(["z", "y", "x", "w"]), "maps_m": np.stack([a[2], a[1], a[0], a[0]])}
    rows = {r["image_id"]: r["value"] for r in drift_rows(5, now, then, {})}
    assert rows["x"] == pytest.approx(0.0, abs=1e-6) and rows["z"] == pytest.approx(0.0, abs=1e-6)
    assert rows["y"] == pytest.approx(2.0, abs=1e-6)  # the ranking reversed
    constant = {"image_ids": np.array(["x"]), "maps_m": np.zeros((1, 4, 4), np.float32)}
    assert math.isnan(drift_rows(5, constant, then, {})[0]["value"])


def test_flips_count_changed_outcomes_only_where_both_epochs_have_one():
    def rec(epoch, values):
        return [{"epoch": epoch, "method": "m", "image_id": f"i{k}", "label": 0, "metric": "pointing_game",
                 "value": v} for k, v in enumerate(values)]

    rows = flip_rows(2, rec(2, [1.0, 0.0, 1.0, math.nan]), rec(1, [1.0, 1.0, 0.0, 1.0]))
    assert [(r["image_id"], r["metric"], r["value"]) for r in rows] == [
        ("i0", "pointing_game_flip", 0.0), ("i1", "pointing_game_flip", 1.0), ("i2", "pointing_game_flip", 1.0)]


def test_stabilisation_epoch_is_where_the_median_drift_stays_low():
    collector = OnsetCollector()
    for epoch, drift in enumerate([None, 0.6, 0.05, 0.3, 0.08, 0.02]):
        rows = [{"epoch": epoch, "method": "m", "image_id": f"i{k}", "label": 0, "metric": "area_ratio",
                 "value": 0.5} for k in range(3)]
        if drift is not None:
            rows += [{"epoch": epoch, "method": "m", "image_id": f"i{k}", "label": 0, "metric": "drift",
                      "value": drift + 0.01 * (k - 1)} for k in range(3)]
        collector.add(epoch, rows)
    o = compute_onset(collector, {})["methods"]["m"]
    assert o["stabilisation_epoch"] == 4 and o["drift_level"] == 0.1
    assert o["drift_median"]["3"] == pytest.approx(0.3)


def test_an_analysis_writes_drift_faithfulness_and_the_random_baseline(tiny_run, tmp_path):
    from overfocus.analysis import analyze, read_summary
    from overfocus.analysis.storage import read_faithfulness, read_npz, small_maps_path

    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, methods=["grad_cam"], metrics=["area_ratio", "pointing_game", "deletion", "insertion",
                                                "sanity_init"],
            device="cpu", show_progress=False, faithfulness_images=5, faithfulness_steps=4)
    folder = run / "analysis"
    faithful = read_faithfulness(folder)
    assert faithful["images"] == 5 and len(faithful["image_ids"]) == 5 and faithful["steps"] == 4
    assert faithful["image_ids"] == ["test_000000", "test_000006", "test_000012", "test_000017", "test_000023"]
    small = read_npz(small_maps_path(folder, 1))
    import torch
    from overfocus.runs.manifest import RunInfo
    from overfocus.models.layers import spatial_sizes
    from overfocus.runs.rundir import RunDir

    info = RunInfo.from_manifest(RunDir(run).read_manifest())
    layer_size = dict(spatial_sizes(info.build_model(), torch.zeros(1, 3, 32, 32)))["block3"]
    assert small["maps_grad_cam"].shape == (24, *layer_size) and small["maps_grad_cam"].dtype == np.float16
    summary = {(r["epoch"], r["method"], r["metric"]): r for r in read_summary(run)}
    assert (0, "grad_cam", "drift") not in summary and (1, "grad_cam", "drift") in summary
    assert (2, "grad_cam", "pointing_game_flip") in summary
    for epoch in (0, 1, 2):
        assert summary[(epoch, "random", "deletion")]["n"] == 5 and (epoch, "random", "area_ratio") not in summary
        assert (epoch, "grad_cam", "insertion") in summary
    assert summary[(0, "grad_cam", "sanity_init")]["mean"] == pytest.approx(1.0, abs=1e-5)  # epoch 0 is itself
    index = json.loads((folder / "trajectory" / "index.json").read_text())
    assert index == {"1": 0, "2": 1}
    onset = json.loads((folder / "onset.json").read_text())["methods"]["grad_cam"]
    assert onset["faithfulness_measured"] and set(onset["faithful_epochs"]) == {"0", "1", "2"}
    # analysing fewer epochs again: drift is then against the previous ANALYSED epoch
    analyze(run, epochs="0,2", methods=["grad_cam"], metrics=["area_ratio", "pointing_game", "deletion",
                                                            "insertion", "sanity_init"],
            device="cpu", show_progress=False, faithfulness_images=5, faithfulness_steps=4, out=folder.parent / "a2")
    assert json.loads((folder.parent / "a2" / "trajectory" / "index.json").read_text()) == {"2": 0}


def test_cascade_writes_its_curve_and_all_layers_randomised_is_the_epoch_0_model(tiny_run, tmp_path):
    from overfocus.analysis.storage import read_records
    from overfocus.cli import main

    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["analyze", str(run), "--device", "cpu", "--methods", "grad_cam", "--metrics",
                 "area_ratio,deletion,sanity_init", "--epochs", "0,2", "--faithfulness-images", "6",
                 "--faithfulness-steps", "4", "--sanity", "cascade"]) == 0
    curve = json.loads((run / "analysis" / "sanity_cascade.json").read_text())
    assert curve["epoch"] == 2 and curve["images"] == 6 and curve["reinitialised_from"] == "epoch 0"
    assert curve["layers"] == ["classifier.6", "classifier.3", "classifier.0", "block3.0", "block2.0", "block1.0"]
    rho = curve["methods"]["grad_cam"]["spearman"]
    assert len(rho) == 6
    # every layer back at its epoch-0 weights is the epoch-0 model: the last point is sanity_init at epoch 2
    init = [r["value"] for r in read_records(run, epochs=[2])
            if r["method"] == "grad_cam" and r["metric"] == "sanity_init" and r["value"] == r["value"]]
    assert init and rho[-1] == pytest.approx(float(np.mean(init)), abs=1e-4)
    assert main(["analyze", str(run), "--device", "cpu", "--faithfulness-images", "0", "--sanity", "cascade",
                 "--out", str(tmp_path / "other")]) == 2
