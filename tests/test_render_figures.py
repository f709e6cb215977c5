"""Paper-ready figures: metadata-driven labels, flat metrics as notes, ranges, legends, vector
formats, one GIF palette, labels that fit, the side-by-side filmstrip and the report's tiles."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from overfocus.errors import OverfocusError

sys.path.insert(0, str(Path(__file__).resolve().parent))
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
