"""Rendering: videos (one frame per analysed epoch, requested size), plots, filmstrip, determinism, CLI.

The analysis output is generated here, synthetic but exactly in the on-disk format of
RUN/analysis/ (docs/rendering.md, contract C): probe images from the builtin data, Gaussian
attribution blobs that narrow over epochs, records and a summary computed from those maps.
"""
from __future__ import annotations

import csv
import io
import json
import math
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from overfocus.errors import OverfocusError
from overfocus.runs.rundir import RunDir
from overfocus.fileio import atomic_write_json

FIXTURE_SIZE = 32


# --- fixture generator (contract C) -------------------------------------------------------------

def _probe(split: str):
    from overfocus.data import open_dataset

    ds = open_dataset("builtin?train=8&test=8", split, FIXTURE_SIZE)
    samples = [ds[i] for i in range(len(ds))]
    images = np.stack([np.round(s["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for s in samples])
    k = max(1, max(len(s["boxes"]) for s in samples))
    boxes = np.full((len(samples), k, 4), -1.0, np.float32)
    for i, s in enumerate(samples):
        boxes[i, :len(s["boxes"])] = s["boxes"].numpy()
    labels = np.array([s["label"] for s in samples], np.int64)
    return images, boxes, labels, [s["image_id"] for s in samples], list(ds.classes)


def _blob(box: np.ndarray, sigma: float, size: int, shift: float) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2 + shift, (box[1] + box[3]) / 2
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    m = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    return m / m.max()


def _maps(boxes, epoch: int, method: str, rng, seed: int) -> np.ndarray:
    widen = (1.6 if method == "sgdrop" else 1.0) * (1.0 + 0.4 * seed)
    sigma = widen * max(1.5, 8.0 - 1.5 * epoch)  # the maps narrow as training goes on (overfocusing)
    out = [_blob(b[0], sigma, FIXTURE_SIZE, rng.uniform(-3, 3)) + rng.uniform(0, 0.05, (FIXTURE_SIZE,) * 2)
           for b in boxes]
    return np.stack([m / m.max() for m in out]).astype(np.float32)


def _energy(m: np.ndarray, box: np.ndarray) -> float:
    x0, y0, x1, y1 = np.round(box).astype(int)
    return float(m[y0:y1, x0:x1].sum() / m.sum())


def _records(epoch, methods, maps, pred, conf, labels, boxes, ids, rng):
    rows = []
    for m in methods:
        for i in range(len(ids)):
            area = float((maps[m][i] > 0.5).mean())
            hit = float(rng.random() < 0.4 + 0.1 * epoch) if i % 3 else math.nan  # NaN: undefined, written empty
            for metric, value in (("area_ratio", area), ("hit", hit), ("energy_pg", _energy(maps[m][i], boxes[i][0]))):
                rows.append([epoch, m, ids[i], int(labels[i]), metric, value])
    for i in range(len(ids)):
        for metric, value in (("correct", float(pred[i] == labels[i])), ("confidence", float(conf[i])),
                              ("coverage_global", float(rng.uniform(0.3, 0.5)))):
            rows.append([epoch, "model", ids[i], int(labels[i]), metric, value])
    return rows


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([["" if isinstance(v, float) and math.isnan(v) else v for v in r] for r in rows])
    path.write_text(buf.getvalue())


def _summary(all_rows):
    groups = {}
    for epoch, method, _, _, metric, value in all_rows:
        groups.setdefault((epoch, method, metric), []).append(value)
    out = []
    for (epoch, method, metric), vals in sorted(groups.items()):
        v = np.array([x for x in vals if not math.isnan(x)])
        half = 1.96 * v.std() / math.sqrt(len(v))
        out.append([epoch, method, metric, v.mean(), v.mean() - half, v.mean() + half, len(v)])
        if metric == "coverage_global":
            out.append([epoch, "model", "coverage_global_cumulative", 0.6, 0.6, 0.6, len(v)])
    return out


def write_fake_run(root: Path, epochs: Sequence[int] = (0, 1, 2, 3), methods=("grad_cam", "sgdrop"),
                   split: str = "test", seed: int = 0) -> Path:
    """A run directory with metrics.jsonl, run.json and RUN/analysis/ exactly per contract C."""
    rng = np.random.default_rng(seed)
    images, boxes, labels, ids, classes = _probe(split)
    ana = root / "analysis"
    (ana / "probe").mkdir(parents=True)
    np.savez(ana / "probe" / "images.npz", images=images, boxes=boxes, labels=labels, image_ids=np.array(ids), classes=np.array(classes))
    all_rows = []
    for e in epochs:
        maps = {m: _maps(boxes, e, m, rng, seed) for m in methods}
        correct = rng.uniform(size=len(ids)) < 0.3 + 0.15 * e
        pred = np.where(correct, labels, (labels + 1) % len(classes)).astype(np.int64)
        conf = rng.uniform(0.3, 1.0, len(ids)).astype(np.float32)
        np.savez(ana / "probe" / f"epoch_{e:04d}.npz", pred=pred, conf=conf, epoch=e,
                 **{f"maps_{m}": v.astype(np.float16) for m, v in maps.items()})
        rows = _records(e, methods, maps, pred, conf, labels, boxes, ids, rng)
        _write_csv(ana / "records" / f"epoch_{e:04d}.csv", ["epoch", "method", "image_id", "label", "metric",
                                                            "value"], rows)
        all_rows += rows
    _write_csv(ana / "summary.csv", ["epoch", "method", "metric", "mean", "ci_low", "ci_high", "n"],
               _summary(all_rows))
    atomic_write_json(ana / "analysis.json", {
        "schema": 1, "methods": list(methods), "metrics": ["area_ratio", "hit", "energy_pg"], "layer": "features",
        "target": "gt", "data_spec": "builtin?train=8&test=8", "probe_ids": ids, "epochs_done": list(epochs),
        "skipped": [], "classes": classes})
    run = RunDir(root)
    run.write_manifest({"schema": 1, "status": "complete", "probe_ids": ids, "epochs": []})
    train = {e: min(1.0, 0.2 + 0.25 * e) for e in epochs}
    test = {e: 0.2 + (0.12 + 0.03 * seed) * e for e in epochs}
    run.write_metrics([{"epoch": e, "train_acc": train[e], "test_acc": test[e], "gap": train[e] - test[e],
                        "train_loss": 2.0 / (e + 1), "test_loss": 2.2 / (e + 1), "lr": 0.01, "seconds": 1.0}
                       for e in sorted(epochs)])
    return root


@pytest.fixture
def fake_run(tmp_path) -> Path:
    return write_fake_run(tmp_path / "vanilla")


# --- tests --------------------------------------------------------------------------------------

def _gif_frames(path: Path) -> list:
    import imageio.v3 as iio

    return list(iio.imiter(path, plugin="pillow", mode="RGB"))


def _mp4_frames(path: Path) -> list:
    import imageio.v2 as iio2

    reader = iio2.get_reader(str(path), format="FFMPEG")
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def test_video_has_one_frame_per_analysed_epoch_at_the_requested_size(fake_run):
    from overfocus.render import RenderOptions, render_run

    render_run(fake_run, RenderOptions(methods=["grad_cam"], size=480, formats=["mp4", "gif"]))
    figures = fake_run / "figures"
    gif, mp4 = _gif_frames(figures / "evolution_grad_cam.gif"), _mp4_frames(figures / "evolution_grad_cam.mp4")
    assert len(gif) == len(mp4) == 4
    assert {f.shape[1] for f in gif + mp4} == {480}
    assert gif[0].shape == mp4[0].shape and gif[0].shape[0] % 2 == 0
    # frames differ from epoch to epoch (each epoch appears, in order, not a repeated first frame)
    assert all(np.abs(gif[i].astype(int) - gif[i + 1]).mean() > 0.5 for i in range(3))


def test_mp4_is_h264_yuv420p(fake_run):
    from overfocus.render import RenderOptions, render_run
    import imageio_ffmpeg

    render_run(fake_run, RenderOptions(methods=["sgdrop"], formats=["mp4"], size=320))
    info = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(fake_run / "figures" / "evolution_sgdrop.mp4")],
                          capture_output=True, text=True).stderr
    assert "h264" in info and "yuv420p" in info


def test_frame_order_follows_epochs(tmp_path):
    """Epochs analysed out of order are still shown in epoch order, each once."""
    from overfocus.render.io import load_analysis
    from overfocus.render.frames import FrameStyle, evolution_frames

    run = write_fake_run(tmp_path / "r", epochs=(0, 2, 1))
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    meta["epochs_done"] = [2, 0, 1, 2]
    atomic_write_json(run / "analysis" / "analysis.json", meta)
    analysis = load_analysis(run)
    assert analysis.epochs == [0, 1, 2]
    frames = list(evolution_frames(analysis, ["grad_cam"], [0], FrameStyle(320)))
    single = [list(evolution_frames(_only(analysis, e), ["grad_cam"], [0], FrameStyle(320)))[0] for e in (0, 1, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(frames, single))


def _only(analysis, epoch):
    import copy

    a = copy.copy(analysis)
    a.epochs = [epoch]
    return a


def test_overlay_is_rgb_and_boxes_land_on_the_object(fake_run):
    """Red input stays red (no BGR swap) and the box is drawn at the object's scaled position."""
    from overfocus.render.overlay import attribution_panel, overlay_map

    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    assert overlay_map(red, np.zeros((4, 4)), alpha=0.0)[0, 0].tolist() == [200, 0, 0]
    panel = attribution_panel(red, np.zeros((4, 4)), np.array([[1, 1, 3, 3]]), 64, 0.0, "inferno")
    assert panel[16, 16].tolist() == [0, 255, 0] and panel[47, 30].tolist() == [0, 255, 0]
    assert panel[30, 30, 1] < 200 and panel[8, 8].tolist() != [0, 255, 0]
    # an all-zero map is labelled (white text in the top-left corner); a real map is not
    blob = np.zeros((4, 4))
    blob[2, 2] = 1.0
    lit = attribution_panel(red, blob, np.zeros((0, 4)), 64, 0.5, "inferno")[:12, :40]
    empty = attribution_panel(red, np.zeros((4, 4)), np.zeros((0, 4)), 64, 0.5, "inferno")[:12, :40]
    assert (empty.min(axis=2) > 200).sum() > 10 and (lit.min(axis=2) > 200).sum() == 0


def test_missing_metrics_log_skips_only_the_gap_plot(fake_run):
    from overfocus.render import RenderOptions, render_run

    (fake_run / "metrics.jsonl").unlink()
    res = render_run(fake_run, RenderOptions(methods=["grad_cam"], formats=["gif"], size=320))
    assert "gap.png" not in {p.name for p in res.written} and "metrics.png" in {p.name for p in res.written}
    assert any("gap.png" in note for note in res.skipped)
    assert len(_gif_frames(fake_run / "figures" / "evolution_grad_cam.gif")) == 4  # header shows n/a


def test_plots_are_valid_pngs(fake_run):
    from PIL import Image
    from overfocus.render import RenderOptions, render_run

    res = render_run(fake_run, RenderOptions(formats=["gif"], size=320, filmstrip_epochs=[0, 3]))
    names = {p.name for p in res.written}
    assert {"gap.png", "metrics.png", "filmstrip_grad_cam.png", "filmstrip_sgdrop.png"} <= names
    for name in ("gap.png", "metrics.png", "filmstrip_grad_cam.png"):
        with Image.open(fake_run / "figures" / name) as im:
            im.verify()
        with Image.open(fake_run / "figures" / name) as im:
            assert im.format == "PNG" and min(im.size) > 200


def test_filmstrip_shows_the_requested_epochs_as_columns(fake_run):
    from overfocus.render.io import load_analysis
    from overfocus.render.frames import FrameStyle
    from overfocus.render.filmstrip import filmstrip

    a = load_analysis(fake_run)
    two = filmstrip(a, ["grad_cam"], [0, 3], [0, 1], FrameStyle(), panel=96)
    three = filmstrip(a, ["grad_cam"], [0, 1, 3], [0, 1], FrameStyle(), panel=96)
    assert three.shape[1] - two.shape[1] == 96 + 4  # one more column per epoch (panel + gap)
    with pytest.raises(OverfocusError, match="epoch 7 was not analysed"):
        from overfocus.render import RenderOptions, render_run
        render_run(fake_run, RenderOptions(formats=["gif"], filmstrip_epochs=[0, 7]))


def test_side_by_side_puts_both_methods_in_one_video(fake_run):
    from overfocus.render import RenderOptions, render_run

    res = render_run(fake_run, RenderOptions(side_by_side=True, formats=["gif"], size=640))
    names = {p.name for p in res.written}
    assert "evolution_grad_cam-sgdrop.gif" in names and "evolution_grad_cam.gif" not in names
    assert len(_gif_frames(fake_run / "figures" / "evolution_grad_cam-sgdrop.gif")) == 4


def test_rendering_is_deterministic(fake_run):
    from overfocus.render import RenderOptions, render_run

    opts = RenderOptions(methods=["grad_cam"], size=320)
    figures = fake_run / "figures"
    render_run(fake_run, opts)
    first = {p.name: p.read_bytes() for p in figures.iterdir() if p.suffix in (".png", ".gif")}
    mp4 = _mp4_frames(figures / "evolution_grad_cam.mp4")
    render_run(fake_run, opts)
    assert first == {p.name: p.read_bytes() for p in figures.iterdir() if p.suffix in (".png", ".gif")}
    assert all(np.array_equal(a, b) for a, b in zip(mp4, _mp4_frames(figures / "evolution_grad_cam.mp4")))
    assert not [p for p in figures.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_bad_options_are_one_line_errors(fake_run):
    from overfocus.render import RenderOptions, render_run

    for opts, pattern in ((RenderOptions(methods=["saliency"]), "not analysed"),
                          (RenderOptions(cmap="nope"), "unknown colormap"),
                          (RenderOptions(alpha=1.5), "outside"), (RenderOptions(size=641), "even"),
                          (RenderOptions(fps=0), "positive"), (RenderOptions(filmstrip_images=0), "--filmstrip")):
        with pytest.raises(OverfocusError, match=pattern):
            render_run(fake_run, opts)


def _cli(capsys, *args):
    """Run the CLI in-process (exit code, stdout, stderr); subprocesses would re-import torch each time."""
    from overfocus.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_without_analysis_exits_2_with_one_line(tmp_path, capsys):
    run = tmp_path / "bare"
    RunDir(run).write_manifest({"schema": 1, "status": "complete", "epochs": []})
    code, _, err = _cli(capsys, "render", str(run))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"overfocus analyze {run}" in lines[0] and "Traceback" not in err


def test_cli_render_writes_figures(fake_run, capsys):
    code, out, err = _cli(capsys, "render", str(fake_run), "--methods", "grad_cam", "--formats", "gif", "--size",
                          "320", "--filmstrip-epochs", "0,2")
    assert code == 0, err
    assert (fake_run / "figures" / "evolution_grad_cam.gif").is_file()
    assert "evolution_grad_cam.gif" in out


def test_cli_bad_format_and_missing_tensorboard_message(fake_run, capsys, monkeypatch):
    code, _, err = _cli(capsys, "render", str(fake_run), "--formats", "avi")
    assert code == 2 and "unknown video format 'avi'" in err
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, _, err = _cli(capsys, "tensorboard", str(fake_run))
    assert code == 2 and "pip install tensorboard" in err


def test_tensorboard_export(fake_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from overfocus.render.tensorboard import export

    logdir = export(fake_run, fake_run / "tb", size=320)
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("run/test_acc")] == [0, 1, 2, 3]
    assert [e.step for e in acc.Scalars("area_ratio/grad_cam")] == [0, 1, 2, 3]
    probe_ids = json.loads((fake_run / "analysis" / "analysis.json").read_text())["probe_ids"]
    assert f"overlay/grad_cam/{probe_ids[0]}" in tags["images"] and len(acc.Images(f"overlay/grad_cam/{probe_ids[0]}")) == 4
    export(fake_run, fake_run / "tb", size=320)  # a second export replaces the first instead of duplicating it
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
