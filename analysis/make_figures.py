"""The seed's Fig. 1 across seeds: attention area shrinking while the generalization gap grows.

Reads only files (`metrics.jsonl` and `<run>/analysis/summary.csv` of each run) and draws one PNG
with three panels over the epochs: the mean map metric of `--method` (by default the Grad-CAM area
ratio over non-empty maps: the fraction of pixels above half the map's maximum, all-zero maps left
out so that "the map went empty" does not read as "attention narrowed"), the generalization gap (train
accuracy in eval mode on the fixed train subset minus test accuracy) and the test accuracy. Runs
are grouped by their parent folder's name (one curve per group: the mean over seeds, with a band
of ± one standard deviation when there are several seeds). The curves are also written as CSV.

    python analysis/make_figures.py runs/table/{vanilla,dropout,sgdrop}/seed* --out runs/table/figures

Writes `<out>/fig1_<metric>_gap.png` and `<out>/fig1_<metric>_gap.csv`. With `--faithfulness`
(an analysis made with `--faithfulness-images N` and the `random` method) it writes instead
`<out>/faith_<method>.png/.csv`: the area ratio beside insertion and deletion (the random map's
curve dashed in the same colour: the chance level) and `sanity_init` (Spearman of the map with
the same image's map under the epoch-0 weights; lower = the map depends more on what was learned):

    python analysis/make_figures.py runs/faithfulness/{vanilla,dropout,sgdrop}/seed* \
        --analysis analysis-faith --faithfulness --method grad_cam --out runs/faithfulness/figures

Per-run videos,
filmstrips and plots come from `overfocus render`; comparisons of runs from `overfocus compare`.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from runs_io import RunsError, atomic_write_text, group_runs, mean_std, read_metrics, read_summary, write_atomically

Curve = Tuple[List[int], List[float], List[float], int]  # epochs, means, stds, number of runs
METRIC_LABELS = {"area_ratio": "area ratio, all maps", "area_ratio_nondegenerate": "area ratio, non-empty maps"}


def metric_curve(runs: Sequence[Path], method: str, metric: str, analysis: str) -> Curve:
    """Mean ± std over runs of a summary metric, on the epochs analysed in every run."""
    per_run = []
    for run in runs:
        summary = read_summary(run / analysis)
        per_run.append({e: v for (e, m, k), v in summary.items() if m == method and k == metric})
    missing = next((run for run, rows in zip(runs, per_run) if not rows), None)
    if missing is not None:  # one run without the rows would silently empty the curve of its group
        raise RunsError(f"no {method}/{metric} rows in {missing / analysis}/summary.csv: check --method/--metric "
                        "(and that every run was analysed the same way)")
    return _aggregate(per_run, 1.0)


def metrics_curve(runs: Sequence[Path], key: str, scale: float) -> Curve:
    """Mean ± std over runs of a metrics.jsonl field (None values, e.g. epoch 0's loss, skipped)."""
    per_run = [{e: r[key] for e, r in read_metrics(run).items() if r.get(key) is not None} for run in runs]
    return _aggregate(per_run, scale)


def _aggregate(per_run: List[Dict[int, float]], scale: float) -> Curve:
    epochs = sorted(set.intersection(*(set(d) for d in per_run)))
    stats = [mean_std([d[e] * scale for d in per_run]) for e in epochs]
    return epochs, [m for m, _ in stats], [s for _, s in stats], len(per_run)


RANDOM = "random"  # the attribution method whose curves are the chance level of faithfulness
FAITH_PANELS = (("area_ratio_nondegenerate", "area ratio, non-empty maps", False),
                ("insertion", "insertion AUC (higher = more faithful)", True),
                ("deletion", "deletion AUC (lower = more faithful)", True),
                ("sanity_init", "Spearman with the epoch-0 map", False))


def faithfulness_curves(runs: Sequence[Path], method: str, analysis: str) -> Dict[str, Curve]:
    """The curves of the faithfulness figure for one group: each panel's metric of `method` and,
    for insertion and deletion, the same metric of the random map (key `random:METRIC`)."""
    curves = {key: metric_curve(runs, method, key, analysis) for key, _, _ in FAITH_PANELS}
    curves.update({f"{RANDOM}:{key}": metric_curve(runs, RANDOM, key, analysis)
                   for key, _, with_random in FAITH_PANELS if with_random})
    return curves


def draw(curves: Dict[str, Dict[str, Curve]], panels: Sequence[Tuple[str, str]], title: str) -> bytes:
    """One row of panels, one line (+ std band) per group; PNG bytes (Agg canvas, no pyplot).

    A panel key with a `random:KEY` curve in the groups gets that curve dashed in the group's colour.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(4.2 * len(panels), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (key, label) in zip(axes, panels):
        for i, (group, by_key) in enumerate(curves.items()):
            epochs, means, stds, n = by_key[key]
            color = f"C{i}"
            ax.plot(epochs, means, color=color, lw=1.8, label=f"{group} (n={n})")
            if n > 1:
                ax.fill_between(epochs, [m - s for m, s in zip(means, stds)],
                                [m + s for m, s in zip(means, stds)], color=color, alpha=0.2, lw=0)
            if f"{RANDOM}:{key}" in by_key:
                r_epochs, r_means, _, _ = by_key[f"{RANDOM}:{key}"]
                ax.plot(r_epochs, r_means, color=color, lw=1.0, ls="--",
                        label="random map (dashed)" if i == 0 else None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(x=0.02)  # no tick one epoch past the last
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    for ax in axes:  # one legend for the figure: a panel's own entries plus the dashed chance line
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0].legend(handles, labels, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no version stamp: same bytes each time
    return buf.getvalue()


def curves_csv(curves: Dict[str, Dict[str, Curve]]) -> str:
    """Long CSV of every curve: group, quantity, epoch, mean, std, n."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["group", "quantity", "epoch", "mean", "std", "n"])
    for group, by_key in curves.items():
        for key, (epochs, means, stds, n) in by_key.items():
            writer.writerows([group, key, e, repr(m), repr(s), n] for e, m, s in zip(epochs, means, stds))
    return buf.getvalue()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Runs are grouped by the name of their parent folder.")
    p.add_argument("runs", nargs="+", help="run folders (trained and analysed)")
    p.add_argument("--out", required=True, help="folder for the PNG and CSV")
    p.add_argument("--method", default="grad_cam", help="attribution method (default grad_cam)")
    p.add_argument("--metric", default="area_ratio_nondegenerate",
                   help="map metric of the first panel (default area_ratio_nondegenerate; area_ratio "
                        "counts empty maps as 0)")
    p.add_argument("--analysis", default="analysis", help="analysis folder inside each run")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--faithfulness", action="store_true",
                   help="draw the faithfulness figure (area ratio, insertion, deletion, sanity_init) instead")
    return p.parse_args(argv)


