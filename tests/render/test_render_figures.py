"""Paper-ready figures: metadata-driven labels, flat metrics as notes, ranges, legends, vector
formats, one GIF palette, labels that fit, the side-by-side filmstrip and the report's tiles."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from overfocus.errors import OverfocusError

from test_render import write_fake_run  # noqa: E402  (the contract-C fixture generator)

METHOD_INFO = {"grad_cam": {"title": "Grad-CAM", "yields_logits": True},
               "sgdrop": {"title": "SGDrop", "yields_logits": False}}


def _info(title, unit, lo, hi, kind="map"):
    return {"title": title, "unit": unit, "range": [lo, hi], "higher_is_better": None, "needs_boxes": False,
            "needs_human": False, "kind": kind}


METRIC_INFO = {"area_ratio": _info("attribution area ratio", "fraction of pixels > 0.5 of max", 0.0, 1.0),
               "hit": _info("hit ratio", "fraction of images", 0.0, 1.0),
               "energy_pg": _info("energy pointing game", "fraction of attribution in box", 0.0, 1.0),
               "correct": _info("accuracy on the analysed images", "fraction correct", 0.0, 1.0, "model"),
               "confidence": _info("confidence", "softmax probability", 0.0, 1.0, "model"),
               "coverage_global": _info("neuron coverage, all layers", "fraction of neurons", 0.0, 1.0, "model"),
               "coverage_global_cumulative": _info("cumulative neuron coverage", "fraction", 0.0, 1.0, "model")}


def with_metadata(run: Path) -> Path:
    """Add the analysis engineer's metadata keys to a fake run's analysis.json."""
    path = run / "analysis" / "analysis.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "method_info": METHOD_INFO, "metric_info": METRIC_INFO}))
    return run


def _grid(run: Path, methods=None):
    from overfocus.render.io import load_analysis
    from overfocus.render.meta import method_title, order_metrics
    from overfocus.render.plots import _series, metric_grid

    a = load_analysis(run)
    metrics = order_metrics(a.meta, {r["metric"] for r in a.summary})

    def series_of(metric):
        found = sorted({r["method"] for r in a.summary if r["metric"] == metric})
        return [(method_title(a.meta, m), _series(a.summary, metric, m)) for m in found
                if methods is None or m in methods or m == "model"]

    return metric_grid(series_of, metrics, "t", a.meta), metrics


def test_metric_grid_uses_metadata_titles_units_and_ranges(tmp_path):
    fig, metrics = _grid(with_metadata(write_fake_run(tmp_path / "r")))
    axes = fig.get_axes()
    titles = {ax.get_title(): ax for ax in axes}
    assert "attribution area ratio" in titles and titles["attribution area ratio"].get_ylabel().startswith("fraction")
    lo, hi = titles["attribution area ratio"].get_ylim()
    assert lo < 0.0 < 0.05 and 0.95 < 1.0 < hi < 1.05  # the whole [0, 1] range of a ratio, a small margin
    # the flat cumulative coverage (0.6 at every epoch) is a note, not a panel
    assert len(axes) == len(metrics) - 1 and "cumulative neuron coverage" not in titles
    note = fig._supxlabel.get_text()
    assert "constant over the epochs (not plotted): cumulative neuron coverage = 0.600" in note
    assert metrics[:3] == ["area_ratio", "hit", "energy_pg"]  # metric_info's order
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_labels == ["Grad-CAM", "SGDrop", "model"] and all(ax.get_legend() is None for ax in axes)


def test_metric_grid_falls_back_to_plain_names_for_older_analyses(tmp_path):
    fig, metrics = _grid(write_fake_run(tmp_path / "r"), methods=["grad_cam"])
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert "area ratio" in titles and "energy pg" in titles  # no table of names in render: plain names
    assert fig.get_axes()[0].get_ylabel() == "value"


def test_one_series_gets_no_legend(tmp_path):
    from overfocus.render.plots import metric_grid

    rows = [(e, 0.1 * e) for e in range(3)]

    def series_of(metric):
        return [("Grad-CAM", (np.array([e for e, _ in rows]), np.array([v for _, v in rows]),
                              np.array([v for _, v in rows]), np.array([v for _, v in rows])))]

    fig = metric_grid(series_of, ["area_ratio"], "t", {})
    assert not fig.legends and fig.get_axes()[0].get_legend() is None


def test_vector_formats_and_a_bad_format(tmp_path):
    from overfocus.render import RenderOptions, render_run

    run = write_fake_run(tmp_path / "r")
    res = render_run(run, RenderOptions(methods=["grad_cam"], formats=["gif"], size=320, plot_format="svg"))
    names = {p.name for p in res.written}
    assert {"gap.svg", "metrics.svg", "filmstrip_grad_cam.png"} <= names
    assert (run / "figures" / "metrics.svg").read_text().startswith("<?xml")
    with pytest.raises(OverfocusError, match="use --format png, pdf or svg"):
        render_run(run, RenderOptions(formats=["gif"], plot_format="jpeg"))


def _local_colour_tables(data: bytes) -> list:
    """Per image in a GIF file: whether it carries a local colour table (a palette of its own)."""
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    found = []
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # image descriptor: 9 bytes, optional local table, LZW code size, then sub-blocks
            packed = data[pos + 9]
            found.append(bool(packed & 0x80))
            pos += 10 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0) + 1
        while data[pos] != 0:
            pos += data[pos] + 1
        pos += 1
    return found


def test_gif_frames_share_one_palette(tmp_path):
    from PIL import Image

    from overfocus.render.encode import write_gif

    rng = np.random.default_rng(0)
    # two frames with different colours: a palette per frame would differ between them
    frames = [np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 32, 0).repeat(3, 2),
              rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)]
    assert _local_colour_tables(write_gif(frames, tmp_path / "x.gif", 2).read_bytes()) == [False, False]
    ims = [Image.fromarray(f) for f in frames]  # the check can fail: Pillow's default is a palette per frame
    ims[0].save(tmp_path / "y.gif", save_all=True, append_images=ims[1:])
    assert True in _local_colour_tables((tmp_path / "y.gif").read_bytes())


def test_predictions_fit_under_compare_panels_at_the_default_size():
    from overfocus.render.frames import compute_layout
    from overfocus.render.overlay import fit_caption, text_width

    layout = compute_layout(16, 2, 640, header_lines=6)
    for caption in ("triangle 100%", "airplane 100%", "automobile 99%"):
        lines, size = fit_caption(caption, layout.font, layout.panel_w, layout.caption_lines)
        assert "…" not in "".join(lines) and " ".join(lines) == caption
        assert all(text_width(line, size) <= layout.panel_w for line in lines)
    assert fit_caption("triangle 93%", 12, 60) == (["triangle", "93%"], 12)


def test_side_by_side_filmstrip_has_one_row_per_image(tmp_path):
    from overfocus.render.filmstrip import FilmGeometry, filmstrip
    from overfocus.render.frames import FrameStyle
    from overfocus.render.io import load_analysis

    a = load_analysis(with_metadata(write_fake_run(tmp_path / "r")))
    one = filmstrip(a, ["grad_cam"], [0, 3], [0, 1, 2], FrameStyle(), panel=96)
    two = filmstrip(a, ["grad_cam", "sgdrop"], [0, 3], [0, 1, 2], FrameStyle(), panel=96)
    g = FilmGeometry(96, 96, 2)
    # methods side by side inside each epoch: at most a title line more, not a row per image and method
    assert abs(two.shape[0] - one.shape[0]) <= g.line < g.row_h
    assert two.shape[1] > one.shape[1]


def test_report_tiles_are_large_with_a_colour_bar():
    from overfocus.render.report import TILE, example_panels, examples_section

    ex = SimpleNamespace(image=np.zeros((32, 32, 3), np.uint8), maps={"grad_cam": np.eye(32, dtype=np.float32)},
                         boxes=np.array([[2, 2, 20, 20]]), label=1, pred=1, conf=0.9, image_id="img_1", score=0.5)
    panels = example_panels(ex, ["grad_cam"], {"method_info": METHOD_INFO})
    assert TILE >= 256 and all(rgb.shape[1] >= 256 for _, rgb in panels)
    assert [cap for cap, _ in panels] == ["image", "Grad-CAM"]
    report = {"inputs": {"methods": ["grad_cam"], "has_boxes": True}, "examples": {}, "method_info": METHOD_INFO,
              "metric_info": METRIC_INFO}
    html = examples_section(SimpleNamespace(report=report, classes=["a", "b"]), "Best", [ex], "best by {score}")
    assert 'class="colorbar"' in html and "each map scaled to its own maximum" in html
    assert "best by energy pointing game" in html


def test_compare_table_titles_come_from_the_metadata(tmp_path):
    from overfocus.render.compare import CompareOptions, compare_runs

    a = with_metadata(write_fake_run(tmp_path / "a", epochs=(0, 1)))
    b = write_fake_run(tmp_path / "b", epochs=(0, 1), seed=1)  # an older analysis: the other run's titles serve
    compare_runs([a, b], CompareOptions(out=tmp_path / "c", formats=["gif"], size=320, metrics=["area_ratio"]))
    md = (tmp_path / "c" / "last_epoch.md").read_text()
    assert "| attribution area ratio |" in md and "# Runs at epoch 1 (Grad-CAM)" in md


# --- paper-ready figures (issue 24, item 7) --------------------------------------------------------

def without_boxes(run: Path) -> Path:
    """The fake run as if its data had no boxes (a folder of photos): every box row padding."""
    path = run / "analysis" / "probe" / "images.npz"
    with np.load(path) as z:
        arrays = dict(z)
    arrays["boxes"] = np.full_like(arrays["boxes"], -1.0)
    np.savez(path, **arrays)
    return run


def test_gap_interval_is_newcombes_published_example():
    from overfocus.render.plots import gap_interval

    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339
    lo, hi = gap_interval(np.array([56 / 70]), 70, np.array([48 / 80]), 80)
    assert round(float(lo[0]), 4) == 0.0524 and round(float(hi[0]), 4) == 0.3339


def _legend_texts(fig) -> list:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_gap_plot_has_a_chance_line_intervals_on_both_accuracies_and_a_negative_gap_apart():
    from matplotlib.collections import PolyCollection

    from overfocus.render.plots import gap_figure

    rows = [{"epoch": e, "train_acc": t, "test_acc": v} for e, (t, v) in enumerate([(.3, .4), (.6, .5), (.9, .6)])]
    fig = gap_figure(rows, "demo", chance=0.25, counts=(80, 120))
    ax = fig.get_axes()[0]
    labels = _legend_texts(fig)
    assert "chance (25%)" in labels and "95% interval (Wilson; train 80, test 120 images)" in labels
    chance = [line for line in ax.get_lines() if line.get_label() == "chance (25%)"]
    assert chance and np.allclose(chance[0].get_ydata(), 25)
    fills = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(fills) == 4  # two bands, the gap, the negative gap (epoch 0: test above train)
    gap = next(c for c in fills if c.get_label() == "generalization gap (train - test)")
    negative = next(c for c in fills if c.get_label() == "test above train (negative gap)")
    assert gap.get_hatch() and not negative.get_hatch()
    assert not np.allclose(gap.get_facecolor()[0][:3], negative.get_facecolor()[0][:3])
    # no counts, no bands: nothing pretends to know the sample
    fig = gap_figure(rows, "demo")
    assert not any("interval" in t for t in _legend_texts(fig)) and not any("chance" in t for t in _legend_texts(fig))


def test_compare_gap_plot_has_bands_per_run_and_a_chance_line():
    from matplotlib.collections import PolyCollection

    from overfocus.render.plots import compare_gap_figure

    acc = lambda t: [{"epoch": e, "train_acc": .5 + .1 * e, "test_acc": t + .05 * e} for e in range(3)]
    fig = compare_gap_figure({"a": acc(.4), "b": acc(.5)}, "gap", chance=0.1, counts={"a": (80, 80), "b": (80, 80)})
    acc_ax, gap_ax = fig.get_axes()
    assert [len([c for c in ax.collections if isinstance(c, PolyCollection)]) for ax in (acc_ax, gap_ax)] == [2, 2]
    assert "chance (10%)" in _legend_texts(fig) and "95% interval (80 images each)" in _legend_texts(fig)
    assert "Newcombe" in fig._supxlabel.get_text()
    # one colour per run, the same in both panels
    colour = {ax: {l.get_label(): l.get_color() for l in ax.get_lines()} for ax in (acc_ax, gap_ax)}
    assert colour[acc_ax]["a"] == colour[gap_ax]["a"] != colour[acc_ax]["b"] == colour[gap_ax]["b"]


def test_accuracy_counts_come_from_metrics_jsonl(tmp_path):
    from overfocus.render.io import load_analysis
    from overfocus.runs.rundir import RunDir

    run = write_fake_run(tmp_path / "r")
    a = load_analysis(run)
    assert a.accuracy_counts() == (8, 8)  # older runs: the analysed test split, whole
    rows = [{**r, "train_images": 500, "test_images": 96} for r in RunDir(run).read_metrics()]
    RunDir(run).write_metrics(rows)
    assert load_analysis(run).accuracy_counts() == (500, 96)


def test_side_by_side_video_panels_are_at_least_128_px_with_a_label_each(tmp_path):
    from overfocus.render.frames import (MIN_SIDE_PANEL, FrameStyle, compute_layout, evolution_frames,
                                         fitting_cells)
    from overfocus.render.io import load_analysis

    for per_cell, width in ((2, 320), (2, 640), (3, 640), (2, 1280), (4, 1920)):
        n = fitting_cells(per_cell, width, header_lines=5)
        lay = compute_layout(n, per_cell, width, header_lines=5)
        assert lay.panel_w >= MIN_SIDE_PANEL and lay.height <= width + lay.cell_h and lay.label_lines == 1
    with pytest.raises(OverfocusError, match="too small for 3 panels of at least 128 px side by side: use --size"):
        compute_layout(4, 3, 320)
    a = load_analysis(with_metadata(write_fake_run(tmp_path / "r")))
    frame = next(iter(evolution_frames(a, ["grad_cam", "sgdrop"], [0, 1], FrameStyle(width=640))))
    lay = compute_layout(2, 2, 640, header_lines=5)
    x, y = lay.origin(0)
    label_band = frame[y + lay.line_h:y + 2 * lay.line_h, x:x + lay.panel_w]
    assert (label_band < 200).any()  # the method's title is written over its panel


def test_empty_map_text_is_never_cut():
    from overfocus.render.overlay import EMPTY_MAP, empty_map_label, text_width

    for width in (40, 55, 96, 128, 256):
        lines, size = empty_map_label(width)
        assert " ".join(lines) == EMPTY_MAP and all(text_width(t, size, bold=True) <= width - 6 for t in lines)
    assert empty_map_label(128) == ([EMPTY_MAP], 14)  # one line at the side-by-side panel's least width


def test_legends_name_the_green_box_only_where_the_data_has_boxes(tmp_path):
    from overfocus.render.frames import epoch_header
    from overfocus.render.io import load_analysis

    boxed = load_analysis(write_fake_run(tmp_path / "a"))
    bare = load_analysis(without_boxes(write_fake_run(tmp_path / "b")))
    assert boxed.probe.has_boxes and not bare.probe.has_boxes
    assert any("green box" in line for line in epoch_header(boxed, 0, ["grad_cam"]))
    assert not any("green box" in line for line in epoch_header(bare, 0, ["grad_cam"]))


def test_filmstrip_rows_by_class_or_id(tmp_path):
    from overfocus.render.filmstrip import choose_rows
    from overfocus.render.io import load_analysis

    probe = load_analysis(write_fake_run(tmp_path / "r")).probe
    first = probe.classes[int(probe.labels[0])]
    rows = choose_rows(probe, [f"class:{first}", f"class:{first}", f"id:{probe.image_ids[3]}", probe.image_ids[5]],
                       "r")
    same = [i for i, label in enumerate(probe.labels) if int(label) == int(probe.labels[0])]
    assert rows[:2] == same[:2] and rows[2:] == [3, 5]
    with pytest.raises(OverfocusError, match="no class 'zebra'.*the classes: "):
        choose_rows(probe, ["class:zebra"], "r")
    with pytest.raises(OverfocusError, match="all already chosen"):
        choose_rows(probe, [f"class:{first}"] * (len(same) + 1), "r")
    with pytest.raises(OverfocusError, match="no probe image 'nope'"):
        choose_rows(probe, ["nope"], "r")


def test_confusion_matrix_and_per_class_accuracy_agree_with_sklearn():
    from sklearn.metrics import confusion_matrix as sk_confusion

    from overfocus.metrics.stats import confusion_matrix, per_class_accuracy

    rng = np.random.default_rng(3)
    labels, preds = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    ours = confusion_matrix(labels, preds, 4)
    assert (ours == sk_confusion(labels, preds, labels=range(4))).all()
    acc, images = per_class_accuracy(labels, preds, 5)  # a fifth class without images
    assert np.allclose(acc[:4], np.diag(ours) / ours.sum(axis=1)) and np.isnan(acc[4])
    assert images.tolist() == ours.sum(axis=1).tolist() + [0]
    # a prediction outside the data's classes (a model with more outputs) is not counted as any class
    assert confusion_matrix([0, 1], [7, 1], 2).tolist() == [[0, 0], [0, 1]]


def test_confusion_figure_labels_and_counts():
    from overfocus.render.plots import confusion_figure

    fig = confusion_figure([[3, 1], [0, 4]], ["cat", "dog"], "demo")
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "3", "4"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"


def test_report_classes_section_lists_the_weakest_class_first():
    from overfocus.render.report import classes_section

    report = {"inputs": {"images": 8}, "classes": {
        "per_class": [{"class": "cat", "images": 4, "accuracy": 0.75}, {"class": "dog", "images": 4, "accuracy": 0.5}],
        "confusion": [[3, 1], [2, 2]]}}
    html = classes_section(report)
    assert html.index(">dog<") < html.index(">cat<") and "50.0%" in html and "data:image/png;base64," in html
    assert classes_section({"inputs": {"images": 8}}) == ""


def _many_metrics_summary(run: Path) -> list:
    """The fake run's summary with more metrics than a paper figure holds, and a companion curve."""
    from overfocus.render.io import load_analysis

    rows = load_analysis(run).summary
    extra = []
    for r in rows:
        if r["metric"] == "area_ratio":
            for name, k in (("gini", 0.5), ("entropy", 3.0), ("box_iou", 0.7), ("area_ratio_nondegenerate", 1.2)):
                extra.append({**r, "metric": name, "mean": k * r["mean"], "ci_low": k * r["ci_low"],
                              "ci_high": k * r["ci_high"]})
    return rows + extra


