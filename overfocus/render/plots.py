"""Print-ready plots (PNG, PDF or SVG): generalization gap, metric curves with bands, comparisons.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas directly, never pyplot, so
no display is needed and no global state leaks between calls; the bytes are written atomically.
Titles, units and ranges of metrics come from the analysis metadata (`meta.py`), and legends sit
outside the axes, once per figure, only when there is more than one series to tell apart.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError
from ..fileio import atomic_write_bytes
from ..registry import did_you_mean
from .encode import check_plot_format
from .meta import metric_info, method_title, order_metrics

STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]
FLAT_TOL = 1e-9  # a series whose means differ by less than this over the epochs carries no information


def new_figure(width: float, height: float):
    """A Figure of `width` x `height` inches with the house's dpi and constrained layout (no pyplot state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=120, layout="constrained")


def save_figure(fig, out: Path) -> Path:
    """Render a Figure to the format of `out`'s suffix (.png, .pdf or .svg) and write it atomically.

    Example:
        >>> import tempfile
        >>> fig = new_figure(2, 2); _ = fig.add_subplot().plot([0, 1])
        >>> save_figure(fig, Path(tempfile.mkdtemp()) / "x.svg").read_text()[:5]
        '<?xml'
    """
    fmt = check_plot_format(Path(out).suffix or ".png")
    buffer = io.BytesIO()
    # no creation date in PDF/SVG: rendering the same analysis twice gives the same file
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    fig.savefig(buffer, format=fmt, facecolor="white", metadata=metadata)
    atomic_write_bytes(Path(out), buffer.getvalue())
    return Path(out)


def outside_legend(fig, axes: Sequence, loc: str = "outside lower center", ncols: int = 3) -> None:
    """One legend for the whole figure, outside the axes, when the panels show more than one series."""
    handles, labels = {}, []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = h
                labels.append(label)
    if len(labels) > 1:
        fig.legend([handles[k] for k in labels], labels, loc=loc, ncols=min(ncols, len(labels)),
                   fontsize="small", frameon=False)


def integer_epochs(ax) -> None:
    """Epoch axis: integer ticks only, a label and a light grid (every per-epoch plot uses it)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(x=0.02)  # the default 5% can reach one epoch past the last, which then gets a tick
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)


def float_or_nan(value) -> float:
    """A JSON value as a float, NaN for null or text (so a missing epoch leaves a gap in a curve).

        >>> float_or_nan(None), float_or_nan("0.5")
        (nan, 0.5)
    """
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _acc_series(rows: Sequence[Mapping]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = sorted((r for r in rows if "epoch" in r), key=lambda r: int(r["epoch"]))
    epochs = np.array([int(r["epoch"]) for r in rows])
    train = np.array([float_or_nan(r.get("train_acc")) for r in rows])
    return epochs, train, np.array([float_or_nan(r.get("test_acc")) for r in rows])


def wilson_interval(p: np.ndarray, n: int, z: float = 1.96) -> Tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of accuracies `p` measured on `n` images each.

    Example:
        >>> lo, hi = wilson_interval(np.array([0.5]), 80)
        >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
        (0.393, 0.607)
    """
    p = np.asarray(p, np.float64)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def gap_interval(train: np.ndarray, n_train: int, test: np.ndarray, n_test: int) -> Tuple[np.ndarray, np.ndarray]:
    """95% interval of the gap train - test of two accuracies measured on independent image sets:
    Newcombe's hybrid score interval (each accuracy's Wilson interval, combined in quadrature).

    Example:
        >>> lo, hi = gap_interval(np.array([0.9]), 80, np.array([0.7]), 80)
        >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
        (0.077, 0.318)
    """
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    (l1, u1), (l2, u2) = wilson_interval(train, n_train), wilson_interval(test, n_test)
    gap = train - test
    return gap - np.sqrt((train - l1) ** 2 + (u2 - test) ** 2), gap + np.sqrt((u1 - train) ** 2 + (test - l2) ** 2)


