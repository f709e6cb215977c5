"""The seed's Table 3/4 as Markdown: one row per method, mean ± std over seeds, from finished runs.

Reads only files: each run's `metrics.jsonl` (test accuracy and generalization gap),
`<run>/analysis/summary.csv` (attention metrics and neuron coverage, from `overfocus analyze`)
and, when present, `<run>/analysis-osie/summary.csv` (harmonization with human maps, from
`overfocus analyze RUN --human osie:PATH --out RUN/analysis-osie`). Runs are grouped by the name
of their parent folder (`runs/table/sgdrop/seed0` -> `sgdrop`); every number is taken at the last
analysed epoch of each run (or `--epoch`), and test accuracy and gap at that same epoch.

    python analysis/make_table.py runs/table/{vanilla,dropout,sgdrop}/seed* --out runs/table/table.md

Columns: test accuracy (%), gap (train accuracy in eval mode on the fixed train subset minus test
accuracy, percentage points), area ratio over all maps (an empty map counts 0) and over non-empty
maps, the share of empty maps, hit ratio, energy pointing game (of the `--method` maps, Grad-CAM by
default), neuron coverage global and latent (unit level by default, `--coverage-level channel` for
channels; per image by default, `--coverage cumulative` over the analysed set), and harmonization
(mean Spearman / ceiling) when an analysis with human maps exists.

Below the table, the seed's four claims are judged seed by seed (analysis/claims.py) when the runs
hold both the `--reference` (vanilla) and the `--treatment` (sgdrop) group.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import claims
from runs_io import (RunsError, atomic_write_text, group_runs, mean_std, pick_epoch, read_manifest,
                     read_metrics, read_summary)


@dataclass(frozen=True)
class Column:
    """One table column: where its number comes from and how it is printed."""

    header: str
    source: str  # metrics | leak (true-mask minus no-mask accuracy, key = split suffix) | map | model | human
    key: str
    scale: float = 1.0
    digits: int = 3


def columns(coverage: str, level: str = "unit") -> List[Column]:
    """The Table 3/4 columns.

    coverage: `cumulative` (over the analysed images, DeepXplore's definition) or `per-image`;
    level: `unit` (every element of a post-ReLU map is a neuron: the reading that fits the seed's
    Table 4, docs/conventions.md) or `channel`.
    """
    suffix = "_cumulative" if coverage == "cumulative" else ""
    prefix, name = ("unit_", "units") if level == "unit" else ("", "channels")
    return [Column("Test acc. (%)", "metrics", "test_acc", 100.0, 1),
            Column("Gap (pp)", "metrics", "gap", 100.0, 1),
            Column("Area ratio", "map", "area_ratio"),
            Column("Area ratio (non-empty)", "map", "area_ratio_nondegenerate"),
            Column("Empty maps (%)", "map", "degenerate", 100.0, 1),
            Column("Hit ratio", "map", "hit"),
            Column("Energy PG", "map", "energy_pg"),
            Column(f"NC global ({name})", "model", f"{prefix}coverage_global{suffix}"),
            Column(f"NC latent ({name})", "model", f"{prefix}coverage_latent{suffix}"),
            Column("Harmonization", "human", "harmonization"),
            *LEAK_COLUMNS]


# The label-leak diagnostic of label-masked regularizers (metrics.jsonl, docs/methods.md "The label
# leak"): the leak (true-label mask minus no mask, points) on both splits, then the four test-split
# accuracies. Shown only when some run has them.
LEAK_COLUMNS = [Column("Leak train (pp)", "leak", "", 100.0, 1),
                Column("Leak test (pp)", "leak", "_test", 100.0, 1),
                Column("True-mask acc. (%)", "metrics", "leak_true_mask_acc_test", 100.0, 1),
                Column("No-mask acc. (%)", "metrics", "leak_no_mask_acc_test", 100.0, 1),
                Column("Wrong-mask acc. (%)", "metrics", "leak_wrong_mask_acc_test", 100.0, 1),
                Column("Pred-mask acc. (%)", "metrics", "leak_pred_mask_acc_test", 100.0, 1)]


@dataclass
class RunValues:
    """The numbers of one run at its table epoch (None where the run lacks the metric)."""

    path: Path
    epoch: int
    seed: int
    values: Dict[str, Optional[float]]
    human_epoch: Optional[int] = None


def run_values(run: Path, cols: Sequence[Column], args: argparse.Namespace) -> RunValues:
    """Collect one run's numbers for every column."""
    summary = read_summary(run / args.analysis)
    epoch = pick_epoch(summary, args.method, args.epoch, run / args.analysis)
    metrics = read_metrics(run)
    if epoch not in metrics:
        raise RunsError(f"{run}/metrics.jsonl has no epoch {epoch}, which is analysed: was the run retrained?")
    human, human_epoch = human_summary(run / args.human, args.method, epoch)
    if human_epoch is not None and human_epoch != epoch:
        print(f"make_table: warning: {run}: harmonization of epoch {human_epoch}, other columns of "
              f"epoch {epoch}", file=sys.stderr)
    values = {}
    for col in cols:
        values[col.header] = lookup(col, metrics[epoch], summary, human, epoch, human_epoch, args.method)
    return RunValues(run, epoch, int(read_manifest(run).get("seed", -1)), values, human_epoch)


def human_summary(folder: Path, method: str, epoch: int):
    """The human-map analysis of a run, if any, and the epoch to read (the table's, else its last)."""
    if not (folder / "summary.csv").is_file():
        return {}, None
    summary = read_summary(folder)
    epochs = sorted({e for e, m, k in summary if m == method and k == "harmonization"})
    if not epochs:
        return {}, None
    return summary, (epoch if epoch in epochs else epochs[-1])


def lookup(col: Column, metrics_row: dict, summary, human, epoch: int, human_epoch: Optional[int],
           method: str) -> Optional[float]:
    """One column's raw value for one run, scaled; None when absent."""
    if col.source == "metrics":
        value = metrics_row.get(col.key)
    elif col.source == "leak":
        true, none = metrics_row.get("leak_true_mask_acc" + col.key), metrics_row.get("leak_no_mask_acc" + col.key)
        value = None if true is None or none is None else true - none
    elif col.source == "human":
        value = human.get((human_epoch, method, col.key)) if human_epoch is not None else None
    else:
        value = summary.get((epoch, method if col.source == "map" else "model", col.key))
    return None if value is None else float(value) * col.scale


def cell(values: List[float], digits: int, n_runs: int) -> str:
    """`mean ± std` over the runs that have the value; `(n=k)` when some runs lack it."""
    if not values:
        return "n/a"
    mean, std = mean_std(values)
    text = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")
    return text + (f" (n={len(values)})" if len(values) < n_runs else "")


def build_rows(groups: Dict[str, List[RunValues]], cols: Sequence[Column]) -> List[dict]:
    """One dict per group: cells for Markdown plus means/stds for the CSV."""
    rows = []
    for name, runs in groups.items():
        row = {"method": name, "seeds": len(runs), "cells": {}, "stats": {}}
        for col in cols:
            vals = [r.values[col.header] for r in runs if r.values[col.header] is not None]
            row["cells"][col.header] = cell(vals, col.digits, len(runs))
            row["stats"][col.header] = mean_std(vals) + (len(vals),) if vals else (None, None, 0)
        rows.append(row)
    return rows


def to_markdown(rows: List[dict], cols: Sequence[Column], caption: str) -> str:
    """A GitHub Markdown table followed by its caption."""
    headers = ["Method", "Seeds"] + [c.header for c in cols]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join([row["method"], str(row["seeds"])] +
                                        [row["cells"][c.header] for c in cols]) + " |")
    return "\n".join(lines) + "\n\n" + caption + "\n"


