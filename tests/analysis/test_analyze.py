"""`overfocus analyze`: the files of contract C, incremental calls, skipped checkpoints, the CLI."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from overfocus.analysis.storage import (RECORD_COLUMNS, SUMMARY_COLUMNS, read_probe, read_records, read_summary,
                                   records_path)
from overfocus.analysis import IMAGE_METRICS, analyze, parse_epochs
from overfocus.errors import OverfocusError
from overfocus.runs.rundir import RunDir
from conftest import copy_run, heatmap_folder

ROOT = Path(__file__).resolve().parents[2]
N_TEST = 24  # test images of the `tiny_run` fixture


@pytest.fixture(scope="module")
def analysed(tiny_run, tmp_path_factory):
    """A copy of the tiny run analysed once with the defaults, and the result of that call."""
    run = copy_run(tiny_run, tmp_path_factory.mktemp("analysed") / "run")
    return run, analyze(run, device="cpu", show_progress=False)


def _map_metrics(meta):
    return [m for m in meta["metrics"] if m not in IMAGE_METRICS and "coverage" not in m]


def test_files_follow_contract_c(analysed):
    run, result = analysed
    folder = run / "analysis"
    meta = json.loads((folder / "analysis.json").read_text())
    for key in ("schema", "methods", "metrics", "layer", "target", "data_spec", "probe_ids", "epochs_done",
                "skipped", "classes"):
        assert key in meta, key
    assert meta["methods"] == ["grad_cam", "sgdrop"] and meta["target"] == "gt"
    assert meta["epochs_done"] == [0, 1, 2] and meta["skipped"] == [] and result.computed == [0, 1, 2]
    assert meta["layer"] == "block3" and meta["classes"] == ["circle", "square", "triangle"]
    assert {"area_ratio", "box_iou", "hit", "pointing_game", "energy_pg"} <= set(meta["metrics"])
    assert sorted(p.name for p in (folder / "records").iterdir()) == [f"epoch_000{e}.csv" for e in range(3)]
    header = (folder / "records" / "epoch_0001.csv").read_text().splitlines()[0]
    assert header == ",".join(RECORD_COLUMNS)
    assert (folder / "summary.csv").read_text().splitlines()[0] == ",".join(SUMMARY_COLUMNS)


def test_one_row_per_image_method_and_metric(analysed):
    run, _ = analysed
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    rows = read_records(run, epochs=[1])
    per_image = [r for r in rows if r["method"] != "model"]
    # the faithfulness metrics: on the faithfulness images (all 24 here), the random baseline beside them
    faithful = meta["faithfulness_metrics"]
    assert meta["faithfulness_images"] == N_TEST and "deletion" in faithful and "road_morf" not in faithful
    assert len(per_image) == N_TEST * len(meta["methods"]) * len(_map_metrics(meta)) + \
        N_TEST * len([m for m in faithful if not m.startswith("sanity")])  # the random baseline: no sanity
    assert {r["method"] for r in per_image} == {"grad_cam", "sgdrop", "random"}
    assert {r["metric"] for r in per_image if r["method"] == "random"} == \
        {m for m in faithful if not m.startswith("sanity")}
    keys = {(r["method"], r["image_id"], r["metric"]) for r in per_image}
    assert len(keys) == len(per_image)  # no duplicates
    model_rows = [r for r in rows if r["method"] == "model" and r["image_id"] != "__all__"]
    assert len(model_rows) == N_TEST * 6  # correct, confidence, (unit_)coverage_global, (unit_)coverage_latent
    assert {r["epoch"] for r in rows} == {1}
    assert all(0.0 <= r["value"] <= 1.0 for r in rows if r["metric"] in ("area_ratio", "hit", "confidence"))


def test_records_agree_with_the_accuracy_of_training(analysed):
    run, _ = analysed
    test_acc = {r["epoch"]: r["test_acc"] for r in RunDir(run).read_metrics()}
    for epoch in (0, 2):
        correct = [r["value"] for r in read_records(run, epochs=[epoch]) if r["metric"] == "correct"]
        assert len(correct) == N_TEST
        assert abs(np.mean(correct) - test_acc[epoch]) < 1e-9


def test_summary_is_the_mean_of_the_records_with_a_bootstrap_interval(analysed):
    run, result = analysed
    summary = read_summary(run)
    assert summary == list(result)
    from overfocus.analysis.trajectory import read_trajectory

    # drift and the flips are records of their own (trajectory/epoch_NNNN.csv): against the previous epoch
    records = read_records(run) + [r for e in (0, 1, 2) for r in read_trajectory(run / "analysis", e)]
    assert {r["metric"] for r in read_trajectory(run / "analysis", 1)} == {"drift", "hit_flip", "pointing_game_flip"}
    for row in summary:
        assert row["ci_low"] <= row["mean"] + 1e-12 and row["mean"] <= row["ci_high"] + 1e-12, row
        if row["metric"].endswith(("_cumulative", "_per_class", "_nondegenerate", "_count")):
            continue  # not plain means of one metric's records (tested below)
        values = [r["value"] for r in records if (r["epoch"], r["method"], r["metric"]) ==
                  (row["epoch"], row["method"], row["metric"]) and not math.isnan(r["value"])]
        assert row["n"] == len(values)
        assert abs(row["mean"] - np.mean(values)) < 1e-6
    metrics = {(r["method"], r["metric"]) for r in summary}
    assert ("model", "coverage_global_cumulative") in metrics and ("model", "coverage_latent_cumulative") in metrics
    assert ("grad_cam", "pointing_game_per_class") in metrics and ("sgdrop", "pointing_game_per_class") in metrics
    hit = [r for r in summary if r["metric"] == "area_ratio"]
    assert any(r["ci_low"] < r["ci_high"] for r in hit)  # a real interval, not the mean repeated


def test_degenerate_maps_are_flagged_counted_and_left_out_of_the_second_aggregate(analysed):
    """Every map's record says whether it is degenerate; the summary counts them and aggregates each
    thresholded metric over all images and over the non-degenerate ones only."""
    run, _ = analysed
    summary = {(r["epoch"], r["method"], r["metric"]): r for r in read_summary(run)}
    records = read_records(run)
    flags = {(r["epoch"], r["method"], r["image_id"]): r["value"] for r in records if r["metric"] == "degenerate"}
    assert len(flags) == 3 * 2 * N_TEST and set(flags.values()) <= {0.0, 1.0}
    for (epoch, method), count in _counts(flags).items():
        assert summary[(epoch, method, "degenerate_count")]["mean"] == count
        assert summary[(epoch, method, "degenerate")]["mean"] == pytest.approx(count / N_TEST)
        for metric in ("area_ratio", "hit", "box_iou", "pointing_game", "energy_pg"):
            kept = [r["value"] for r in records if (r["epoch"], r["method"], r["metric"]) == (epoch, method, metric)
                    and flags[(epoch, method, r["image_id"])] == 0.0]
            row = summary.get((epoch, method, metric + "_nondegenerate"))
            assert row["n"] == len(kept)
            assert (math.isnan(row["mean"]) if not kept else row["mean"] == pytest.approx(np.mean(kept))), row
    assert ("grad_cam", "pointing_game_per_class_nondegenerate") in {k[1:] for k in summary}
    assert not any(k[2].startswith(("gini_", "entropy_")) for k in summary)  # NaN for degenerate maps anyway


def _counts(flags):
    out = {}
    for (epoch, method, _), value in flags.items():
        out[(epoch, method)] = out.get((epoch, method), 0) + value
    return out


def test_probe_maps_are_float16_with_the_same_images_every_epoch(analysed):
    run, _ = analysed
    probe_ids = RunDir(run).read_manifest()["probe_ids"]
    probe = read_probe(run)
    assert probe["images"].dtype == np.uint8 and probe["images"].shape == (16, 32, 32, 3)
    assert list(probe["image_ids"]) == probe_ids
    assert probe["boxes"].dtype == np.float32 and probe["boxes"].shape[0] == 16 and probe["boxes"].shape[2] == 4
    assert probe["labels"].dtype == np.int64 and list(probe["classes"]) == ["circle", "square", "triangle"]
    for epoch in range(3):
        p = read_probe(run, epoch=epoch)
        own = np.load(run / "analysis" / "probe" / f"epoch_000{epoch}.npz")
        assert list(own["image_ids"]) == probe_ids and int(p["epoch"]) == epoch
        for method in ("grad_cam", "sgdrop"):
            maps = p[f"maps_{method}"]
            assert maps.dtype == np.float16 and maps.shape == (16, 32, 32)
            assert maps.min() >= 0 and maps.max() <= 1
        assert p["pred"].dtype == np.int64 and p["conf"].dtype == np.float32 and p["conf"].shape == (16,)


def test_probe_maps_match_the_records(analysed):
    """The probe images are test images: their stored maps give back the recorded area ratio."""
    run, _ = analysed
    p = read_probe(run, epoch=2)
    area = {r["image_id"]: r["value"] for r in read_records(run, epochs=[2])
            if r["method"] == "grad_cam" and r["metric"] == "area_ratio"}
    conf = {r["image_id"]: r["value"] for r in read_records(run, epochs=[2]) if r["metric"] == "confidence"}
    diffs = []
    for i, image_id in enumerate(p["image_ids"]):
        diffs.append(abs(float((p["maps_grad_cam"][i].astype(np.float32) > 0.5).mean()) - area[image_id]))
        assert abs(float(p["conf"][i]) - conf[image_id]) < 1e-5
    # float16 rounding moves a few pixels that sit right at the threshold, no more
    assert max(diffs) <= 0.01 and np.mean(diffs) <= 2 / (32 * 32)


def test_a_second_call_does_no_work(analysed):
    run, _ = analysed
    folder = run / "analysis"
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = analyze(run, device="cpu", show_progress=False)
    assert again.computed == [] and again.epochs_done == [0, 1, 2]
    kept = ("analysis.json", "analysis.lock")  # the lock names its holder in each call
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name not in kept} == \
        {p: t for p, t in before.items() if p.name not in kept}
    assert list(again) == read_summary(run)


def test_a_different_configuration_is_refused_until_forced(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="2", metrics=["area_ratio"], device="cpu", show_progress=False, limit=8)
    # a Python call is told the Python arguments (the CLI's message names --force and --out)
    with pytest.raises(OverfocusError, match="pass force=True to replace it, or out=DIR to keep both"):
        analyze(run, epochs="2", metrics=["hit"], device="cpu", show_progress=False, limit=8)
    res = analyze(run, epochs="2", metrics=["hit"], device="cpu", show_progress=False, limit=8, force=True)
    assert res.computed == [2]
    assert {r["metric"] for r in read_records(run)} == {"hit", "degenerate", "correct", "confidence"}


def test_corrupt_checkpoint_is_skipped_then_filled_in(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    ckpt = RunDir(run).checkpoint_path(1)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as after a full disk
    res = analyze(run, metrics=["area_ratio"], device="cpu", show_progress=False)
    assert res.computed == [0, 2] and [s["epoch"] for s in res.skipped] == [1]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch 1" in err[0] and "corrupt" in err[0]
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0, 2] and meta["skipped"][0]["epoch"] == 1
    assert not records_path(run / "analysis", 1).exists()
    shutil.copy(RunDir(tiny_run).checkpoint_path(1), ckpt)  # the checkpoint is repaired
    res = analyze(run, metrics=["area_ratio"], device="cpu", show_progress=False)
    assert res.computed == [1] and res.skipped == []
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0, 1, 2] and meta["skipped"] == []
    assert sorted({r["epoch"] for r in read_summary(run)}) == [0, 1, 2]


def test_predicted_target_and_epoch_ranges(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    res = analyze(run, epochs="0:2:2", methods=["grad_cam"], metrics=["area_ratio", "coverage"], target="predicted",
                  limit=8, device="cpu", show_progress=False, out=tmp_path / "pred")
    assert res.computed == [0, 2]
    meta = json.loads((tmp_path / "pred" / "analysis.json").read_text())
    assert meta["target"] == "predicted" and meta["coverage_forward"] == "separate" and meta["limit"] == 8
    rows = read_records(run, out=tmp_path / "pred")
    assert len([r for r in rows if r["metric"] == "coverage_latent"]) == 2 * 8
    assert not (run / "analysis").exists()


def test_parse_epochs():
    assert parse_epochs(None, [0, 1, 2]) == ([0, 1, 2], [])
    assert parse_epochs("all", [0, 1, 2]) == ([0, 1, 2], [])
    assert parse_epochs("0:50:5", range(21)) == ([0, 5, 10, 15, 20], [])
    assert parse_epochs("3,5,7", range(6)) == ([3, 5], [7])
    assert parse_epochs([2, 1], range(3)) == ([1, 2], [])
    with pytest.raises(OverfocusError, match="START:STOP"):
        parse_epochs("1:x", range(3))
    with pytest.raises(OverfocusError):
        parse_epochs("one", range(3))


def test_human_maps_give_harmonization(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    spec = f"heatmaps:{heatmap_folder(tmp_path / 'human')}"
    res = analyze(run, epochs="2", methods=["grad_cam"], metrics=["area_ratio"], human=spec, limit=4,
                  device="cpu", show_progress=False)
    rows = [r for r in read_records(run) if r["metric"] == "harmonization"]
    assert len(rows) == 6 and all(r["image_id"].startswith("human:") and r["label"] == -1 for r in rows)
    assert all(math.isnan(r["value"]) or -1 <= r["value"] <= 1 for r in rows)
    assert any(r["metric"] == "harmonization" for r in res)
    assert json.loads((run / "analysis" / "analysis.json").read_text())["human"] == spec
    with pytest.raises(OverfocusError, match="--human"):
        analyze(run, epochs="2", metrics=["harmonization"], device="cpu", show_progress=False, out=tmp_path / "x")


@pytest.mark.slow
def test_osie_fixations_on_a_run(tiny_run, tmp_path):
    from tests.conftest import shared_data

    osie = shared_data("osie-150")
    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="2", methods=["grad_cam", "sgdrop"], metrics=["area_ratio"], human=f"osie:{osie}",
            limit=4, device="cpu", show_progress=False)
    rows = [r for r in read_records(run) if r["metric"] == "harmonization"]
    assert len(rows) == 2 * 150 and rows[0]["image_id"].startswith("human:osie/")
    assert sum(not math.isnan(r["value"]) for r in rows) > 100


def test_python_api_is_lazy_and_callable():
    code = ("import sys, overfocus; assert 'torch' not in sys.modules; "
            "import types, overfocus.analysis as m; assert 'torch' not in sys.modules; "
            "assert isinstance(overfocus.analyze, types.FunctionType) and overfocus.analyze is m.analyze; "
            "assert set(overfocus.__all__) == {'Tracker', 'analyze', 'attribute', 'normalize_maps', 'overlay'}; "
            "assert callable(overfocus.attribute) and callable(overfocus.normalize_maps) and callable(overfocus.overlay); "
            "assert callable(m.parse_epochs) and callable(m.read_records); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import overfocus

    assert callable(overfocus.analyze)


def test_cli_analyzes_a_run(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    ok = subprocess.run([sys.executable, "-m", "overfocus", "analyze", str(run), "--epochs", "2", "--limit", "8",
                         "--device", "cpu", "--methods", "grad_cam"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert (run / "analysis" / "records" / "epoch_0002.csv").is_file() and "summary" in ok.stdout


def test_cli_exit_2_with_one_line_on_a_non_run_folder(tmp_path, capsys):
    from overfocus.cli import main

    assert main(["analyze", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.json" in err[0] and err[0].startswith("overfocus analyze: error:")


@pytest.mark.parametrize("damage", ["records-mid-line", "records-at-line-end", "probe-npz"])
def test_a_truncated_file_is_detected_and_its_epoch_redone(analysed, tmp_path, damage, capsys):
    run = tmp_path / "run"
    shutil.copytree(analysed[0], run)
    folder = run / "analysis"
    records = records_path(folder, 1)
    whole = read_records(run, epochs=[1])
    summary = read_summary(run)
    if damage == "probe-npz":
        target = folder / "probe" / "epoch_0001.npz"
        target.write_bytes(target.read_bytes()[:-100])
    else:
        text = records.read_text()
        cut = len(text) // 2 if damage == "records-mid-line" else text.rindex("\n", 0, len(text) // 2) + 1
        records.write_text(text[:cut])
        target = records
    capsys.readouterr()
    again = analyze(run, device="cpu", show_progress=False)
    assert again.computed == [1]
    assert f"{target} is damaged" in capsys.readouterr().err
    assert read_records(run, epochs=[1]) == whole or all(
        a["metric"] == b["metric"] and (a["value"] == b["value"] or math.isnan(a["value"]) and math.isnan(b["value"]))
        for a, b in zip(read_records(run, epochs=[1]), whole))
    assert len(read_records(run, epochs=[1])) == len(whole)
    assert [(r["epoch"], r["metric"], r["n"]) for r in read_summary(run)] == \
        [(r["epoch"], r["metric"], r["n"]) for r in summary]
    read_probe(run, epoch=1)  # whole again


def test_a_truncated_probe_images_file_is_written_again(analysed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(analysed[0], run)
    images = run / "analysis" / "probe" / "images.npz"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])
    analyze(run, device="cpu", show_progress=False)
    assert images.read_bytes() == whole


def _diverge(checkpoint: Path, scale: float = math.nan) -> None:
    """Rewrite one checkpoint as a diverged training leaves it: one weight NaN, or every weight
    multiplied by `scale` (finite weights, overflowing logits)."""
    import torch

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = payload["model"]
    if math.isnan(scale):
        name = next(k for k, v in weights.items() if v.is_floating_point() and k.endswith("weight"))
        weights[name].view(-1)[0] = math.nan
    else:
        for name, value in weights.items():
            if value.is_floating_point() and name.endswith("weight"):
                value.mul_(scale)
    torch.save(payload, checkpoint)


def test_diverged_checkpoints_are_skipped_with_their_reason(tiny_run, tmp_path, capsys):
    """NaN weights or non-finite logits are not measured (they would read as extreme overfocusing):
    the epoch is skipped with the reason in analysis.json and one line printed, as a corrupt one."""
    run = copy_run(tiny_run, tmp_path / "run")
    _diverge(RunDir(run).checkpoint_path(1))
    _diverge(RunDir(run).checkpoint_path(2), scale=1e30)  # finite weights whose logits overflow to inf
    res = analyze(run, metrics=["area_ratio"], device="cpu", show_progress=False, limit=8)
    assert res.computed == [0] and [s["epoch"] for s in res.skipped] == [1, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "epoch 1" in err[0] and "non-finite weights" in err[0]
    assert "epoch 2" in err[1] and "non-finite logits" in err[1]
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0] and "non-finite weights (NaN or inf) in " in meta["skipped"][0]["reason"]
    assert not records_path(run / "analysis", 1).exists() and not records_path(run / "analysis", 2).exists()


def test_cli_prints_the_onset_and_writes_onset_json(tiny_run, tmp_path, capsys):
    from overfocus.cli import main

    run = copy_run(tiny_run, tmp_path / "run")
    assert main(["analyze", str(run), "--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio",
                 "--limit", "12"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    onset = json.loads((run / "analysis" / "onset.json").read_text())
    o = onset["methods"]["grad_cam"]
    summary = {r["epoch"]: r["mean"] for r in read_summary(run)
               if (r["method"], r["metric"]) == ("grad_cam", "area_ratio_nondegenerate")}
    assert onset["epochs"] == [0, 1, 2] and o["search_reason"]  # why the search starts where it does
    start = out.index("overfocus onset (area ratio over non-degenerate maps):")
    assert out[-2] == "is the narrowing real? (maps faithful = beat the random baseline on deletion and insertion)"
    assert out[-1] == "  " + o["verdict"] and not o["faithfulness_measured"]  # --metrics area_ratio only
    if o["peak_epoch"] is None:  # the tiny model may stay at chance level: the line says so
        assert out[start + 1] == f"  grad_cam: no onset: {o['search_reason']}"
        return
    peak = o["peak_epoch"]
    eligible = [e for e in summary if e >= o["search_from"]]
    assert peak >= 1 and summary[peak] == max(summary[e] for e in eligible)
    assert out[start + 1].startswith(f"  grad_cam: widest at epoch {peak} (area ratio {summary[peak]:.3f})")
    gaps = {r["epoch"]: r["gap"] for r in RunDir(run).read_metrics()}
    assert onset["methods"]["grad_cam"]["gap_at_last"] == pytest.approx(gaps[2])


def test_limit_takes_images_evenly_spaced_and_an_older_first_n_analysis_is_not_mixed_in(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="2", methods=["grad_cam"], metrics=["area_ratio"], device="cpu", show_progress=False,
            limit=6, faithfulness_images=0)
    ids = sorted({r["image_id"] for r in read_records(run)})
    wanted = [f"test_{i:06d}" for i in np.linspace(0, N_TEST - 1, 6).round().astype(int)]
    assert ids == wanted  # spread over the split (the first six would be one class of a sorted folder)
    meta_path = run / "analysis" / "analysis.json"
    meta = json.loads(meta_path.read_text())
    assert meta["image_choice"] == "evenly"
    del meta["image_choice"]  # what an analysis made when --limit took the first N images looks like
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(OverfocusError, match="image_choice"):
        analyze(run, epochs="1", methods=["grad_cam"], metrics=["area_ratio"], device="cpu", show_progress=False,
                limit=6, faithfulness_images=0)
