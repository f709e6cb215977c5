"""`overfocus tensorboard RUN`: export an analysed run's scalars and probe overlays to TensorBoard."""
from __future__ import annotations

import argparse

from .common import RAW

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus tensorboard runs/demo                   # writes runs/demo/tensorboard
  overfocus tensorboard runs/demo --logdir tb       # writes tb/demo
  overfocus tensorboard runs/sgdrop --logdir tb     # ... and tb/sgdrop beside it (see `overfocus demo`'s next lines)
  tensorboard --logdir tb                           # needs the tensorboard program; opens a web page

needs the tensorboard package (pip install tensorboard) and `overfocus analyze RUN` first.
"""


def register(sub) -> None:
    p = sub.add_parser("tensorboard", help="export an analysed run to TensorBoard event files",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory analysed by `overfocus analyze`")
    p.add_argument("--logdir", help="TensorBoard log root; the run goes to LOGDIR/<run name> "
                   "(default RUN/tensorboard)")
    p.add_argument("--size", type=int, default=512, help="width of the probe images in pixels (default 512)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render.tensorboard import export

    folder = export(args.run, args.logdir, size=args.size)
    print(f"TensorBoard events written to {folder}\n  view: tensorboard --logdir {folder.parent if args.logdir else folder}")
    return 0