def test_the_default_metrics_figure_is_a_paper_figure(tmp_path):
    from overfocus.render.io import load_analysis
    from overfocus.render.meta import order_metrics
    from overfocus.render.plots import (MAX_DEFAULT_PANELS, default_panels, metric_curves_figure,
                                        panel_metrics)

    run = with_metadata(write_fake_run(tmp_path / "r"))
    a = load_analysis(run)
    summary = _many_metrics_summary(run)
    available = panel_metrics(order_metrics(a.meta, {r["metric"] for r in summary}))
    assert len(available) > MAX_DEFAULT_PANELS
    onset = {"methods": {"grad_cam": {"peak_epoch": 1, "peak_area": 0.2}}}
    fig = metric_curves_figure(summary, default_panels(available), "r: metrics", methods=a.methods, meta=a.meta,
                               onset=onset)
    axes = fig.get_axes()
    assert len(axes) <= MAX_DEFAULT_PANELS
    colours, styles = {}, {}
    for ax in axes:
        assert not ax.texts  # no label over the curves: the legend says what each mark is
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_") or "onset" in label:
                continue
            base = label.removesuffix(" (non-empty maps)")
            assert colours.setdefault(base, line.get_color()) == line.get_color()  # one colour per method
            styles.setdefault(base, set()).add(line.get_linestyle())
    assert len(set(colours.values())) == len(colours)
    assert styles["Grad-CAM"] == {"-", "--"}  # all maps solid, non-empty maps dashed: one look per aggregate
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Grad-CAM (non-empty maps)" in labels and not any(".json" in t or ".csv" in t for t in labels)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # nothing clipped: every panel with its labels, the legend and the title lie inside the figure
    renderer, box = canvas.get_renderer(), fig.bbox
    for artist in [*axes, *fig.legends, fig._suptitle]:
        extent = artist.get_tightbbox(renderer) if hasattr(artist, "get_tightbbox") else artist.get_window_extent(renderer)
        assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1 and extent.y0 >= box.y0 - 1 and extent.y1 <= box.y1 + 1


