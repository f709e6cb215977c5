"""Print-ready plots (PNG): generalization gap, metric curves with confidence bands, comparisons.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas directly, never pyplot, so
no display is needed and no global state leaks between calls; PNG bytes are written atomically.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError
from ..fileio import atomic_write_bytes
from .io import method_name

# metric -> (title, y-axis label with unit)
METRIC_INFO: Dict[str, Tuple[str, str]] = {
    "area_ratio": ("attribution area ratio", "fraction of pixels > 0.5 of max"),
    "box_iou": ("box IoU of thresholded map", "IoU (0-1)"),
    "hit": ("hit ratio (IoU >= 0.5)", "fraction of images"),
    "pointing_game": ("pointing game (pooled)", "fraction of images"),
    "pointing_game_per_class": ("pointing game (per-class mean)", "fraction of images"),
    "energy_pg": ("energy pointing game", "fraction of attribution in box"),
    "harmonization": ("harmonization (Spearman / ceiling)", "score"),
    "gini": ("Gini index of the map", "Gini (0-1)"),
    "entropy": ("entropy of the map", "entropy"),
    "correct": ("accuracy on the analysed images", "fraction correct"),
    "confidence": ("confidence of the prediction", "softmax probability"),
    "coverage_global": ("neuron coverage, all layers (per image)", "fraction of neurons"),
    "coverage_latent": ("neuron coverage, latent layer (per image)", "fraction of neurons"),
    "coverage_global_cumulative": ("neuron coverage, all layers (cumulative)", "fraction of neurons"),
    "coverage_latent_cumulative": ("neuron coverage, latent layer (cumulative)", "fraction of neurons"),
}
METRIC_ORDER = list(METRIC_INFO)
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


def metric_info(metric: str) -> Tuple[str, str]:
    return METRIC_INFO.get(metric, (metric.replace("_", " "), "value"))


def order_metrics(names: Sequence[str]) -> List[str]:
    """Known metrics in a fixed reading order, unknown ones after them alphabetically."""
    names = list(dict.fromkeys(names))
    known = [m for m in METRIC_ORDER if m in names]
    return known + sorted(m for m in names if m not in METRIC_INFO)


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def save_figure(fig, out_png: Path) -> Path:
    """Render a Figure to PNG bytes and write them atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    atomic_write_bytes(Path(out_png), buffer.getvalue())
    return Path(out_png)


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)


