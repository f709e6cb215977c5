"""Render shows the degenerate maps (frame headers, curves) and the overfocus onset (curves)."""
from __future__ import annotations

import csv
import json

from test_render import write_fake_run


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
    assert "grad cam (non-degenerate maps)" in labels and "widest attention (onset.json)" in labels
    star = next(line for line in area.get_lines() if line.get_label() == "widest attention (onset.json)")
    assert list(star.get_xdata()) == [1] and list(star.get_ydata()) == [0.3]