def test_render_metrics_chooses_the_panels_in_order(tmp_path, capsys):
    from overfocus.cli import main

    run = with_metadata(write_fake_run(tmp_path / "r"))
    assert main(["render", str(run), "--methods", "grad_cam", "--formats", "gif", "--size", "320", "--no-explorer",
                 "--metrics", "hit,area_ratio"]) == 0
    capsys.readouterr()
    assert (run / "figures" / "metrics.png").is_file()
    assert main(["render", str(run), "--formats", "gif", "--size", "320", "--metrics", "aera_ratio"]) == 2
    assert "did you mean 'area_ratio'" in capsys.readouterr().err


def test_render_side_by_side_shows_what_fits_and_filmstrip_rows_by_class(tmp_path, capsys):
    import imageio.v3 as iio

    from overfocus.cli import main
    from overfocus.render.frames import EPOCH_HEADER_LINES, compute_layout, fitting_cells
    from overfocus.render.io import load_analysis

    run = with_metadata(write_fake_run(tmp_path / "r"))
    assert main(["render", str(run), "--side-by-side", "--formats", "gif", "--size", "640", "--no-explorer"]) == 0
    frame = next(iter(iio.imiter(run / "figures" / "evolution_grad_cam-sgdrop.gif", plugin="pillow", mode="RGB")))
    n = fitting_cells(2, 640, 1.0, EPOCH_HEADER_LINES)
    lay = compute_layout(n, 2, 640, 1.0, EPOCH_HEADER_LINES)
    assert n < len(load_analysis(run).probe) and frame.shape[:2] == (lay.height, 640) and lay.panel_w >= 128
    probe = load_analysis(run).probe
    first, other = probe.classes[int(probe.labels[0])], probe.classes[int(probe.labels[1])]
    assert main(["render", str(run), "--methods", "grad_cam", "--formats", "gif", "--size", "320", "--no-explorer",
                 "--filmstrip-rows", f"class:{other},class:{first},class:{other}"]) == 0
    three = iio.imread(run / "figures" / "filmstrip_grad_cam.png")
    assert main(["render", str(run), "--methods", "grad_cam", "--formats", "gif", "--size", "320", "--no-explorer",
                 "--filmstrip-images", "2"]) == 0
    two = iio.imread(run / "figures" / "filmstrip_grad_cam.png")
    assert three.shape[0] > two.shape[0]
    capsys.readouterr()
    assert main(["render", str(run), "--formats", "gif", "--size", "320", "--filmstrip-rows", "class:zebra"]) == 2
    assert "no class 'zebra'" in capsys.readouterr().err


