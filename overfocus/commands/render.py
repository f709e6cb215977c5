"""`overfocus render RUN`: videos, plots and filmstrips of an analysed run into RUN/figures/."""
from __future__ import annotations

import argparse
import sys

from .common import RAW, finite_float

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus render runs/demo                                  # every analysed method, MP4 + GIF
  overfocus render runs/demo --methods grad_cam,sgdrop --side-by-side
  overfocus render runs/demo --formats gif --size 480 --fps 4 --alpha 0.6 --cmap viridis
  overfocus render runs/demo --filmstrip-epochs 0,5,10 --tensorboard
  overfocus render runs/demo --filmstrip-rows class:cat,class:cat,class:dog   # these rows, in this order
  overfocus render runs/demo --format pdf                     # vector gap.pdf and metrics.pdf for a paper
  overfocus render runs/demo --metrics area_ratio,gini,entropy   # these panels of metrics.png, in this order

writes RUN/figures/: evolution_<method>.mp4/.gif (one frame per analysed epoch),
filmstrip_<method>.png, gap.png (train/test accuracy, gap shaded), metrics.png (curves of the
metrics that vary, with 95% bootstrap bands; constant ones listed in a note), explorer.html (one
offline page: an epoch slider over every probe image and method, curves, see `overfocus explore`;
--no-explorer to skip). Every map is scaled
to its own maximum (colour bar 0-1). Needs `overfocus analyze RUN` first.
"""


def csv_list(text: str) -> list:
    return [t.strip() for t in text.split(",") if t.strip()]


def epoch_list(text: str) -> list:
    try:
        return [int(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of epochs (e.g. 0,5,10)")


def add_style_args(p: argparse.ArgumentParser) -> None:
    """Frame options shared by render and compare."""
    p.add_argument("--fps", type=finite_float, default=2.0, help="video frames (epochs) per second (default 2)")
    p.add_argument("--size", type=int, default=640, help="frame width in pixels, even (default 640)")
    p.add_argument("--alpha", type=finite_float, default=0.5, help="opacity of the attribution overlay, 0-1 (default 0.5)")
    p.add_argument("--cmap", default="inferno", help="Matplotlib colormap of the maps (default inferno)")
    p.add_argument("--formats", default="mp4,gif", help="video formats: mp4, gif or mp4,gif (default both)")
    p.add_argument("--probes", type=int, help="show only the first N probe images in videos (default all)")
    p.add_argument("--format", dest="plot_format", default="png", choices=["png", "pdf", "svg"],
                   help="file format of the static plots gap and metrics (default png; pdf and svg are vector)")


def add_explorer_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-explorer", dest="explorer", action="store_false",
                   help="do not write explorer.html (the page of `overfocus explore`)")


def register(sub) -> None:
    p = sub.add_parser("render", help="videos and plots of an analysed run into RUN/figures",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory analysed by `overfocus analyze`")
    p.add_argument("--methods", type=csv_list, help="attribution methods, comma-separated (default: all analysed)")
    p.add_argument("--side-by-side", action="store_true", help="one video with the methods side by side")
    add_style_args(p)
    p.add_argument("--filmstrip-epochs", type=epoch_list, help="epochs in the filmstrip, e.g. 0,5,10 "
                   "(default: up to 6 spread evenly)")
    p.add_argument("--filmstrip-images", type=int, default=4, help="probe images in the filmstrip (default 4)")
    p.add_argument("--filmstrip-rows", type=csv_list, help="the filmstrip's rows, comma-separated: class:NAME (the "
                   "next probe image of that class; repeat it for more) or id:IMAGE_ID, e.g. class:cat,class:dog "
                   "(default: the first --filmstrip-images probe images, the classes taken in turn)")
    p.add_argument("--metrics", type=csv_list, help="panels of metrics.png, comma-separated, in this order "
                   "(default: the first 6 the analysis holds, map metrics first)")
    p.add_argument("--tensorboard", action="store_true", help="also export to TensorBoard (RUN/tensorboard)")
    add_explorer_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render import RenderOptions, render_run
    from ..render.encode import parse_formats

    opts = RenderOptions(methods=args.methods, side_by_side=args.side_by_side, fps=args.fps, size=args.size,
                         alpha=args.alpha, cmap=args.cmap, formats=parse_formats(args.formats),
                         filmstrip_epochs=args.filmstrip_epochs, probes=args.probes,
                         filmstrip_images=args.filmstrip_images, filmstrip_rows=args.filmstrip_rows,
                         tensorboard=args.tensorboard,
                         plot_format=args.plot_format, explorer=args.explorer, metrics=args.metrics)
    result = render_run(args.run, opts)
    print(f"wrote {len(result.written)} files:")
    for path in result.written:
        print(f"  {path}")
    for note in result.skipped:
        print(f"skipped {note}", file=sys.stderr)
    return 0