def _f(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _acc_series(rows: Sequence[Mapping]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = sorted((r for r in rows if "epoch" in r), key=lambda r: int(r["epoch"]))
    epochs = np.array([int(r["epoch"]) for r in rows])
    return epochs, np.array([_f(r.get("train_acc")) for r in rows]), np.array([_f(r.get("test_acc")) for r in rows])


def plot_gap(metrics_rows: List[dict], out_png: Path, title: str) -> Path:
    """Train and test accuracy per epoch with the generalization gap shaded between them.

    Args:
        metrics_rows: metrics.jsonl lines (epoch, train_acc, test_acc).
        out_png: PNG to write.
        title: figure title (name the run).

    Example:
        >>> rows = [{"epoch": 0, "train_acc": .2, "test_acc": .2}, {"epoch": 1, "train_acc": .9, "test_acc": .7}]
        >>> plot_gap(rows, Path("/tmp/gap.png"), "demo").name                   # doctest: +SKIP
        'gap.png'
    """
    epochs, train, test = _acc_series(metrics_rows)
    if not len(epochs) or np.isnan(train).all() or np.isnan(test).all():
        raise OverfocusError("no train/test accuracy to plot: metrics.jsonl is empty or lacks train_acc/test_acc")
    fig = _new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    ax.plot(epochs, 100 * train, "o-", color="#1f77b4", label="train accuracy (eval mode, fixed subset)")
    ax.plot(epochs, 100 * test, "s--", color="#d62728", label="test accuracy")
    ax.fill_between(epochs, 100 * test, 100 * train, color="#ff7f0e", alpha=0.25, hatch="//", edgecolor="#ff7f0e",
                    linewidth=0, label="generalization gap (train - test)")
    _annotate_last_gap(ax, epochs, train, test)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    _integer_epochs(ax)
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, out_png)


def _annotate_last_gap(ax, epochs: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    ok = np.isfinite(train) & np.isfinite(test)
    if ok.any():
        i = np.nonzero(ok)[0][-1]
        ax.annotate(f"gap {100 * (train[i] - test[i]):+.1f} pts", (epochs[i], 100 * (train[i] + test[i]) / 2),
                    xytext=(-6, 0), textcoords="offset points", ha="right", va="center", fontsize="small")


def _series(rows: Sequence[Mapping], metric: str, method: str) -> Tuple[np.ndarray, ...]:
    sel = sorted((r for r in rows if r["metric"] == metric and r["method"] == method), key=lambda r: int(r["epoch"]))
    cols = [np.array([_f(r[k]) for r in sel]) for k in ("mean", "ci_low", "ci_high")]
    return (np.array([int(r["epoch"]) for r in sel]), *cols)


def _grid(fig, n: int) -> List:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _band(ax, x: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, label: str) -> None:
    line, = ax.plot(x, mean, linestyle=STYLES[k % len(STYLES)], marker=MARKERS[k % len(MARKERS)], markersize=4,
                    label=label)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any() and not np.allclose(lo[ok], hi[ok]):
        ax.fill_between(x, lo, hi, where=ok, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_metric_curves(summary_rows: List[dict], out_png: Path, metrics: List[str], title: str,
                       methods: Optional[Sequence[str]] = None) -> Path:
    """One panel per metric: its per-epoch mean per method with the 95% bootstrap band.

    Args:
        summary_rows: summary.csv rows (epoch, method, metric, mean, ci_low, ci_high, n).
        out_png: PNG to write.
        metrics: metrics to draw, one panel each.
        title: figure title (name the run and method).
        methods: attribution methods to draw (default all); method `model` is always drawn.

    Example:
        >>> rows = [{"epoch": e, "method": "grad_cam", "metric": "area_ratio", "mean": .1 * e, "ci_low": 0,
        ...          "ci_high": .2 * e, "n": 8} for e in range(3)]
        >>> plot_metric_curves(rows, Path("/tmp/c.png"), ["area_ratio"], "demo").name   # doctest: +SKIP
        'c.png'
    """
    present = {r["metric"] for r in summary_rows}
    absent = [m for m in metrics if m not in present]
    if not metrics or absent:
        raise OverfocusError(f"metric {absent[0] if absent else '(none)'!r} is not in the summary: choose from "
                             f"{', '.join(order_metrics(present)) or 'nothing (run `overfocus analyze` first)'}")
    fig = _new_figure(4.3 * min(3, len(metrics)), 3.3 * math.ceil(len(metrics) / 3) + 0.4)
    for ax, metric in zip(_grid(fig, len(metrics)), metrics):
        found = sorted({r["method"] for r in summary_rows if r["metric"] == metric})
        shown = [m for m in found if methods is None or m in methods or m == "model"]
        for k, method in enumerate(shown):
            _band(ax, *_series(summary_rows, metric, method), k, label=method_name(method))
        _label_axes(ax, metric)
    fig.suptitle(title)
    return save_figure(fig, out_png)


SIGNED = {"harmonization"}  # Spearman-based: may be negative; every other known metric is >= 0


def _label_axes(ax, metric: str) -> None:
    name, unit = metric_info(metric)
    if metric not in SIGNED and ax.get_ylim()[0] < 0:
        ax.set_ylim(bottom=0.0)  # a constant 0 series must not get a negative axis
    ax.set_title(name, fontsize="medium")
    ax.set_ylabel(unit)
    _integer_epochs(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def plot_compare_metrics(runs: Mapping[str, List[dict]], out_png: Path, metrics: Sequence[str], method: str,
                         title: str) -> Path:
    """One panel per metric, one curve (with band) per run, for one attribution method.

    Metrics of method `model` (accuracy, confidence, coverage) are taken from method `model`.

    Example:
        >>> plot_compare_metrics({"vanilla": rows_a, "sgdrop": rows_b}, Path("c.png"), ["area_ratio"],
        ...                      "grad_cam", "area ratio")                     # doctest: +SKIP
    """
    if not metrics:
        raise OverfocusError("no metric is common to the compared runs: analyse them with the same --metrics")
    fig = _new_figure(4.3 * min(3, len(metrics)), 3.3 * math.ceil(len(metrics) / 3) + 0.4)
    for ax, metric in zip(_grid(fig, len(metrics)), metrics):
        for k, (label, rows) in enumerate(runs.items()):
            own = method if any(r["metric"] == metric and r["method"] == method for r in rows) else "model"
            _band(ax, *_series(rows, metric, own), k, label=label)
        _label_axes(ax, metric)
    fig.suptitle(title)
    return save_figure(fig, out_png)


def plot_compare_gap(runs: Mapping[str, List[dict]], out_png: Path, title: str) -> Path:
    """Test accuracy and generalization gap per epoch, one curve per run (two panels).

    Example:
        >>> plot_compare_gap({"vanilla": metrics_a, "sgdrop": metrics_b}, Path("gap.png"), "gap")  # doctest: +SKIP
    """
    fig = _new_figure(9.0, 3.8)
    acc_ax, gap_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for k, (label, rows) in enumerate(runs.items()):
        epochs, train, test = _acc_series(rows)
        style = dict(linestyle=STYLES[k % len(STYLES)], marker=MARKERS[k % len(MARKERS)], markersize=4)
        acc_ax.plot(epochs, 100 * test, label=label, **style)
        gap_ax.plot(epochs, 100 * (train - test), label=label, **style)
    gap_ax.axhline(0.0, color="grey", linewidth=0.8)
    for ax, (name, unit) in ((acc_ax, ("test accuracy", "accuracy (%)")),
                             (gap_ax, ("generalization gap (train - test)", "gap (percentage points)"))):
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel(unit)
        _integer_epochs(ax)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    return save_figure(fig, out_png)
