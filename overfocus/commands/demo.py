"""`overfocus demo`: train -> analyze -> render on the built-in data, in a few minutes on 2 CPU cores."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW

EXAMPLES = """examples:
  overfocus demo                      # writes runs/demo
  overfocus demo --out /tmp/d --force
  overfocus demo --epochs 3           # quicker, for a smoke test
"""

DEMO_OVERRIDES = [
    "data.spec=builtin?classes=6&train=2000&test=400",
    "data.image_size=64",
    "model.name=vgg11",
    "model.width=0.25",
    "optim.lr=0.001",
    "train.epochs=10",
]


def register(sub) -> None:
    p = sub.add_parser("demo", help="train, analyze and render a small run on the built-in data",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 10)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import build_config
    from ..train import train

    overrides = list(DEMO_OVERRIDES) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    out = train(build_config(overrides=overrides), Path(args.out), force=args.force)
    print(f"demo run written to {out}")
    print(f"  checkpoints (epoch 0 = initial weights): {out / 'checkpoints'}")
    print(f"  per-epoch accuracy and gap:              {out / 'metrics.jsonl'}")
    print(f"  resolved configuration and versions:     {out / 'run.json'}")
    for line in _next_steps(out):
        print(line)
    return 0


def _next_steps(out: Path) -> list:
    return ["next:", f"  overfocus train --help                  # train on your own data"]