def to_csv(rows: List[dict], cols: Sequence[Column]) -> str:
    """Long CSV: method, column, mean, std, n (empty mean where no run has the value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "column", "mean", "std", "n"])
    for row in rows:
        for col in cols:
            mean, std, n = row["stats"][col.header]
            writer.writerow([row["method"], col.header, "" if mean is None else repr(mean),
                             "" if std is None else repr(std), n])
    return buf.getvalue()


def caption(groups: Dict[str, List[RunValues]], args: argparse.Namespace, has_human: bool,
            has_leak: bool = False) -> str:
    """What the numbers are: data, epoch(s), map method, layer, conventions."""
    first = next(iter(groups.values()))[0].path
    settings = json.loads((first / args.analysis / "analysis.json").read_text())
    epochs = sorted({r.epoch for runs in groups.values() for r in runs})
    spec = read_manifest(first).get("config", {}).get("data", {}).get("spec", "?")
    parts = [f"Data `{spec}`; epoch {', '.join(map(str, epochs))} "
             f"({'as asked' if args.epoch is not None else 'last analysed'}) of each run; mean ± std "
             f"(ddof 1) over seeds. Maps: `{args.method}` at layer `{settings.get('layer', '?')}`, "
             f"explained class `{settings.get('target', '?')}`, {settings.get('split', 'test')} split. "
             f"Gap = train accuracy (eval mode, fixed train subset) - test accuracy. NC = neuron "
             f"coverage (DeepXplore, post-ReLU, threshold 0, {args.coverage_level} level, {args.coverage}). "
             f"Empty maps are all zero or non-finite; they count 0 in Area ratio and are left out of "
             f"Area ratio (non-empty)."]
    if has_leak:
        parts.append(" Leak = accuracy of the online network with the training mask of the true label minus "
                     "without a mask (points; train subset and test split, a few hundred fixed images each; "
                     "n/a for methods without a label-dependent mask); True-/No-/Wrong-/Pred-mask acc. = the "
                     "test split's accuracy with the true label's mask, without a mask, with a wrong label's "
                     "mask and with the predicted class's mask (docs/methods.md, \"The label leak\").")
    if has_human:
        parts.append(f" Harmonization: Spearman of the `{args.method}` map (predicted class) with the "
                     f"blurred human map, from `{args.human}/`.")
    return "".join(parts)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Runs are grouped by the name of their parent folder.")
    p.add_argument("runs", nargs="+", help="run folders (trained and analysed)")
    p.add_argument("--method", default="grad_cam", help="attribution method of the map metrics")
    p.add_argument("--epoch", type=int, help="epoch to tabulate (default: each run's last analysed)")
    p.add_argument("--analysis", default="analysis", help="analysis folder inside each run")
    p.add_argument("--human", default="analysis-osie", help="human-map analysis folder inside each run")
    p.add_argument("--coverage", choices=("cumulative", "per-image"), default="per-image",
                   help="neuron coverage per image (mean) or cumulative over the analysed images")
    p.add_argument("--coverage-level", choices=("unit", "channel"), default="unit",
                   help="a neuron is one element of a post-ReLU map (unit) or one channel")
    p.add_argument("--reference", default="vanilla", help="group the claims compare against")
    p.add_argument("--treatment", default="sgdrop,sgdrop_remedy",
                   help="group(s) whose claims are judged, comma-separated (those present)")
    p.add_argument("--out", help="write the Markdown here (default: print it)")
    p.add_argument("--csv", help="also write the means and stds as CSV here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    cols = columns(args.coverage, args.coverage_level)
    try:
        groups = {name: [run_values(r, cols, args) for r in runs]
                  for name, runs in group_runs(args.runs).items()}
    except (RunsError, OSError, ValueError, KeyError) as exc:
        print(f"make_table: error: {exc}", file=sys.stderr)
        return 2
    warn_duplicates(groups)
    has_human = any(r.values["Harmonization"] is not None for runs in groups.values() for r in runs)
    cols = cols if has_human else [c for c in cols if c.source != "human"]
    has_leak = any(r.values[c.header] is not None for c in LEAK_COLUMNS for runs in groups.values() for r in runs)
    cols = cols if has_leak else [c for c in cols if c not in LEAK_COLUMNS]
    rows = build_rows(groups, cols)
    text = to_markdown(rows, cols, caption(groups, args, has_human, has_leak))
    treatments = [t for t in args.treatment.split(",") if t in groups]
    if args.reference in groups and treatments:
        onsets = {r.seed: o for r in groups[args.reference]
                  if (o := claims.read_onset(r.path, args.analysis, args.method)) is not None}
        for treatment in treatments:
            text += "\n" + claims.claims_markdown({name: claims.by_seed(runs) for name, runs in groups.items()},
                                                  onsets, args.reference, treatment, args.method)
    if args.out:
        atomic_write_text(Path(args.out), text)
    else:
        sys.stdout.write(text)
    if args.csv:
        atomic_write_text(Path(args.csv), to_csv(rows, cols))
    return 0


def warn_duplicates(groups: Dict[str, List[RunValues]]) -> None:
    """Two runs of one group with the same seed count twice in the std: say so on stderr."""
    for name, runs in groups.items():
        seeds = [r.seed for r in runs]
        if len(set(seeds)) < len(seeds):
            print(f"make_table: warning: group {name!r} has runs with the same seed {seeds}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