def test_too_narrow_side_by_side_is_refused_before_anything_is_written(tmp_path, capsys):
    from overfocus.cli import main

    a, b = write_fake_run(tmp_path / "a"), write_fake_run(tmp_path / "b", seed=1)
    assert main(["compare", str(a), str(b), "--formats", "gif", "--size", "200", "--out", str(tmp_path / "c")]) == 2
    assert "use --size 270 or more" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main(["render", str(a), "--side-by-side", "--formats", "gif", "--size", "200"]) == 2
    assert "use --size" in capsys.readouterr().err and not (a / "figures").exists()


def test_compare_markdown_table_has_a_paper_s_columns_and_the_csv_all(tmp_path):
    import csv as csv_module

    from overfocus.render.compare import CompareOptions, compare_runs

    a = with_metadata(write_fake_run(tmp_path / "a", epochs=(0, 1)))
    b = with_metadata(write_fake_run(tmp_path / "b", epochs=(0, 1), seed=1))
    compare_runs([a, b], CompareOptions(out=tmp_path / "c", formats=["gif"], size=320, explorer=False))
    md = (tmp_path / "c" / "last_epoch.md").read_text().splitlines()
    head = next(line for line in md if line.startswith("| run |"))
    cells = [c.strip() for c in head.strip("|").split("|")]
    assert 8 <= len(cells) <= 10 and cells[:3] == ["run", "test acc", "gap (pts)"]
    assert cells[3] == "attribution area ratio"  # the paper's first metric column
    with open(tmp_path / "c" / "last_epoch.csv", newline="") as fh:
        columns = next(csv_module.reader(fh))
    assert {"train_acc", "hit_ci_low", "coverage_global_cumulative"} <= set(columns) and len(columns) > len(cells)


