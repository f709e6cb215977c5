"""The run explorer: ONE offline HTML page to scrub the epochs of one or several analysed runs.

One epoch slider (mouse, arrow keys, play) moves every probe image of every run and method at
once; layouts: runs x methods per probe image, one run's methods side by side, or run A minus
run B. Beside them the metric curves with their 95% bands, a cursor at the slider's epoch, the
overfocus onset and the Pareto-optimal epochs of `overfocus select` marked; a panel per image
(class, box, prediction and confidence at the epoch, its own area ratio over epochs); filters by
class and by correct / wrong prediction; the frame headers of the videos and a colour bar.

Everything is inside the file (script, styles, images as data URIs) and a Content-Security-Policy
forbids every network fetch, so it opens from file:// with no server. The maps travel as one
grayscale PNG per run, method and probe image (the epochs stacked), coloured in the browser with
the same lookup table and blend as `overlay.overlay_map`; the headers are `frames.epoch_header`'s,
the alignment of several runs is `compare`'s, titles and units come from analysis.json (`meta.py`).

Example:
    >>> explore(["runs/demo"])                                        # doctest: +SKIP
    PosixPath('runs/demo/figures/explorer.html')
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..analysis.select import read_select, select_run
from ..analysis.storage import iter_record_file, records_path
from ..errors import OverfocusError
from ..fileio import atomic_write_text
from .compare import align_images, check_same_probes, common_epochs, run_labels
from .frames import check_methods, epoch_header
from .io import Analysis, load_analysis, select_methods
from .meta import merged_info, method_title, metric_info, order_metrics
from .overlay import COLORBAR_LABEL, NORMALISATION_NOTE, colormap_lut, resize
from .plots import NONDEGENERATE, is_flat
from .report import png_data_uri

EXPLORER_FILE = "explorer.html"
DIFF_CMAP = "RdBu_r"  # diverging: blue = run B attends more, red = run A attends more, white = equal
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
RUN_CURVES = ("test_acc", "gap")  # metrics.jsonl numbers plotted beside the summary's
SKIPPED_CURVES = ("degenerate_count",)  # the count behind the `degenerate` share, shown in the headers


@dataclass
class ExploreOptions:
    """Options of `overfocus explore` (defaults = the command's defaults)."""

    methods: Optional[List[str]] = None   # default: every method analysed in every run
    labels: Optional[List[str]] = None    # default: the run folder names
    out: Optional[Path] = None            # default: RUN/figures/explorer.html, or compare_<A>_vs_<B>/
    alpha: float = 0.5                    # opacity of the map over the image
    cmap: str = "inferno"
    probes: Optional[int] = None          # first N probe images (default all)
    map_size: int = 128                   # largest side of a stored map or image, pixels
    panel: int = 144                      # display width of one panel, CSS pixels


def explore(run_dirs: Sequence[Path | str], options: Optional[ExploreOptions] = None) -> Path:
    """Write the explorer page of one or several analysed runs; return its path."""
    opts = options or ExploreOptions()
    _check_options(opts)
    if not run_dirs:
        raise OverfocusError("explore needs at least one analysed run directory: overfocus explore RUN")
    out = Path(opts.out) if opts.out else default_out(run_dirs, run_labels(run_dirs, opts.labels))
    if out.is_dir():
        out = out / EXPLORER_FILE
    if out.suffix.lower() not in (".html", ".htm"):
        raise OverfocusError(f"--out {out} is not an .html file: name the page, e.g. --out explorer.html")
    atomic_write_text(out, page_html(build_page(run_dirs, opts)))
    return out


def default_out(run_dirs: Sequence[Path | str], labels: Sequence[str]) -> Path:
    """RUN/figures/explorer.html for one run; beside compare's outputs for several."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0]) / "figures" / EXPLORER_FILE
    return Path(run_dirs[0]).parent / f"compare_{'_vs_'.join(labels)}" / EXPLORER_FILE


def _check_options(opts: ExploreOptions) -> None:
    if not 0.0 <= opts.alpha <= 1.0:
        raise OverfocusError(f"--alpha {opts.alpha} is outside [0, 1]: use e.g. --alpha 0.5")
    if opts.map_size < 8:
        raise OverfocusError(f"--map-size {opts.map_size} is too small: use 8 or more (default 128)")
    if opts.probes is not None and opts.probes < 1:
        raise OverfocusError(f"--probes {opts.probes} must be at least 1")
    colormap_lut(opts.cmap)  # an unknown colormap: one line now, not after the work


# ---- what the page shows ------------------------------------------------------------------------
@dataclass
class Aligned:
    """The runs, their probe images in one order, the epochs shown and what was aligned."""

    runs: Dict[str, Analysis]
    order: Dict[str, List[int]]     # per run, its probe index of each shown image
    epochs: List[int]
    note: str                       # the alignment stated on the page ('' for one run)


def align_runs(run_dirs: Sequence[Path | str], labels: Optional[Sequence[str]]) -> Aligned:
    """One run as it is; several through compare's alignment (common probe ids and epochs, means
    over the analysed images common to all runs)."""
    names = run_labels(run_dirs, labels)
    runs = {name: load_analysis(r) for name, r in zip(names, run_dirs)}
    if len(runs) == 1:
        a = next(iter(runs.values()))
        return Aligned(runs, {names[0]: list(range(len(a.probe)))}, list(a.epochs), "")
    order = check_same_probes(runs)
    epochs = common_epochs(runs)
    align = align_images(runs, epochs[-1])
    sizes = ", ".join(f"{label} {len(a.probe)}" for label, a in runs.items())
    note = (f"aligned: epochs {epochs[0]}-{epochs[-1]} common to all runs ({len(epochs)}; last common epoch "
            f"{epochs[-1]}), {len(order[names[0]])} probe image ids common to all runs (of {sizes}); curves are "
            f"means over the {align.n_images} analysed images common to all runs"
            + (" (recomputed from the records)" if align.recomputed else " (every run analysed the same images)"))
    return Aligned(runs, order, epochs, note)


def shown_methods(runs: Dict[str, Analysis], requested: Optional[Sequence[str]]) -> List[str]:
    """The requested methods (each analysed in every run) or every method common to all runs."""
    first = next(iter(runs.values()))
    if requested:
        for a in runs.values():
            select_methods(a.methods, requested, a.run_dir)
        return list(requested)
    common = [m for m in first.methods if all(m in a.methods for a in runs.values())]
    if not common:
        raise OverfocusError(f"no attribution method was analysed in every run ({', '.join(runs)}): analyse "
                             "them with the same --methods")
    return common


def build_page(run_dirs: Sequence[Path | str], opts: ExploreOptions) -> Dict[str, Any]:
    """Everything the page's script reads (JSON-ready), images as data URIs."""
    aligned = align_runs(run_dirs, opts.labels)
    runs, first_label = aligned.runs, next(iter(aligned.runs))
    methods = shown_methods(runs, opts.methods)
    count = len(aligned.order[first_label])
    shown = list(range(min(count, opts.probes or count)))
    meta = merged_info(a.meta for a in runs.values())
    maps = {label: _run_maps(a, aligned.order[label], shown, aligned.epochs, methods, opts.map_size)
            for label, a in runs.items()}
    return {
        "title": f"overfocus explorer: {' vs '.join(runs)}",
        "labels": list(runs),
        "epochs": aligned.epochs,
        "alignment": aligned.note,
        "methods": [{"name": m, "title": method_title(meta, m)} for m in methods],
        "probes": _probes(runs[first_label], [aligned.order[first_label][i] for i in shown], opts.map_size),
        "runs": [_run_entry(label, a, aligned.epochs, methods, maps[label]) for label, a in runs.items()],
        "curves": curves(runs, methods, aligned.epochs, meta),
        "image_curves": _image_curves(runs, aligned.order, shown, aligned.epochs, methods),
        "image_metric": metric_info(meta, IMAGE_METRIC).title,
        "lut": colormap_lut(opts.cmap).ravel().tolist(),
        "diff_lut": colormap_lut(DIFF_CMAP).ravel().tolist(),
        "cmap": opts.cmap, "alpha": opts.alpha, "panel": opts.panel,
        "notes": {"colorbar": COLORBAR_LABEL, "normalisation": NORMALISATION_NOTE,
                  "legend": ("green box: object; " if runs[first_label].probe.has_boxes else "")
                  + "under each map: the prediction (green right, red wrong)",
                  "diff": "difference of the [0, 1] maps: red = run A attends more, blue = run B attends more"},
    }


