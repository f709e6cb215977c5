"""`overfocus compare`: refuses different probe sets, common epochs only, curves, video, tables."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from overfocus.errors import OverfocusError

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
                                             "last_epoch.csv", "explorer.html"}
    assert res.epochs == [0, 1, 2]  # epochs common to both runs
    frames = _gif_frames(out / "evolution.gif")
    assert len(frames) == 3 and frames[0].shape[1] == 480
    rows = list(csv.DictReader((out / "last_epoch.csv").open()))
    # like with like: both runs at the last epoch they share (vanilla has one more), on the same 8 images
    assert [(r["label"], r["epoch"]) for r in rows] == [("vanilla", "2"), ("sgdrop", "2")]
    assert float(rows[0]["area_ratio"]) < float(rows[1]["area_ratio"])  # sgdrop's fixture maps are wider
    md = (out / "last_epoch.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| run |"))
    assert 8 <= head.count("|") - 1 <= 10  # a paper's table; the CSV holds every metric
    assert head.startswith("| run | test acc | gap (pts) | area ratio |") and "| vanilla |" in md
    assert len(rows[0]) > head.count("|") + 10 and "last_epoch.csv" in md
    assert "Aligned: epoch 2" in md and "8 analysed images common to all runs" in md
    assert res.epoch == 2 and res.n_images == 8


def test_last_epoch_table_matches_the_summary(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs
    from overfocus.analysis.storage import parse_summary_file as read_summary

    compare_runs(two_runs, CompareOptions(out=tmp_path / "c", formats=["gif"], size=320, method="sgdrop"))
    row = next(csv.DictReader((tmp_path / "c" / "last_epoch.csv").open()))
    summary = read_summary(two_runs[0] / "analysis" / "summary.csv")
    want = next(r for r in summary if r["epoch"] == 2 and r["method"] == "sgdrop" and r["metric"] == "energy_pg")
    conf = next(r for r in summary if r["epoch"] == 2 and r["method"] == "model" and r["metric"] == "confidence")
    assert float(row["energy_pg"]) == pytest.approx(want["mean"], rel=1e-5)
    assert float(row["energy_pg_ci_high"]) == pytest.approx(want["ci_high"], rel=1e-5)
    assert float(row["confidence"]) == pytest.approx(conf["mean"], rel=1e-5)
    assert float(row["test_acc"]) == pytest.approx(0.2 + 0.12 * 2)


def test_compare_epoch_option_picks_a_common_epoch(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs

    res = compare_runs(two_runs, CompareOptions(out=tmp_path / "e", formats=["gif"], size=320, epoch=1))
    rows = list(csv.DictReader((tmp_path / "e" / "last_epoch.csv").open()))
    assert res.epoch == 1 and {r["epoch"] for r in rows} == {"1"}
    with pytest.raises(OverfocusError, match="--epoch 3 was not analysed in every run"):
        compare_runs(two_runs, CompareOptions(out=tmp_path / "f", formats=["gif"], epoch=3))


def _drop_images(run: Path, keep) -> None:
    """Rewrite a fake run's records as if it had analysed only the images `keep`."""
    for path in (run / "analysis" / "records").glob("epoch_*.csv"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0]] + [x for x in lines[1:] if x.split(",")[2] in keep]) + "\n")


def test_compare_means_are_taken_over_the_common_analysed_images(two_runs, tmp_path):
    """Runs analysed on different image sets: the table's means are recomputed on the shared images."""
    from overfocus.analysis.storage import read_records
    from overfocus.render.compare import CompareOptions, compare_runs

    a, b = two_runs
    ids = sorted({r["image_id"] for r in read_records(a, epochs=[2])})
    _drop_images(b, set(ids[:5]))
    res = compare_runs([a, b], CompareOptions(out=tmp_path / "c", formats=["gif"], size=320))
    assert res.n_images == 5
    row = next(csv.DictReader((tmp_path / "c" / "last_epoch.csv").open()))
    values = [r["value"] for r in read_records(a, epochs=[2]) if r["metric"] == "energy_pg"
              and r["method"] == "grad_cam" and r["image_id"] in ids[:5]]
    assert float(row["energy_pg"]) == pytest.approx(np.mean(values), rel=1e-5)
    full = [r["value"] for r in read_records(a, epochs=[2]) if r["metric"] == "energy_pg" and r["method"] == "grad_cam"]
    assert not np.isclose(np.mean(full), np.mean(values))  # the test can tell the two apart
    md = (tmp_path / "c" / "last_epoch.md").read_text()
    assert "5 analysed images common to all runs (recomputed from the records" in md


def test_compare_refuses_runs_without_a_common_analysed_image(two_runs, tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs

    for path in (two_runs[1] / "analysis" / "records").glob("epoch_*.csv"):  # another dataset's image ids
        lines = [x.split(",") for x in path.read_text().splitlines()]
        path.write_text("\n".join(",".join(c[:2] + ["other-" + c[2]] + c[3:]) for c in lines[1:]) + "\n")
        path.write_text(",".join(lines[0]) + "\n" + path.read_text())
    with pytest.raises(OverfocusError, match="share no analysed image at epoch 2: analyse them on the same data"):
        compare_runs(two_runs, CompareOptions(out=tmp_path / "n", formats=["gif"]))
    assert not (tmp_path / "n").exists()


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
    printed = capsys.readouterr().out
    assert (out / "evolution.gif").is_file() and "3 in common" in printed and "table at epoch 2" in printed
    assert main(["compare", *map(str, two_runs), "--out", str(tmp_path / "pdf"), "--formats", "gif", "--size", "320",
                 "--format", "pdf"]) == 0
    assert (tmp_path / "pdf" / "metrics.pdf").read_bytes()[:5] == b"%PDF-"
    capsys.readouterr()
    c = tmp_path / "c"
    write_fake_run(c, split="train")
    assert main(["compare", str(two_runs[0]), str(c)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "different probe sets" in err