AccuracyCounts = Tuple[int, int]  # (train images, test images) behind each accuracy of metrics.jsonl
TRAIN_COLOUR, TEST_COLOUR = "#1f77b4", "#d62728"
GAP_COLOUR, NEGATIVE_GAP_COLOUR, CHANCE_COLOUR = "#ff7f0e", "#2ca02c", "#555555"


def interval_label(counts: AccuracyCounts) -> str:
    """The legend entry of the accuracy bands: what interval, on how many images.

    Example:
        >>> interval_label((80, 80)), interval_label((500, 80))
        ('95% interval (Wilson, 80 images each)', '95% interval (Wilson; train 500, test 80 images)')
    """
    n_train, n_test = counts
    each = f"{n_test} images each" if n_train == n_test else f"train {n_train}, test {n_test} images"
    return f"95% interval (Wilson{', ' if n_train == n_test else '; '}{each})"


def chance_line(ax, chance: Optional[float]) -> None:
    """The accuracy of guessing (1 / classes) as a dotted line, labelled in the legend."""
    if chance is not None:
        ax.axhline(100 * chance, color=CHANCE_COLOUR, linestyle=":", linewidth=1.0,
                   label=f"chance ({100 * chance:.0f}%)")


def plot_gap(metrics_rows: List[dict], out_png: Path, title: str, chance: Optional[float] = None,
             counts: Optional[AccuracyCounts] = None) -> Path:
    """Train and test accuracy per epoch with the generalization gap shaded between them.

    A negative gap (test above train) is shaded in another colour, without hatching.

    Args:
        metrics_rows: metrics.jsonl lines (epoch, train_acc, test_acc).
        out_png: PNG to write.
        title: figure title (name the run).
        chance: the chance accuracy (1 / classes), drawn as a line.
        counts: (train images, test images) each accuracy was measured on: 95% Wilson intervals
            around both curves.

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": 0, "train_acc": .2, "test_acc": .2}, {"epoch": 1, "train_acc": .9, "test_acc": .7}]
        >>> plot_gap(rows, Path(tempfile.mkdtemp()) / "gap.pdf", "demo", chance=0.1, counts=(80, 80)).read_bytes()[:5]
        b'%PDF-'
    """
    return save_figure(gap_figure(metrics_rows, title, chance, counts), out_png)


def gap_figure(metrics_rows: List[dict], title: str, chance: Optional[float] = None,
               counts: Optional[AccuracyCounts] = None):
    """The Figure of `plot_gap` (not yet written)."""
    epochs, train, test = _acc_series(metrics_rows)
    if not len(epochs) or np.isnan(train).all() or np.isnan(test).all():
        raise OverfocusError("no train/test accuracy to plot: metrics.jsonl is empty or lacks train_acc/test_acc")
    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot()
    ax.plot(epochs, 100 * train, "o-", color=TRAIN_COLOUR, label="train accuracy (eval mode, fixed subset)")
    ax.plot(epochs, 100 * test, "s--", color=TEST_COLOUR, label="test accuracy")
    if counts:
        for acc, n, colour in ((train, counts[0], TRAIN_COLOUR), (test, counts[1], TEST_COLOUR)):
            lo, hi = wilson_interval(acc, n)
            ax.fill_between(epochs, 100 * lo, 100 * hi, color=colour, alpha=0.12, linewidth=0)
        ax.plot([], [], color="#888888", alpha=0.4, linewidth=6, label=interval_label(counts))
    wider = train >= test  # a negative gap (test above train) is shaded apart, not like overfitting
    ax.fill_between(epochs, 100 * test, 100 * train, where=wider, interpolate=True, color=GAP_COLOUR, alpha=0.25,
                    hatch="//", edgecolor=GAP_COLOUR, linewidth=0, label="generalization gap (train - test)")
    if (~wider & np.isfinite(train) & np.isfinite(test)).any():
        ax.fill_between(epochs, 100 * test, 100 * train, where=~wider, interpolate=True, color=NEGATIVE_GAP_COLOUR,
                        alpha=0.2, linewidth=0, label="test above train (negative gap)")
    chance_line(ax, chance)
    _annotate_last_gap(ax, epochs, train, test)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    integer_epochs(ax)
    outside_legend(fig, [ax], ncols=2)
    return fig