def _fit(h: int, w: int, limit: int) -> tuple:
    scale = min(1.0, limit / max(h, w))
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def gray_png_uri(values: np.ndarray) -> str:
    """A 2-D uint8 array as a grayscale PNG data URI (no colour profile, so browsers keep the values).

    Example:
        >>> gray_png_uri(np.zeros((2, 3), np.uint8))[:22]
        'data:image/png;base64,'
    """
    import cv2

    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(values, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise OverfocusError("could not encode a map as PNG for the explorer")
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def _probes(a: Analysis, indices: Sequence[int], limit: int) -> List[Dict[str, Any]]:
    probe, out = a.probe, []
    h, w = probe.images.shape[1:3]
    th, tw = _fit(h, w, 2 * limit)  # the photo may be sharper than the (smooth) maps
    for j in indices:
        boxes = [[float(x0) / w, float(y0) / h, float(x1) / w, float(y1) / h] for x0, y0, x1, y1 in probe.boxes_of(j)]
        out.append({"id": probe.image_ids[j], "label": int(probe.labels[j]), "class": probe.class_name(int(probe.labels[j])),
                    "boxes": boxes, "boxes_px": [[round(float(v), 1) for v in b] for b in probe.boxes_of(j)],
                    "size": [int(w), int(h)], "image": png_data_uri(resize(probe.images[j], tw, th))})
    return out


def _run_maps(a: Analysis, order: Sequence[int], shown: Sequence[int], epochs: Sequence[int],
              methods: Sequence[str], limit: int) -> Dict[str, Any]:
    """Per method and shown image one sprite (the epochs stacked downwards), and per epoch the
    predictions, confidences and empty-map flags."""
    stacks: Dict[str, List[List[np.ndarray]]] = {m: [[] for _ in shown] for m in methods}
    pred, conf, empty = [], [], {m: [] for m in methods}
    for epoch in epochs:
        maps = a.load_epoch(epoch)
        check_methods(maps, methods, a)
        rows = [order[i] for i in shown]
        pred.append([int(maps.pred[j]) for j in rows])
        conf.append([round(float(maps.conf[j]), 4) for j in rows])
        for m in methods:
            empty[m].append([bool(not maps.maps[m][j].max() > 0) for j in rows])
            for k, j in enumerate(rows):
                stacks[m][k].append(maps.maps[m][j])
    h, w = next(iter(stacks.values()))[0][0].shape
    mh, mw = _fit(h, w, limit)
    sprites = {m: [gray_png_uri(np.concatenate([np.round(resize(x, mw, mh).clip(0, 1) * 255).astype(np.uint8)
                                                for x in per_image])) for per_image in stacks[m]] for m in methods}
    return {"sprites": sprites, "map_size": [mw, mh], "pred": pred, "conf": conf, "empty": empty}


def _run_entry(label: str, a: Analysis, epochs: Sequence[int], methods: Sequence[str],
               maps: Dict[str, Any]) -> Dict[str, Any]:
    onset = {m: (a.onset or {}).get("methods", {}).get(m, {}).get("peak_epoch") for m in methods}
    return {"label": label, "name": a.name, "classes": a.probe.classes,
            "headers": [epoch_header(a, e, methods)[:3] for e in epochs],
            "onset": {m: e for m, e in onset.items() if e is not None},
            "onset_measure": (a.onset or {}).get("measure"),
            "select": _selection(a), **maps}


def _selection(a: Analysis) -> Optional[Dict[str, Any]]:
    """The run's Pareto-optimal epochs: select.json when `overfocus select` wrote one, else the front
    over the default objectives (None when the run lacks them)."""
    result = read_select(a.run_dir)
    if result is None:
        try:
            result = select_run(a.run_dir, pick="knee")
        except OverfocusError:
            return None
    return {"epochs": [r["epoch"] for r in result.get("front", [])],
            "objectives": [o.get("title") or o.get("name") for o in result.get("objectives", [])],
            "method": result.get("method"), "knee": (result.get("pick") or {}).get("epoch")}


# ---- curves ---------------------------------------------------------------------------------------
IMAGE_METRIC = "area_ratio"  # each image's own curve in its panel (the frame headers' number)


def _num(v: Any) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 6) if math.isfinite(f) else None


