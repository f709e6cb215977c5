"""Render shows the degenerate maps (frame headers, curves) and the overfocus onset (curves)."""
from __future__ import annotations

import csv
import json

import pytest
from test_render import write_fake_run

from overfocus.errors import OverfocusError


def _add_degenerate_rows(run, empty: dict) -> None:
    """Append degenerate counts and a non-degenerate area ratio to the fake run's summary.csv."""
    path = run / "analysis" / "summary.csv"
    rows = list(csv.DictReader(path.open()))
    extra = []
    for r in rows:
        if r["metric"] == "area_ratio":
            count = empty.get((int(r["epoch"]), r["method"]), 0)
            n = int(r["n"])
            extra.append({**r, "metric": "degenerate_count", "mean": str(count), "ci_low": str(count),
                          "ci_high": str(count)})
            extra.append({**r, "metric": "degenerate", "mean": str(count / n), "ci_low": "0", "ci_high": "1"})
            extra.append({**r, "metric": "area_ratio_nondegenerate", "mean": str(float(r["mean"]) * n / (n - count)),
                          "ci_low": r["ci_low"], "ci_high": r["ci_high"], "n": str(n - count)})
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows + extra)


def test_frame_header_says_how_many_maps_are_empty(tmp_path):
    from overfocus.render.frames import epoch_header
    from overfocus.render.io import load_analysis

    run = write_fake_run(tmp_path / "run")
    old = load_analysis(run)
    assert "empty" not in epoch_header(old, 2, ["grad_cam"])[2]  # an analysis without the count: unchanged
    _add_degenerate_rows(run, {(2, "grad_cam"): 3})
    analysis = load_analysis(run)
    line = epoch_header(analysis, 2, ["grad_cam", "sgdrop"])[2]
    n = analysis.empty_maps(2, "grad_cam")[1]
    assert f"(3/{n} empty)" in line and f"(0/{n} empty)" in line


def test_curves_draw_the_nondegenerate_companion_and_mark_the_onset(tmp_path, monkeypatch):
    from overfocus.render import RenderOptions, render_run, plots

    run = write_fake_run(tmp_path / "run")
    _add_degenerate_rows(run, {(0, "grad_cam"): 4, (1, "grad_cam"): 2})
    onset = {"schema": 1, "measure": "area_ratio_nondegenerate", "epochs": [0, 1, 2, 3],
             "methods": {"grad_cam": {"peak_epoch": 1, "peak_area": 0.3}}}
    (run / "analysis" / "onset.json").write_text(json.dumps(onset))
    figures = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: figures.append(fig) or real_save(fig, out))
    render_run(run, RenderOptions(formats=["gif"], size=320, filmstrip_epochs=[0, 3]))
    grid = next(f for f in figures if any(ax.get_title() == "area ratio" for ax in f.axes))
    titles = [ax.get_title() for ax in grid.axes]
    assert "degenerate" in titles  # the share has its panel
    assert not any("nondegenerate" in t or "degenerate count" in t for t in titles)  # drawn inside their panel
    area = next(ax for ax in grid.axes if ax.get_title() == "area ratio")
    labels = [line.get_label() for line in area.get_lines()]
    assert "grad cam (non-empty maps)" in labels and "widest attention (onset peak)" in labels
    assert not any(".json" in label for label in labels) and not area.texts  # no file names, no text over curves
    looks = {line.get_label(): (line.get_color(), line.get_linestyle()) for line in area.get_lines()}
    assert looks["grad cam"][0] == looks["grad cam (non-empty maps)"][0]  # one colour per method,
    assert (looks["grad cam"][1], looks["grad cam (non-empty maps)"][1]) == ("-", "--")  # a style per aggregate
    assert looks["grad cam"][0] != looks["sgdrop"][0]
    star = next(line for line in area.get_lines() if line.get_label() == "widest attention (onset peak)")
    assert list(star.get_xdata()) == [1] and list(star.get_ydata()) == [0.3]


def test_default_metrics_figure_has_at_most_six_panels_and_render_metrics_chooses(tmp_path, monkeypatch):
    from overfocus.render import RenderOptions, render_run, plots

    run = write_fake_run(tmp_path / "run")
    figures = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: figures.append((fig, out)) or real_save(fig, out))
    render_run(run, RenderOptions(formats=["gif"], size=320, filmstrip_epochs=[0, 3]))
    grid = next(f for f, out in figures if out.name == "metrics.png")
    assert 1 <= len([ax for ax in grid.axes if ax.get_title()]) <= 6
    figures.clear()
    render_run(run, RenderOptions(formats=["gif"], size=320, filmstrip_epochs=[0, 3], metrics=["hit", "area_ratio"]))
    grid = next(f for f, out in figures if out.name == "metrics.png")
    assert [ax.get_title() for ax in grid.axes] == ["hit", "area ratio"]
    with pytest.raises(OverfocusError, match=r"--metrics 'area_ration' is not in the analysis of .* \(did you mean 'area_ratio'"):
        render_run(run, RenderOptions(formats=["gif"], metrics=["area_ration"]))
