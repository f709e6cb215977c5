"""`overfocus explore RUN [RUN ...]`: one offline HTML page to scrub the epochs of analysed runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW
from .render import csv_list

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus explore runs/demo                                  # writes runs/demo/figures/explorer.html
  overfocus explore runs/demo runs/sgdrop --labels vanilla,sgdrop --out cmp.html
  overfocus explore runs/demo --methods grad_cam --probes 8 --cmap viridis

one self-contained HTML file (no server, no network: open it from disk in Chromium or Firefox):
one epoch slider (drag, arrow keys, play) moves every probe image of every run and method; layouts
runs x methods, one run's methods side by side, or run A minus run B; the metric curves with 95%
bands, the slider's epoch, the overfocus onset and the Pareto-optimal epochs of `overfocus
select` marked (click a curve to go to its epoch); a panel per image; filters by class and by
right / wrong prediction. Several runs are aligned as `overfocus compare` aligns them (common
epochs and probe image ids), and the page says so. `render` and `compare` write it too.
"""


def register(sub) -> None:
    p = sub.add_parser("explore", help="one offline HTML page: an epoch slider over every image, run and method",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("runs", nargs="+", help="one or more analysed run directories")
    p.add_argument("--methods", type=csv_list, help="attribution methods, comma-separated (default: all analysed "
                   "in every run)")
    p.add_argument("--labels", type=csv_list, help="one name per run, comma-separated (default: folder names)")
    p.add_argument("--out", type=Path, help="the HTML file (default RUN/figures/explorer.html; for several runs "
                   "compare_<A>_vs_<B>/explorer.html beside the first)")
    p.add_argument("--probes", type=int, help="show only the first N probe images (default all)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the maps over the images, 0-1 (default 0.5)")
    p.add_argument("--cmap", default="inferno", help="Matplotlib colormap of the maps (default inferno)")
    p.add_argument("--map-size", type=int, default=128, help="largest side of a stored map in pixels "
                   "(default 128; smaller = smaller file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render.explore import ExploreOptions, explore

    opts = ExploreOptions(methods=args.methods, labels=args.labels, out=args.out, alpha=args.alpha, cmap=args.cmap,
                          probes=args.probes, map_size=args.map_size)
    path = explore(args.runs, opts)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser: {path.resolve().as_uri()}")
    return 0
