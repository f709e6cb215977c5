"""`overfocus compare RUN_A RUN_B ...`: curves, gap curves, a side-by-side video and a table of runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW
from .render import add_explorer_arg, add_style_args, csv_list

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus compare runs/demo runs/sgdrop      # runs/sgdrop: see the "next" lines of `overfocus demo`
  overfocus compare runs/demo runs/sgdrop --labels vanilla,sgdrop --out figures/cmp
  overfocus compare runs/demo runs/sgdrop --method sgdrop --metrics area_ratio,hit --formats gif

writes into --out (default: compare_<A>_vs_<B> beside the first run): metrics.png (one curve per
run and metric), gap.png (test accuracy and gap per run), evolution.mp4/.gif (the same probe
images under each run, epochs common to all runs), last_epoch.md and last_epoch.csv (at the
last epoch common to all runs, or --epoch), explorer.html (the runs on one page with one epoch
slider, see `overfocus explore`; --no-explorer to skip). Metrics are compared on the analysed images common
to all runs; the runs must share probe images (same data); --format pdf|svg for vector plots.
"""


def register(sub) -> None:
    p = sub.add_parser("compare", help="compare analysed runs: curves, video, last-epoch table",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("runs", nargs="+", help="two or more analysed run directories")
    p.add_argument("--labels", type=csv_list, help="one name per run, comma-separated (default: folder names)")
    p.add_argument("--out", type=Path, help="output folder (default: compare_<A>_vs_<B> beside the first run)")
    p.add_argument("--method", help="attribution method to compare (default: first one analysed in all runs)")
    p.add_argument("--metrics", type=csv_list, help="metrics to plot and tabulate (default: all common ones)")
    p.add_argument("--epoch", type=int, help="epoch of the last_epoch table (default: the last one analysed in "
                   "every run)")
    add_style_args(p)
    add_explorer_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render.compare import CompareOptions, compare_runs
    from ..render.encode import parse_formats

    opts = CompareOptions(labels=args.labels, out=args.out, method=args.method, metrics=args.metrics, fps=args.fps,
                          size=args.size, alpha=args.alpha, cmap=args.cmap, formats=parse_formats(args.formats),
                          probes=args.probes, epoch=args.epoch, plot_format=args.plot_format,
                          explorer=args.explorer)
    result = compare_runs(args.runs, opts)
    print(result.progress)
    print(f"compared {len(args.runs)} runs over epochs {result.epochs[0]}-{result.epochs[-1]} "
          f"({len(result.epochs)} in common); table at epoch {result.epoch} on the {result.n_images} analysed "
          "images common to all runs; wrote:")
    for path in result.written:
        print(f"  {path}")
    return 0