def test_the_metrics_figure_says_where_the_onset_search_started(tmp_path):
    from overfocus.render.io import load_analysis
    from overfocus.render.plots import metric_curves_figure

    a = load_analysis(with_metadata(write_fake_run(tmp_path / "r")))
    onset = {"methods": {"grad_cam": {"peak_epoch": 3, "peak_area": 0.1, "search_from": 3,
                                      "search_reason": "the model is at chance level before epoch 3"}}}
    fig = metric_curves_figure(a.summary, ["area_ratio", "hit"], "r", methods=["grad_cam"], meta=a.meta, onset=onset)
    assert ("onset peak (star) searched from epoch 3: the model is at chance level before epoch 3"
            in fig._supxlabel.get_text().replace("\n", " "))
    fig = metric_curves_figure(a.summary, ["hit"], "r", methods=["grad_cam"], meta=a.meta, onset=onset)
    assert fig._supxlabel is None or "onset" not in fig._supxlabel.get_text()  # no star drawn, no note


def test_the_builtin_probe_set_takes_the_classes_in_turn():
    from overfocus.data import dataset_labels, open_dataset
    from overfocus.data.splits import readable_probe_indices

    test = open_dataset("builtin?classes=3&train=8&test=96", "test", 32)
    labels = dataset_labels(test)
    assert labels == [test[i]["label"] for i in range(len(test))]  # drawn without the images, the same labels
    first = [labels[i] for i in readable_probe_indices(test, 16)[:6]]
    assert sorted(first[:3]) == [0, 1, 2] and sorted(first[3:6]) == [0, 1, 2]


