"""`overfocus compare`: refuses different probe sets, common epochs only, curves, video, tables."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from overfocus.errors import OverfocusError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_render import _gif_frames, write_fake_run  # noqa: E402  (the contract-C fixture generator)


@pytest.fixture
def two_runs(tmp_path):
    a = write_fake_run(tmp_path / "vanilla", epochs=(0, 1, 2, 3), seed=0)
    b = write_fake_run(tmp_path / "sgdrop", epochs=(0, 1, 2), seed=1)
    return a, b


def test_compare_writes_curves_video_and_tables(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs

    out = tmp_path / "cmp"
    res = compare_runs(two_runs, CompareOptions(out=out, formats=["gif"], size=480))
    assert {p.name for p in res.written} == {"metrics.png", "gap.png", "evolution.gif", "last_epoch.md",
                                             "last_epoch.csv"}
    assert res.epochs == [0, 1, 2]  # epochs common to both runs
    frames = _gif_frames(out / "evolution.gif")
    assert len(frames) == 3 and frames[0].shape[1] == 480
    rows = list(csv.DictReader((out / "last_epoch.csv").open()))
    assert [(r["label"], r["epoch"]) for r in rows] == [("vanilla", "3"), ("sgdrop", "2")]
    assert float(rows[0]["area_ratio"]) < float(rows[1]["area_ratio"])  # narrower maps later in training
    md = (out / "last_epoch.md").read_text()
    assert "| vanilla | 3 |" in md and "area_ratio" in md


def test_last_epoch_table_matches_the_summary(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs
    from overfocus.analysis.storage import parse_summary_file as read_summary

    compare_runs(two_runs, CompareOptions(out=tmp_path / "c", formats=["gif"], size=320, method="sgdrop"))
    row = next(csv.DictReader((tmp_path / "c" / "last_epoch.csv").open()))
    summary = read_summary(two_runs[0] / "analysis" / "summary.csv")
    want = next(r for r in summary if r["epoch"] == 3 and r["method"] == "sgdrop" and r["metric"] == "energy_pg")
    conf = next(r for r in summary if r["epoch"] == 3 and r["method"] == "model" and r["metric"] == "confidence")
    assert float(row["energy_pg"]) == pytest.approx(want["mean"], rel=1e-5)
    assert float(row["energy_pg_ci_high"]) == pytest.approx(want["ci_high"], rel=1e-5)
    assert float(row["confidence"]) == pytest.approx(conf["mean"], rel=1e-5)
    assert float(row["test_acc"]) == pytest.approx(0.2 + 0.12 * 3)


def test_compare_refuses_different_probe_sets(tmp_path):
    from overfocus.render.compare import compare_runs

    a = write_fake_run(tmp_path / "a", epochs=(0, 1))
    b = write_fake_run(tmp_path / "b", epochs=(0, 1), split="train")
    with pytest.raises(OverfocusError, match="different probe sets"):
        compare_runs([a, b])
    assert not (tmp_path / "compare_a_vs_b").exists()


def test_compare_aligns_the_same_probe_ids_in_another_order(two_runs, tmp_path):
    """Same probe images stored in another order: compared image by image, not refused."""
    from overfocus.render.compare import CompareOptions, compare_runs

    a, b = two_runs
    path = b / "analysis" / "probe" / "images.npz"
    with np.load(path) as z:
        data = dict(z)
    perm = np.arange(len(data["labels"]))[::-1]
    np.savez(path, **{k: (v[perm] if k != "classes" else v) for k, v in data.items()})
    for e in (0, 1, 2):
        ep = b / "analysis" / "probe" / f"epoch_{e:04d}.npz"
        with np.load(ep) as z:
            d = dict(z)
        np.savez(ep, **{k: (v[perm] if v.ndim else v) for k, v in d.items()})
    res = compare_runs([a, b], CompareOptions(out=tmp_path / "x", formats=["gif"], size=320))
    assert res.epochs == [0, 1, 2]


def test_compare_bad_input(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs

    with pytest.raises(OverfocusError, match="at least two"):
        compare_runs(two_runs[:1])
    with pytest.raises(OverfocusError, match="one label per run"):
        compare_runs(two_runs, CompareOptions(labels=["x"]))
    with pytest.raises(OverfocusError, match="not analysed in every run"):
        compare_runs(two_runs, CompareOptions(method="saliency"))
    with pytest.raises(OverfocusError, match="not in every run"):
        compare_runs(two_runs, CompareOptions(metrics=["harmonization"]))


def test_cli_compare(two_runs, tmp_path, capsys):
    from overfocus.cli import main

    out = tmp_path / "cli"
    args = ["compare", *map(str, two_runs), "--labels", "v,s", "--out", str(out), "--formats", "gif", "--size",
            "320", "--metrics", "area_ratio,hit"]
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "evolution.gif").is_file() and "3 in common" in capsys.readouterr().out
    c = tmp_path / "c"
    write_fake_run(c, split="train")
    assert main(["compare", str(two_runs[0]), str(c)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "different probe sets" in err
