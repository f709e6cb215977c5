"""`overfocus resume RUN`: continue a run from its last durable checkpoint."""
from __future__ import annotations

import argparse

from ..errors import OverfocusError
from .common import RAW, finite_float, with_continue_command

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus resume runs/demo                 # after a crash or Ctrl-C
  overfocus resume runs/demo --epochs 14     # train further than first planned
  overfocus resume runs/demo --lr 0.0001     # after "training diverged": a lower learning rate
  overfocus resume runs/demo --skip-bad      # after a stop on a corrupt image: skip such files from here on
  overfocus resume runs/demo --epochs 20 --tensorboard tb/demo   # log the new epochs live
  overfocus resume runs/ddp --nproc 2        # needs runs/ddp (train --nproc 2); or torchrun ... -m overfocus resume RUN
"""


def register(sub) -> None:
    p = sub.add_parser("resume", help="continue a run from its last durable checkpoint", epilog=EXAMPLES,
                       formatter_class=RAW)
    p.add_argument("run", help="run directory written by `overfocus train`")
    p.add_argument("--epochs", type=int, help="new total number of epochs")
    p.add_argument("--lr", type=finite_float, help="new learning rate from here on (e.g. after training diverged)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also log the epochs trained from here on to DIR for TensorBoard (scalars and "
                        "probe overlays, as `train --tensorboard`; needs the tensorboard package)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images from here on (with a warning "
                   "each, listed in run.json), as `train --skip-bad`: continues a run that stopped on a bad file")
    p.add_argument("--nproc", type=int, default=0, help="launch N processes with torchrun on this machine")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..distributed import env_info
    from ..runs.rundir import RunDir
    from ..training.engine import resume
    from .train import relaunch_with_torchrun, strip_nproc

    RunDir(args.run).read_manifest()  # a one-line error before any process is launched
    if args.tensorboard:
        from ..render.tensorboard import require_tensorboard

        require_tensorboard()  # before any training, not after the first epoch
    if args.nproc > 1:
        argv = args.argv[args.argv.index("resume") + 1:]
        return relaunch_with_torchrun(args.nproc, "resume", strip_nproc(argv))
    try:
        out = resume(args.run, args.epochs, args.lr, tensorboard=args.tensorboard, skip_bad=args.skip_bad)
    except OverfocusError as exc:
        raise with_continue_command(exc, args.run) from None
    if env_info().is_main:
        print(f"run complete: {out}")
    return 0