def curves(runs: Dict[str, Analysis], methods: Sequence[str], epochs: Sequence[int], meta: Dict) -> List[Dict]:
    """One panel per metric that varies: a series per run and method (per run for model numbers),
    mean and 95% band per epoch; metrics.jsonl's test accuracy and gap after them. Metrics come
    from the summaries as they are (faithfulness or any new metric appears when present)."""
    wanted = set(epochs)
    names = {r["metric"] for a in runs.values() for r in a.summary if r["method"] in (*methods, "model")}
    # in view: the map metrics over all maps, and the onset's measure (the non-degenerate area ratio);
    # the other non-degenerate variants and the model-level numbers one click away
    measures = {(a.onset or {}).get("measure") for a in runs.values()}
    panels = []
    for metric in order_metrics(meta, names):
        if metric in SKIPPED_CURVES:
            continue
        series = []
        for k, (label, a) in enumerate(runs.items()):
            for method in (*methods, "model"):
                rows = sorted((r for r in a.summary if r["metric"] == metric and r["method"] == method
                               and r["epoch"] in wanted), key=lambda r: r["epoch"])
                if rows:
                    series.append({"run": k, "method": method, "epochs": [r["epoch"] for r in rows],
                                   "mean": [_num(r["mean"]) for r in rows], "lo": [_num(r["ci_low"]) for r in rows],
                                   "hi": [_num(r["ci_high"]) for r in rows]})
        if series and not is_flat([np.array([np.nan if v is None else v for v in s["mean"]]) for s in series]):
            hidden = metric.endswith(NONDEGENERATE) and metric not in measures
            panels.append(_panel(metric, meta, series, group="other" if hidden else None))
    for metric in RUN_CURVES:
        series = []
        for k, a in enumerate(runs.values()):
            rows = sorted((r for r in a.metrics if r.get("epoch") in wanted and _num(r.get(metric)) is not None),
                          key=lambda r: r["epoch"])
            if rows:
                series.append({"run": k, "method": "run", "epochs": [r["epoch"] for r in rows],
                               "mean": [_num(r[metric]) for r in rows], "lo": None, "hi": None})
        if series:
            panels.append(_panel(metric, meta, series, group="main"))
    return panels