def fig1_curves(runs: Sequence[Path], args: argparse.Namespace) -> Dict[str, Curve]:
    """The curves of the Fig. 1 figure for one group: the map metric, the gap and the test accuracy."""
    return {args.metric: metric_curve(runs, args.method, args.metric, args.analysis),
            "gap": metrics_curve(runs, "gap", 100.0), "test_acc": metrics_curve(runs, "test_acc", 100.0)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.faithfulness:  # the faithfulness figure of args.method (module docstring)
        curves_of = lambda runs: faithfulness_curves(runs, args.method, args.analysis)  # noqa: E731
        stem = f"faith_{args.method.replace(':', '_')}"
        panels = [(key, f"{label} ({args.method})" if i == 0 else label)
                  for i, (key, label, _) in enumerate(FAITH_PANELS)]
    else:
        curves_of = lambda runs: fig1_curves(runs, args)  # noqa: E731
        stem = f"fig1_{args.metric}_gap"
        panels = [(args.metric, f"{METRIC_LABELS.get(args.metric, args.metric)} ({args.method})"),
                  ("gap", "generalization gap (pp)"), ("test_acc", "test accuracy (%)")]
    try:
        curves = {group: curves_of(runs) for group, runs in group_runs(args.runs).items()}
    except (RunsError, OSError, ValueError, KeyError) as exc:
        print(f"make_figures: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write_atomically(out / f"{stem}.png", draw(curves, panels, args.title))
    atomic_write_text(out / f"{stem}.csv", curves_csv(curves))
    print(f"wrote {out / (stem + '.png')} and {out / (stem + '.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