def test_compare_metrics_figure_holds_at_most_six_panels_unless_asked(tmp_path, monkeypatch):
    import overfocus.render.plots as plots
    from overfocus.render.compare import CompareOptions, compare_runs

    drawn = []
    real = plots.plot_compare_metrics
    monkeypatch.setattr(plots, "plot_compare_metrics", lambda runs, out, metrics, *a, **k: (
        drawn.append(list(metrics)), real(runs, out, metrics, *a, **k))[1])
    a, b = write_fake_run(tmp_path / "a", epochs=(0, 1)), write_fake_run(tmp_path / "b", epochs=(0, 1), seed=1)
    compare_runs([a, b], CompareOptions(out=tmp_path / "c", formats=["gif"], size=320, explorer=False))
    compare_runs([a, b], CompareOptions(out=tmp_path / "d", formats=["gif"], size=320, explorer=False,
                                        metrics=["hit", "area_ratio"]))
    assert len(drawn[0]) == plots.MAX_DEFAULT_PANELS and drawn[1] == ["hit", "area_ratio"]


def test_no_mark_or_curve_hides_another(tmp_path):
    """Methods faithful from the same epoch share one labelled line; a non-empty-maps curve equal to
    its all-maps curve is not drawn under it; each onset star has its method's colour, unclipped."""
    from overfocus.render.io import load_analysis
    from overfocus.render.plots import metric_curves_figure

    a = load_analysis(with_metadata(write_fake_run(tmp_path / "r")))
    summary = a.summary + [{**r, "metric": "area_ratio_nondegenerate"} for r in a.summary if r["metric"] == "area_ratio"]
    onset = {"methods": {m: {"faithful_from": 1, "peak_epoch": 3, "peak_area": 0.1} for m in ("grad_cam", "sgdrop")}}
    fig = metric_curves_figure(summary, ["area_ratio"], "r", methods=a.methods, meta=a.meta, onset=onset)
    ax = fig.get_axes()[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels.count("Grad-CAM, SGDrop: maps faithful from epoch 1") == 1
    assert not any("non-empty maps" in label for label in labels)  # identical to the all-maps curves
    curves = {line.get_label(): line.get_color() for line in ax.get_lines()}
    stars = [line for line in ax.get_lines() if line.get_label() == "widest attention (onset peak)"]
    assert sorted(s.get_markerfacecolor() for s in stars) == sorted([curves["Grad-CAM"], curves["SGDrop"]])
    assert not any(s.get_clip_on() for s in stars)
