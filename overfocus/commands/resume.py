"""`overfocus resume RUN`: continue a run from its last durable checkpoint."""
from __future__ import annotations

import argparse

from .common import RAW

EXAMPLES = """examples:
  overfocus resume runs/shapes               # after a crash or Ctrl-C
  overfocus resume runs/shapes --epochs 40   # train further than first planned
"""


def register(sub) -> None:
    p = sub.add_parser("resume", help="continue a run from its last durable checkpoint", epilog=EXAMPLES,
                       formatter_class=RAW)
    p.add_argument("run", help="run directory written by `overfocus train`")
    p.add_argument("--epochs", type=int, help="new total number of epochs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import resume

    out = resume(args.run, args.epochs)
    print(f"run complete: {out}")
    return 0