def _panel(metric: str, meta: Dict, series: List[Dict], group: Optional[str] = None) -> Dict[str, Any]:
    info = metric_info(meta, metric)
    kind = info.kind or ("model" if all(s["method"] == "model" for s in series) else "map")
    return {"metric": metric, "title": info.title, "unit": info.unit, "range": list(info.range),
            "group": group or ("main" if kind == "map" else "other"), "series": series}


def _image_curves(runs: Dict[str, Analysis], order: Dict[str, List[int]], shown: Sequence[int],
                  epochs: Sequence[int], methods: Sequence[str]) -> List[List[Dict[str, List]]]:
    """Per run, per method: each shown image's own area ratio per epoch (from the records)."""
    out = []
    for label, a in runs.items():
        ids = {a.probe.image_ids[order[label][i]]: k for k, i in enumerate(shown)}
        values = {m: [[None] * len(epochs) for _ in shown] for m in methods}
        for t, epoch in enumerate(epochs):
            path = records_path(a.run_dir / "analysis", epoch)
            if not path.is_file():
                continue
            for r in iter_record_file(path):
                k = ids.get(r["image_id"])
                if k is not None and r["metric"] == IMAGE_METRIC and r["method"] in values:
                    values[r["method"]][k][t] = _num(r["value"])
        out.append(values)
    return out


# ---- the page -------------------------------------------------------------------------------------
def _asset(name: str) -> str:
    return resources.files("overfocus.render").joinpath("assets", name).read_text(encoding="utf-8")


def page_html(page: Dict[str, Any]) -> str:
    """The HTML document: inline styles, the page's data as JSON, inline script."""
    data = json.dumps(page, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = html.escape(page["title"])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title}</title>\n'
            f'<style>{_asset("explore.css")}</style></head>\n<body>\n{_asset("explore.html")}\n'
            f'<script type="application/json" id="explorer-data">{data}</script>\n'
            f'<script>{_asset("explore.js")}</script>\n</body></html>\n')
