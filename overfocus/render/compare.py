"""Compare several analysed runs: overlaid curves, gap curves, a side-by-side video, a last-epoch table
and the explorer page (explore.py) of the runs.

Like is compared with like: the video shows the probe images common to all runs, the table is
taken at one epoch common to all runs (default: the last), and the metrics are means over the
analysed images common to all runs (recomputed from the records when the runs analysed different
images). What was aligned is written in the table's header and under the figures.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..analysis.storage import ALL_IMAGES, read_records
from ..analysis.summary import summarize_records  # the one summary implementation (mean, bootstrap CI, n)
from ..errors import OverfocusError
from ..fileio import atomic_write_text, clean_stale_temps
from ..registry import did_you_mean
from .encode import check_fps, check_plot_format, write_video
from .frames import (Cell, FrameStyle, HEADER_METRIC, check_panels_fit, check_style, compose_frame, compute_layout,
                     empty_text, fitting_cells, fmt_num, fmt_pct, legend_line, prediction_caption)
from .io import Analysis, load_analysis, run_name
from .meta import merged_info, method_title, metric_info, order_metrics
from .overlay import NORMALISATION_NOTE, attribution_panel
from .plots import panel_metrics, plot_compare_gap, plot_compare_metrics


@dataclass
class CompareOptions:
    """Options of `overfocus compare` (defaults = the command's defaults)."""

    labels: Optional[List[str]] = None    # default: the run folder names
    out: Optional[Path] = None            # default: RUN_A/../compare_<label>_vs_<label>
    method: Optional[str] = None          # default: the first method analysed in every run
    metrics: Optional[List[str]] = None   # default: every metric common to all runs
    fps: float = 2.0
    size: int = 640
    alpha: float = 0.5
    cmap: str = "inferno"
    formats: Sequence[str] = ("mp4", "gif")
    probes: Optional[int] = None
    epoch: Optional[int] = None           # epoch of the table; default: the last one common to all runs
    plot_format: str = "png"              # static plots: png, pdf or svg
    explorer: bool = True                 # explorer.html beside the figures (render/explore.py)


@dataclass
class CompareResult:
    out_dir: Path
    written: List[Path] = field(default_factory=list)
    epochs: List[int] = field(default_factory=list)
    epoch: Optional[int] = None           # the epoch of the table
    n_images: int = 0                     # analysed images common to all runs (the metrics' sample)
    progress: str = ""                    # the training progress the runs are aligned on (progress_note)


@dataclass
class Alignment:
    """What the runs are compared on: the table's epoch and the analysed images common to all runs."""

    epoch: int
    n_images: int
    recomputed: bool  # the runs analysed different images: summaries recomputed on the common ones

    @property
    def note(self) -> str:
        how = ("means recomputed over the images common to all runs" if self.recomputed
               else "every run analysed the same images")
        return f"aligned: table at epoch {self.epoch} (last common unless --epoch), {self.n_images} images ({how})"


def compare_runs(run_dirs: Sequence[Path | str], options: Optional[CompareOptions] = None) -> CompareResult:
    """Write comparison figures, video and tables of several analysed runs into one folder.

    Example:
        >>> res = compare_runs(["runs/vanilla", "runs/sgdrop"], CompareOptions(formats=["gif"]))  # doctest: +SKIP
        >>> sorted(p.name for p in res.written)                                                  # doctest: +SKIP
        ['evolution.gif', 'explorer.html', 'gap.png', 'last_epoch.csv', 'last_epoch.md', 'metrics.png']
    """
    opts = options or CompareOptions()
    style = FrameStyle(opts.size, opts.alpha, opts.cmap)
    check_style(style)
    check_fps(opts.fps)
    if len(run_dirs) < 2:
        raise OverfocusError("compare needs at least two run directories: overfocus compare RUN_A RUN_B")
    fmt = check_plot_format(opts.plot_format)
    check_panels_fit(len(run_dirs), style.width)
    runs = dict(zip(run_labels(run_dirs, opts.labels), (load_analysis(r) for r in run_dirs)))
    order = check_same_probes(runs)
    method = common_method(runs, opts.method)
    check_epoch_meaning(runs)
    epochs = common_epochs(runs)
    align = align_images(runs, table_epoch(epochs, opts.epoch))
    metrics = common_metrics(runs, method, opts.metrics)
    meta = merged_info(a.meta for a in runs.values())
    out = Path(opts.out) if opts.out else Path(run_dirs[0]).parent / f"compare_{'_vs_'.join(runs)}"
    if out.exists() and not out.is_dir():
        raise OverfocusError(f"--out {out} is an existing file, not a folder: choose another --out")
    clean_stale_temps(out)  # debris of a killed compare
    result = CompareResult(out, epochs=epochs, epoch=align.epoch, n_images=align.n_images,
                           progress=progress_note(runs, epochs, align.epoch))
    result.written += _plots(runs, method, metrics, out, meta, align, fmt, chosen=bool(opts.metrics))
    frames = compare_frames(runs, order, method, epochs, video_indices(runs, order, opts.probes, style), style)
    result.written += write_video(list(frames), out / "evolution", opts.fps, opts.formats)
    result.written += write_tables(runs, method, metrics, out, align, meta)
    if opts.explorer:
        from .explore import ExploreOptions, explore  # here, not at the top: explore imports compare (a cycle)
        result.written.append(explore(list(run_dirs), ExploreOptions(
            methods=[opts.method] if opts.method else None, labels=list(runs), out=out / "explorer.html",
            alpha=opts.alpha, cmap=opts.cmap, probes=opts.probes)))
    return result


def run_labels(run_dirs: Sequence[Path | str], labels: Optional[Sequence[str]]) -> List[str]:
    """The given labels (one per run, distinct) or the run folder names."""
    names = list(labels) if labels else [run_name(r) for r in run_dirs]
    if len(names) != len(run_dirs):
        raise OverfocusError(f"--labels has {len(names)} names for {len(run_dirs)} runs: give one label per run")
    if len(set(names)) != len(names):
        raise OverfocusError(f"run labels {', '.join(names)} are not distinct: pass --labels a,b,... to name them")
    return names


def check_same_probes(runs: Dict[str, Analysis]) -> Dict[str, List[int]]:
    """Per run, the indices of the probe images common to all runs, in the first run's order.

    Refuses runs that share no probe image (different data or split).
    """
    (first, ref), order = next(iter(runs.items())), {}
    common = set.intersection(*(set(a.probe.image_ids) for a in runs.values()))
    if not common:
        label, other = min(list(runs.items())[1:], key=lambda kv: len(set(kv[1].probe.image_ids) & set(ref.probe.image_ids)))
        odd = sorted(set(other.probe.image_ids) ^ set(ref.probe.image_ids))
        raise OverfocusError(
            f"runs {first!r} and {label!r} have different probe sets ({len(odd)} image ids differ, e.g. "
            f"{odd[0]!r}; no image is in every run): compare only runs analysed on the same data and probe images")
    for label, analysis in runs.items():
        ids = analysis.probe.image_ids
        position = {image_id: i for i, image_id in enumerate(ids)}
        order[label] = [position[image_id] for image_id in ref.probe.image_ids if image_id in common]
    return order


def common_method(runs: Dict[str, Analysis], method: Optional[str]) -> str:
    shared = [m for m in next(iter(runs.values())).methods if all(m in a.methods for a in runs.values())]
    if method is None and shared:
        return shared[0]
    if method not in shared:
        raise OverfocusError(f"method {method!r} was not analysed in every run{did_you_mean(method, shared)}: choose from "
                             f"{', '.join(shared) or 'nothing (re-run `overfocus analyze` with the same --methods)'}")
    return method


def check_epoch_meaning(runs: Dict[str, Analysis]) -> None:
    """Refuse runs whose epoch numbers mean different training progress: in one, epoch N is the
    model after N epochs (epoch 0 = the initial weights), in another after N+1 (Lightning's files
    read as named with --epoch-offset 0)."""
    initial = {label: a.epoch0_is_initial for label, a in runs.items()}
    if len(set(initial.values())) > 1:
        yes = next(label for label, v in initial.items() if v)
        no = next(label for label, v in initial.items() if not v)
        raise OverfocusError(f"run {yes!r} counts epoch 0 as the initial weights, run {no!r} as a trained model "
                             f"(run.json epoch0_is_initial): their epochs are not the same training progress; "
                             f"re-analyse {runs[no].run_dir} without --epoch-offset 0 (Lightning's epoch=K files "
                             "are then read as epoch K+1)")


def progress_note(runs: Dict[str, Analysis], epochs: Sequence[int], epoch: int) -> str:
    """The training progress the runs are aligned on: completed epochs, and optimizer steps where known.

    Example:
        >>> progress_note({}, [0, 1, 2], 2)
        'aligned on training epochs completed: 0-2 (epoch 0 = the initial weights); table at epoch 2'
    """
    steps = {label: a.step_of(epoch) for label, a in runs.items()}
    known = ", ".join(f"{label} {s}" for label, s in steps.items() if s is not None)
    initial = all(a.epoch0_is_initial for a in runs.values())
    meaning = "epoch 0 = the initial weights" if initial else "epoch N = after N+1 epochs in every run"
    return (f"aligned on training epochs completed: {epochs[0]}-{epochs[-1]} ({meaning}); "
            f"table at epoch {epoch}" + (f" (optimizer steps: {known})" if known else ""))


def common_epochs(runs: Dict[str, Analysis]) -> List[int]:
    epochs = sorted(set.intersection(*(set(a.epochs) for a in runs.values())))
    if not epochs:
        raise OverfocusError("the runs have no analysed epoch in common: analyse the same epochs of each run")
    return epochs


def table_epoch(common: Sequence[int], requested: Optional[int]) -> int:
    """The epoch of the table: `requested` (must be common to all runs) or the last common one.

    Example:
        >>> table_epoch([0, 1, 2], None), table_epoch([0, 1, 2], 1)
        (2, 1)
    """
    if requested is None:
        return common[-1]
    if requested not in common:
        raise OverfocusError(f"--epoch {requested} was not analysed in every run: choose from "
                             f"{', '.join(map(str, common))}")
    return requested


def analysed_ids(analysis: Analysis, epoch: int) -> set:
    """Image ids in the records of `epoch` (the images the summary's means are taken over)."""
    records = read_records(analysis.run_dir, epochs=[epoch])
    if not records:
        raise OverfocusError(f"{analysis.run_dir} has no records of epoch {epoch}: re-run "
                             f"`overfocus analyze {analysis.run_dir}`")
    return {r["image_id"] for r in records if r["image_id"] != ALL_IMAGES}


def align_images(runs: Dict[str, Analysis], epoch: int) -> Alignment:
    """Compare means over the same images: when the runs analysed different images, replace each
    run's summary by one recomputed from its records restricted to the images common to all runs."""
    ids = {label: analysed_ids(a, epoch) for label, a in runs.items()}
    common = set.intersection(*ids.values())
    if not common:
        raise OverfocusError(f"runs {', '.join(runs)} share no analysed image at epoch {epoch}: analyse them on "
                             "the same data and split (`overfocus analyze RUN --split test`, without --limit)")
    recompute = any(v != common for v in ids.values())
    if recompute:
        for a in runs.values():
            a.summary = _summary_on(a, common)
    return Alignment(epoch, len(common), recompute)


def _summary_on(analysis: Analysis, ids: set) -> List[Dict]:
    """The run's summary rows recomputed (same code as analyze) from its records of the images `ids`."""
    keep = [r for r in read_records(analysis.run_dir, epochs=analysis.epochs)
            if r["image_id"] in ids or r["image_id"] == ALL_IMAGES]
    return summarize_records(keep)


def _metrics_of(analysis: Analysis, method: str) -> set:
    return {r["metric"] for r in analysis.summary if r["method"] in (method, "model")}


def common_metrics(runs: Dict[str, Analysis], method: str, requested: Optional[Sequence[str]]) -> List[str]:
    meta = merged_info(a.meta for a in runs.values())
    shared = set.intersection(*(_metrics_of(a, method) for a in runs.values()))
    if requested:
        absent = [m for m in requested if m not in shared]
        if absent:
            raise OverfocusError(f"metric {absent[0]!r} is not in every run's summary: choose from "
                                 f"{', '.join(order_metrics(meta, shared)) or 'nothing (analyse the runs first)'}")
        return list(requested)
    return order_metrics(meta, shared)


def video_indices(runs: Dict[str, Analysis], order: Dict[str, List[int]], count: Optional[int],
                  style: FrameStyle) -> List[int]:
    """The common probe images the video shows: the first `count` (--probes), by default as many
    as fit with the runs' panels side by side at a readable size (`frames.fitting_cells`)."""
    if count is not None and count < 1:
        raise OverfocusError(f"--probes {count} must be at least 1")
    total = len(order[next(iter(runs))])
    ref = next(iter(runs.values())).probe
    default = fitting_cells(len(runs), style.width, ref.images.shape[1] / ref.images.shape[2], COMPARE_HEADER + len(runs))
    return list(range(min(total, count or default)))


COMPARE_HEADER = 4  # header lines of a compare frame besides one line per run


def _plots(runs: Dict[str, Analysis], method: str, metrics: List[str], out: Path, meta: Dict, align: Alignment,
           fmt: str = "png", chosen: bool = False) -> List[Path]:
    """metrics.FMT (the --metrics panels, by default at most six like render's) and gap.FMT."""
    from .plots import default_panels, panel_metrics, plot_compare_gap, plot_compare_metrics

    names = ", ".join(runs)
    written = []
    if metrics:
        note = f"means over the {align.n_images} analysed images common to all runs" + (
            " (recomputed from the records)" if align.recomputed else "")
        title = f"{names}: {method_title(meta, method)} metrics per epoch, 95% CI"
        written.append(plot_compare_metrics({k: a.summary for k, a in runs.items()}, out / f"metrics.{fmt}",
                                            panel_metrics(metrics) if chosen else default_panels(panel_metrics(metrics)),
                                            method, title, meta=meta, note=note))
    if all(a.metrics for a in runs.values()):
        chances = {a.chance() for a in runs.values()}
        written.append(plot_compare_gap({k: a.metrics for k, a in runs.items()}, out / f"gap.{fmt}",
                                        f"{names}: accuracy and generalization gap per epoch",
                                        note="accuracies from each run's metrics.jsonl (its own train and test sets)",
                                        chance=chances.pop() if len(chances) == 1 else None,
                                        counts={k: a.accuracy_counts() for k, a in runs.items()}))
    return written


# --- video --------------------------------------------------------------------------------------

def compare_header(runs: Dict[str, Analysis], method: str, epoch: int) -> List[str]:
    """Title, epoch, one line per run (accuracies, gap, mean area ratio), legend."""
    title = method_title(merged_info(a.meta for a in runs.values()), method)
    lines = [f"{title}: {' | '.join(runs)} (left to right)", f"epoch {epoch} (epochs common to all runs)"]
    for label, a in runs.items():
        row = a.metrics_row(epoch) or {}
        gap = row.get("gap")
        lines.append(f"{label}: train {fmt_pct(row.get('train_acc'))}, test {fmt_pct(row.get('test_acc'))}, gap "
                     f"{'n/a' if gap is None else f'{100 * gap:+.1f} pts'}, {a.metric_info(HEADER_METRIC).title} "
                     f"{fmt_num(a.summary_value(epoch, method, HEADER_METRIC))}"
                     f"{empty_text(a.empty_maps(epoch, method))}")
    has_boxes = any(a.probe.has_boxes for a in runs.values())
    return lines + [legend_line(has_boxes, "each run's prediction"), NORMALISATION_NOTE]


def compare_frames(runs: Dict[str, Analysis], order: Dict[str, List[int]], method: str, epochs: Sequence[int],
                   indices: Sequence[int], style: FrameStyle):
    """One frame per common epoch: per probe image, one panel per run."""
    ref = next(iter(runs.values())).probe
    layout = compute_layout(len(indices), len(runs), style.width, ref.images.shape[1] / ref.images.shape[2],
                            header_lines=COMPARE_HEADER + len(runs))
    for epoch in epochs:
        loaded = {label: a.load_epoch(epoch) for label, a in runs.items()}
        cells = [_cell(runs, order, loaded, method, i, layout.panel_w, style) for i in indices]
        yield compose_frame(layout, cells, compare_header(runs, method, epoch), style.cmap)


def _cell(runs, order, loaded, method: str, i: int, width: int, style: FrameStyle) -> Cell:
    panels, captions = [], []
    for label, a in runs.items():
        j, maps = order[label][i], loaded[label]
        if method not in maps.maps:
            raise OverfocusError(f"probe maps of epoch {maps.epoch} in {a.run_dir} lack {method!r}: "
                                 f"re-run `overfocus analyze {a.run_dir}`")
        panels.append(attribution_panel(a.probe.images[j], maps.maps[method][j], a.probe.boxes_of(j), width,
                                        style.alpha, style.cmap))
        captions.append(prediction_caption(int(maps.pred[j]), float(maps.conf[j]), int(a.probe.labels[j]),
                                           a.probe.classes))
    first = next(iter(runs.values())).probe
    return Cell(first.class_name(int(first.labels[order[next(iter(runs))][i]])), panels, captions, list(runs))


# --- tables -------------------------------------------------------------------------------------

def last_epoch_rows(runs: Dict[str, Analysis], method: str, metrics: Sequence[str], epoch: int) -> List[Dict]:
    """Per run at the aligned `epoch`: accuracies, and each metric's mean and CI."""
    rows = []
    for label, a in runs.items():
        acc = a.metrics_row(epoch) or {}
        row = {"label": label, "run": str(a.run_dir), "epoch": epoch, "method": method,
               **{k: acc.get(k, math.nan) for k in ("train_acc", "test_acc", "gap")}}
        for metric in metrics:
            row.update(_metric_cells(a, epoch, method, metric))
        rows.append(row)
    return rows


def _metric_cells(a: Analysis, epoch: int, method: str, metric: str) -> Dict[str, float]:
    hit = [r for r in a.summary if r["epoch"] == epoch and r["metric"] == metric and r["method"] in (method, "model")]
    hit.sort(key=lambda r: r["method"] != method)  # the method's own row before a `model` row
    r = hit[0] if hit else {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    return {metric: r["mean"], f"{metric}_ci_low": r["ci_low"], f"{metric}_ci_high": r["ci_high"]}


def _cell_text(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def tables_csv(rows: List[Dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell_text(v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


# What a paper's table shows, in this order, where analysed: the spread of attention over all and
# over non-empty maps, the empty share, localisation, agreement with people, latent coverage.
PAPER_COLUMNS = ("area_ratio", "area_ratio_nondegenerate", "degenerate", "energy_pg", "pointing_game", "hit",
                 "harmonization", "unit_coverage_latent", "coverage_latent")
MAX_TABLE_METRICS = 7  # with run, test accuracy and gap: at most 10 columns


def table_metrics(metrics: Sequence[str]) -> List[str]:
    """The metric columns of last_epoch.md (the CSV keeps them all): PAPER_COLUMNS that were
    analysed, then the others in their order, at most MAX_TABLE_METRICS.

    Example:
        >>> table_metrics(["gini", "area_ratio", "hit", "confidence"])
        ['area_ratio', 'hit', 'gini', 'confidence']
    """
    preferred = [m for m in PAPER_COLUMNS if m in metrics]
    return (preferred + [m for m in metrics if m not in preferred])[:MAX_TABLE_METRICS]


def tables_markdown(rows: List[Dict], metrics: Sequence[str], meta: Optional[Dict] = None) -> str:
    """A Markdown table a paper can take: one row per run, test accuracy and gap, and the
    `table_metrics` columns as mean [95% CI], titled from the metadata (8-10 columns)."""
    shown = table_metrics(metrics)
    head = ["run", "test acc", "gap (pts)"] + [metric_info(meta or {}, m).title for m in shown]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], fmt_pct(r["test_acc"]), "n/a" if not np.isfinite(r["gap"]) else f"{100 * r['gap']:+.1f}"]
        cells += [_mean_ci(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"]) for m in shown]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_ci(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo == hi:
        return f"{mean:.3f}"
    return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def write_tables(runs: Dict[str, Analysis], method: str, metrics: Sequence[str], out: Path, align: Alignment,
                 meta: Optional[Dict] = None) -> List[Path]:
    rows = last_epoch_rows(runs, method, metrics, align.epoch)
    how = ("recomputed from the records on the images common to all runs" if align.recomputed
           else "every run analysed these same images")
    md = (f"# Runs at epoch {align.epoch} ({method_title(meta or {}, method)})\n\n"
          f"Aligned: epoch {align.epoch}, the last epoch analysed in every run (choose another with --epoch); "
          f"{align.n_images} analysed images common to all runs ({how}).\n\n"
          "Metrics: mean [95% bootstrap CI] over those images; accuracies from each run's metrics.jsonl; "
          "gap = train - test accuracy. Every metric, the train accuracy and the intervals as numbers: "
          "last_epoch.csv.\n\n" + tables_markdown(rows, metrics, meta))
    atomic_write_text(out / "last_epoch.md", md)
    atomic_write_text(out / "last_epoch.csv", tables_csv(rows))
    return [out / "last_epoch.md", out / "last_epoch.csv"]