def _annotate_last_gap(ax, epochs: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    ok = np.isfinite(train) & np.isfinite(test)
    if ok.any():
        i = np.nonzero(ok)[0][-1]
        # right of the last epoch, outside the axes: inside, the label crossed the curves whenever
        # the accuracy jumped in the last epochs
        ax.annotate(f"gap\n{100 * (train[i] - test[i]):+.1f} pts", (epochs[i], 100 * (train[i] + test[i]) / 2),
                    xytext=(10, 0), textcoords="offset points", ha="left", va="center", fontsize="small",
                    annotation_clip=False)
        ax.annotate("", (epochs[i], 100 * train[i]), xytext=(epochs[i], 100 * test[i]),
                    arrowprops={"arrowstyle": "<->", "color": "#555555", "lw": 0.8, "shrinkA": 0, "shrinkB": 0})


def _series(rows: Sequence[Mapping], metric: str, method: str) -> Tuple[np.ndarray, ...]:
    sel = sorted((r for r in rows if r["metric"] == metric and r["method"] == method), key=lambda r: int(r["epoch"]))
    cols = [np.array([float_or_nan(r[k]) for r in sel]) for k in ("mean", "ci_low", "ci_high")]
    return (np.array([int(r["epoch"]) for r in sel]), *cols)


def _grid(fig, n: int) -> List:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _band(ax, x: np.ndarray, mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, k: int, label: str,
          linestyle: Optional[str] = None) -> None:
    line, = ax.plot(x, mean, linestyle=linestyle or STYLES[k % len(STYLES)], marker=MARKERS[k % len(MARKERS)],
                    markersize=4, label=label, color=f"C{k % 10}")
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any() and not np.allclose(lo[ok], hi[ok]):
        ax.fill_between(x, lo, hi, where=ok, color=line.get_color(), alpha=0.2, linewidth=0)


def is_flat(series: Sequence[np.ndarray]) -> bool:
    """True when every finite mean of every series is the same value (nothing to see in a curve).

    Example:
        >>> is_flat([np.array([1.0, 1.0]), np.array([1.0, np.nan])]), is_flat([np.array([0.1, 0.2])])
        (True, False)
    """
    values = np.concatenate([np.asarray(v, np.float64).ravel() for v in series]) if series else np.array([])
    values = values[np.isfinite(values)]
    return values.size == 0 or float(np.ptp(values)) < FLAT_TOL


def flat_note(flat: Mapping[str, float], meta: Mapping) -> str:
    """'constant over the epochs (not plotted): latent coverage = 1.000, ...' or ''."""
    if not flat:
        return ""
    items = ", ".join(f"{metric_info(meta, m).title} = {v:.3f}" if math.isfinite(v) else
                      f"{metric_info(meta, m).title} (no value)" for m, v in flat.items())
    return f"constant over the epochs (not plotted): {items}"


def _panels(metrics: Sequence[str], series_of) -> Tuple[List[str], Dict[str, float]]:
    """Split metrics into those that vary (plotted) and flat ones (metric -> its constant value)."""
    shown, flat = [], {}
    for metric in metrics:
        means = [s[1] for _, s in series_of(metric)]
        if is_flat(means):
            finite = [v for m in means for v in np.asarray(m).ravel() if np.isfinite(v)]
            flat[metric] = float(finite[0]) if finite else math.nan
        else:
            shown.append(metric)
    return shown, flat


NONDEGENERATE = "_nondegenerate"  # summary.csv's aggregate over the non-degenerate maps of a metric
COMPANION_LABEL = " (non-empty maps)"
MAX_DEFAULT_PANELS = 6  # what a paper figure holds; `render --metrics a,b,c` chooses others
PANEL_TITLE_CHARS = 40  # about what a 4.3-inch panel holds in the title's type


def default_panels(available: Sequence[str], limit: int = MAX_DEFAULT_PANELS) -> List[str]:
    """The panels of metrics.png without --metrics: the first `limit` of `available` (the metadata's
    order: map metrics first, as registered), model-level numbers only where room is left.

    Example:
        >>> default_panels(["area_ratio", "gini", "entropy", "box_iou", "hit", "energy_pg", "pointing_game",
        ...                 "degenerate", "confidence"])
        ['area_ratio', 'gini', 'entropy', 'box_iou', 'hit', 'energy_pg']
    """
    return list(available)[:limit]


def chosen_panels(wanted: Sequence[str], available: Sequence[str], where) -> List[str]:
    """`render --metrics a,b,c`: those panels, in that order; an unknown name is one line naming the others."""
    for name in wanted:
        if name not in available:
            raise OverfocusError(f"--metrics {name!r} is not in the analysis of {where}{did_you_mean(name, available)}: "
                                 f"choose from {', '.join(available)}")
    return list(dict.fromkeys(wanted))


def panel_metrics(names: Sequence[str]) -> List[str]:
    """The metrics that get a panel of their own: `<m>_nondegenerate` is drawn in the panel of `<m>`
    (dashed, see `with_companions`) and `degenerate_count` is the `degenerate` share's count.

    Example:
        >>> panel_metrics(["area_ratio", "area_ratio_nondegenerate", "degenerate", "degenerate_count"])
        ['area_ratio', 'degenerate']
    """
    names = list(names)
    return [m for m in names if not (m.endswith(NONDEGENERATE) and m[:-len(NONDEGENERATE)] in names)
            and not (m == "degenerate_count" and "degenerate" in names)]


def with_companions(series: List[Tuple[str, tuple]], companion: List[Tuple[str, tuple]]) -> List[Tuple[str, tuple]]:
    """A panel's series followed by those of its `_nondegenerate` companion, labelled as such; a
    companion equal to its series (no map was empty) is left out: it would hide under it.

    Example:
        >>> x, a, b = np.arange(2), np.array([.2, .3]), np.array([.25, .3])
        >>> [label for label, _ in with_companions([("G", (x, a, a, a)), ("S", (x, a, a, a))],
        ...                                        [("G", (x, b, b, b)), ("S", (x, a, a, a))])]
        ['G', 'S', 'G (non-empty maps)']
    """
    own = dict(series)
    return series + [(label + COMPANION_LABEL, s) for label, s in companion
                     if len(s[0]) and not _same_curve(own.get(label), s)]


def _same_curve(a: Optional[tuple], b: tuple) -> bool:
    return a is not None and len(a[0]) == len(b[0]) and np.array_equal(a[0], b[0]) and \
        np.allclose(a[1], b[1], equal_nan=True, rtol=0, atol=1e-12)


def series_look(label: str, colours: Dict[str, int]) -> Tuple[int, str]:
    """(colour index, line style) of a series: ONE colour per method (or run), a line style per
    aggregate (all maps: solid; non-empty maps: dashed).

    Example:
        >>> colours = {}
        >>> series_look("Grad-CAM", colours), series_look("Grad-CAM (non-empty maps)", colours)
        ((0, '-'), (0, '--'))
    """
    base = label.removesuffix(COMPANION_LABEL)
    return colours.setdefault(base, len(colours)), ("--" if label.endswith(COMPANION_LABEL) else "-")


def mark_peaks(ax, onset: Optional[Mapping], titles: Mapping[str, str]) -> None:
    """Mark each method's overfocus onset (the epoch of its widest attention, onset.json) on the
    area-ratio panel: a star on the non-degenerate curve and a dotted line at the epoch."""
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    for method, o in ((onset or {}).get("methods") or {}).items():
        if method not in titles or o.get("peak_epoch") is None or o.get("peak_area") is None:
            continue
        ax.axvline(o["peak_epoch"], color="#777777", linestyle=":", linewidth=0.9)
        # the star carries the method's colour, edged in black, and the legend says what it is: no
        # text over the curves; not clipped, so a peak at the last epoch shows whole
        ax.plot([o["peak_epoch"]], [o["peak_area"]], marker="*", markersize=13, linestyle="none",
                markerfacecolor=colours.get(titles[method], "black"), markeredgecolor="black", color="black",
                label="widest attention (onset peak)", zorder=5, clip_on=False)


def onset_note(onset: Optional[Mapping], titles: Mapping[str, str]) -> str:
    """Where each shown method's onset peak was searched from and why (onset.json's `search_from`,
    `search_reason`), for the note under the metrics figure: a star late in training then reads
    as what it is.

    Example:
        >>> onset_note({"methods": {"grad_cam": {"search_from": 6, "search_reason": "at chance before epoch 6"}}},
        ...            {"grad_cam": "Grad-CAM"})
        'onset peak (star) searched from epoch 6: at chance before epoch 6'
    """
    found = {m: o for m, o in ((onset or {}).get("methods") or {}).items()
             if m in titles and o.get("search_from") is not None}
    if not found:
        return ""
    starts = {(o["search_from"], o.get("search_reason") or "") for o in found.values()}
    if len(starts) == 1:
        start, reason = starts.pop()
        return f"onset peak (star) searched from epoch {start}" + (f": {reason}" if reason else "")
    return "onset peak (star) searched from: " + "; ".join(
        f"{titles[m]} epoch {o['search_from']}" + (f" ({o['search_reason']})" if o.get("search_reason") else "")
        for m, o in sorted(found.items()))


def mark_faithful(ax, onset: Optional[Mapping], titles: Mapping[str, str]) -> None:
    """Mark, on a panel, the epoch from which each method's maps beat the random baseline on
    deletion and insertion (onset.json's `faithful_from`): a dash-dotted line in the method's own
    colour (read from its curve on the panel), the epochs before the first one lightly shaded."""
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    by_epoch: Dict[int, List[str]] = {}
    for method, o in sorted(((onset or {}).get("methods") or {}).items()):
        if method in titles and o.get("faithful_from") is not None:
            by_epoch.setdefault(o["faithful_from"], []).append(titles[method])
    epochs = sorted(by_epoch)
    for epoch in epochs:  # one line per epoch: lines of methods sharing an epoch would hide each other
        names = by_epoch[epoch]
        colour = colours.get(names[0], "#444444") if len(names) == 1 else "#444444"
        ax.axvline(epoch, color=colour, linestyle="-.", linewidth=1.2, alpha=0.9,
                   label=f"{', '.join(names)}: maps faithful from epoch {epoch}")
    if epochs:
        lo = ax.get_xlim()[0]
        if min(epochs) > lo:
            ax.axvspan(lo, min(epochs), color="#999999", alpha=0.1, linewidth=0, label="no method's maps faithful yet")
            ax.set_xlim(left=lo)


def method_colours(meta: Mapping) -> Dict[str, int]:
    """Colour index per series label: the analysis's methods in their order, then `model`, so a
    method has the same colour in every figure of a run (render, compare, the audit report)
    whichever methods a figure shows.

    Example:
        >>> method_colours({"methods": ["grad_cam", "sgdrop"], "method_info": {"grad_cam": {"title": "Grad-CAM"}}})
        {'Grad-CAM': 0, 'sgdrop': 1, 'model': 2}
    """
    titles = [method_title(meta, m) for m in meta.get("methods") or []] + [method_title(meta, "model")]
    return {t: k for k, t in enumerate(dict.fromkeys(titles))}


def metric_grid(series_of, metrics: Sequence[str], title: str, meta: Mapping, note: str = "",
                decorate=None, colours: Optional[Dict[str, int]] = None):
    """A grid of panels for the metrics that vary, a legend at the right, notes (flat metrics, `note`)
    under it. This is the one look of every metric figure (render, compare, the audit report, the
    leak diagnostic): one colour per method or run (`colours`, default `method_colours(meta)`), a
    line style per aggregate (`series_look`), titles, units and ranges from the metadata.

    `decorate(ax, metric)` may draw more on a panel (e.g. the onset mark)."""
    shown, flat = _panels(metrics, series_of)
    cols = min(3, max(1, len(shown)))
    rows = math.ceil(len(shown) / cols)
    notes = [n for n in (note, flat_note(flat, meta)) if n]
    fig = new_figure(4.3 * cols if shown else 8.0, 3.3 * rows + 0.5 + 0.3 * len(notes))
    axes = _grid(fig, len(shown)) if shown else []
    colours = dict(method_colours(meta) if colours is None else colours)  # one per method (or run), all panels
    for ax, metric in zip(axes, shown):
        for label, series in series_of(metric):
            colour, linestyle = series_look(label, colours)
            _band(ax, *series, colour, label=label, linestyle=linestyle)
        _label_axes(ax, metric_info(meta, metric))
        if decorate is not None:
            decorate(ax, metric)
    import textwrap

    # right, centred: at the top the legend would run into a long title, the bottom holds the notes
    outside_legend(fig, axes, "outside right center", ncols=1)
    # wrapped: a title naming many methods stays over the panels
    fig.suptitle(textwrap.fill(title, 28 * cols))
    if notes:
        text = "\n".join(textwrap.fill(n, 130 if len(shown) > 2 else 90) for n in notes)
        fig.supxlabel(text, fontsize="small", color="#444444", x=0.01, ha="left")  # laid out below the legend
    return fig


def plot_metric_curves(summary_rows: List[dict], out_png: Path, metrics: List[str], title: str,
                       methods: Optional[Sequence[str]] = None, meta: Optional[Mapping] = None,
                       note: str = "", onset: Optional[Mapping] = None) -> Path:
    """One panel per metric that varies: its per-epoch mean per method with the 95% bootstrap band.

    Metrics whose mean is the same at every epoch are listed in a note under the grid instead. A
    metric's aggregate over the non-degenerate maps (`<metric>_nondegenerate` in the summary) is
    drawn in the metric's own panel as a second curve per method; with `onset` (onset.json) the
    area-ratio panel marks each method's peak epoch and every panel the epoch from which its maps
    are faithful (`faithful_from`).

    Args:
        summary_rows: summary.csv rows (epoch, method, metric, mean, ci_low, ci_high, n).
        out_png: file to write (.png, .pdf or .svg).
        metrics: metrics to draw, one panel each.
        title: figure title (name the run and method).
        methods: attribution methods to draw (default all); method `model` is always drawn.
        meta: analysis.json or report.json (titles, units, ranges: see `meta.py`).
        note: a line printed under the grid (e.g. what was aligned).

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": e, "method": "grad_cam", "metric": "area_ratio", "mean": .1 * e, "ci_low": 0,
        ...          "ci_high": .2 * e, "n": 8} for e in range(3)]
        >>> plot_metric_curves(rows, Path(tempfile.mkdtemp()) / "c.png", ["area_ratio"], "demo").name
        'c.png'
    """
    return save_figure(metric_curves_figure(summary_rows, metrics, title, methods, meta, note, onset), out_png)


def metric_curves_figure(summary_rows: List[dict], metrics: List[str], title: str,
                         methods: Optional[Sequence[str]] = None, meta: Optional[Mapping] = None, note: str = "",
                         onset: Optional[Mapping] = None):
    """The Figure of `plot_metric_curves` (not yet written)."""
    meta = meta or {}
    present = {r["metric"] for r in summary_rows}
    absent = [m for m in metrics if m not in present]
    if not metrics or absent:
        raise OverfocusError(f"metric {absent[0] if absent else '(none)'!r} is not in the summary: choose from "
                             f"{', '.join(order_metrics(meta, present)) or 'nothing (run `overfocus analyze` first)'}")

    def curves(metric: str):
        found = sorted({r["method"] for r in summary_rows if r["metric"] == metric})
        shown = [m for m in found if methods is None or m in methods or m == "model"]
        return [(method_title(meta, m), _series(summary_rows, metric, m)) for m in shown]

    def series_of(metric: str):
        companion = curves(metric + NONDEGENERATE) if metric + NONDEGENERATE not in metrics else []
        return with_companions(curves(metric), companion)

    titles = {m: method_title(meta, m) for m in {r["method"] for r in summary_rows}
              if methods is None or m in methods}
    def decorate(ax, metric: str) -> None:
        if metric == "area_ratio":
            mark_peaks(ax, onset, titles)
        mark_faithful(ax, onset, titles)

    if "area_ratio" in metrics:
        note = "; ".join(filter(None, [note, onset_note(onset, titles)]))
    return metric_grid(series_of, metrics, title, meta, note, decorate)


def _label_axes(ax, info) -> None:
    """Title and unit from the metadata; a ratio's axis spans its whole range (e.g. [0, 1])."""
    lo, hi = info.range
    if lo is not None and hi is not None:
        pad = 0.03 * (hi - lo)  # a value at the bound must stay visible
        ax.set_ylim(lo - pad, hi + pad)
    elif lo is not None:  # a value at the bound must stay visible here too
        top = ax.get_ylim()[1]
        ax.set_ylim(bottom=lo - 0.03 * max(top - lo, 1e-9))
    elif hi is not None:
        ax.set_ylim(top=hi)
    import textwrap

    ax.set_title(textwrap.fill(info.title, PANEL_TITLE_CHARS), fontsize="medium")  # long titles wrap, never overlap
    ax.set_ylabel(info.axis_label)
    integer_epochs(ax)


def plot_compare_metrics(runs: Mapping[str, List[dict]], out_png: Path, metrics: Sequence[str], method: str,
                         title: str, meta: Optional[Mapping] = None, note: str = "") -> Path:
    """One panel per metric that varies, one curve (with band) per run, for one attribution method.

    Metrics of method `model` (accuracy, confidence, coverage) are taken from method `model`.

    Example:
        >>> import tempfile
        >>> rows = lambda k: [{"epoch": e, "method": "grad_cam", "metric": "area_ratio", "mean": k * e,
        ...                    "ci_low": k * e, "ci_high": k * e, "n": 8} for e in range(3)]
        >>> out = Path(tempfile.mkdtemp()) / "c.png"
        >>> plot_compare_metrics({"vanilla": rows(.2), "sgdrop": rows(.1)}, out, ["area_ratio"], "grad_cam",
        ...                      "area ratio").name
        'c.png'
    """
    if not metrics:
        raise OverfocusError("no metric is common to the compared runs: analyse them with the same --metrics")

    def curves(metric: str):
        out = []
        for label, rows in runs.items():
            own = method if any(r["metric"] == metric and r["method"] == method for r in rows) else "model"
            out.append((label, _series(rows, metric, own)))
        return out

    def series_of(metric: str):
        companion = curves(metric + NONDEGENERATE) if metric + NONDEGENERATE not in metrics else []
        return with_companions(curves(metric), companion)

    return save_figure(metric_grid(series_of, metrics, title, meta or {}, note,
                                   colours={label: k for k, label in enumerate(runs)}), out_png)


def plot_compare_gap(runs: Mapping[str, List[dict]], out_png: Path, title: str, note: str = "",
                     chance: Optional[float] = None,
                     counts: Optional[Mapping[str, Optional[AccuracyCounts]]] = None) -> Path:
    """Test accuracy and generalization gap per epoch, one colour per run (two panels).

    With `counts` (run -> (train images, test images)), each run's test accuracy carries its 95%
    Wilson band and its gap Newcombe's 95% band (`gap_interval`); `chance` (1 / classes) is a line
    on the accuracy panel, and the gap panel has its zero line (below it, test is above train).

    Example:
        >>> import tempfile
        >>> acc = lambda t: [{"epoch": e, "train_acc": .5 + .1 * e, "test_acc": t} for e in range(3)]
        >>> plot_compare_gap({"a": acc(.5), "b": acc(.6)}, Path(tempfile.mkdtemp()) / "gap.svg", "gap",
        ...                  chance=0.1, counts={"a": (80, 80), "b": (80, 80)}).suffix
        '.svg'
    """
    return save_figure(compare_gap_figure(runs, title, note, chance, counts), out_png)


def compare_gap_figure(runs: Mapping[str, List[dict]], title: str, note: str = "", chance: Optional[float] = None,
                       counts: Optional[Mapping[str, Optional[AccuracyCounts]]] = None):
    """The Figure of `plot_compare_gap` (not yet written)."""
    counts = counts or {}
    fig = new_figure(9.0, 4.6)
    acc_ax, gap_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    banded = []
    for k, (label, rows) in enumerate(runs.items()):
        epochs, train, test = _acc_series(rows)
        style = dict(linestyle=STYLES[k % len(STYLES)], marker=MARKERS[k % len(MARKERS)], markersize=4,
                     color=f"C{k % 10}")
        acc_ax.plot(epochs, 100 * test, label=label, **style)
        gap_ax.plot(epochs, 100 * (train - test), label=label, **style)
        n = counts.get(label)
        if n:
            banded.append(n)
            lo, hi = wilson_interval(test, n[1])
            acc_ax.fill_between(epochs, 100 * lo, 100 * hi, color=style["color"], alpha=0.15, linewidth=0)
            lo, hi = gap_interval(train, n[0], test, n[1])
            gap_ax.fill_between(epochs, 100 * lo, 100 * hi, color=style["color"], alpha=0.15, linewidth=0)
    chance_line(acc_ax, chance)
    gap_ax.axhline(0.0, color="grey", linewidth=0.8)
    acc_ax.set_ylim(-2, 102)
    for ax, (name, unit) in ((acc_ax, ("test accuracy", "accuracy (%)")),
                             (gap_ax, ("generalization gap (train - test)", "gap (percentage points)"))):
        ax.set_title(name, fontsize="medium")
        ax.set_ylabel(unit)
        integer_epochs(ax)
    if banded:
        sizes = sorted({n for pair in banded for n in pair})
        acc_ax.plot([], [], color="#888888", alpha=0.4, linewidth=6,
                    label="95% interval" + (f" ({sizes[0]} images each)" if len(sizes) == 1 else ""))
        note = "; ".join(filter(None, [note, "bands: 95% Wilson interval of the test accuracy, Newcombe's of the "
                                              "gap, from the images behind each accuracy"]))
    if note:
        import textwrap

        fig.supxlabel(textwrap.fill(note, 125), fontsize="small", color="#444444", x=0.01, ha="left")
    # right, centred: at the top the legend would run into the title, the bottom holds the note
    outside_legend(fig, [acc_ax], "outside right center", ncols=1)
    fig.suptitle(title)
    return fig


MAX_ANNOTATED_CLASSES = 12  # beyond this the counts no longer fit in the cells; the colour tells the share


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], out_png: Path, title: str) -> Path:
    """The confusion matrix (rows: true class, columns: predicted class) as a heat map of each row's
    share, the counts written in the cells for up to 12 classes.

    Example:
        >>> import tempfile
        >>> plot_confusion([[3, 1], [0, 4]], ["cat", "dog"], Path(tempfile.mkdtemp()) / "c.png", "demo").name
        'c.png'
    """
    return save_figure(confusion_figure(confusion, classes, title), out_png)


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str):
    """The Figure of `plot_confusion` (not yet written)."""
    counts = np.asarray(confusion, np.int64)
    k = counts.shape[0]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    side = min(9.0, max(3.6, 0.45 * k + 2.2))
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class's images")
    names = [str(c) for c in classes][:k] + [str(i) for i in range(len(classes), k)]
    step = max(1, k // 40)  # at most ~40 tick labels: more would overlap
    ticks = list(range(0, k, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=60 if k > 4 else 0, ha="right" if k > 4 else "center",
                  rotation_mode="anchor", fontsize="small" if k <= 20 else "x-small")
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize="small" if k <= 20 else "x-small")
    if k <= MAX_ANNOTATED_CLASSES:
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, str(n), ha="center", va="center", fontsize="small",
                    color="white" if share[i, j] > 0.5 else "#222222")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize="medium")
    return fig
