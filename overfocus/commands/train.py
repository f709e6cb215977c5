"""`overfocus train`: train a model, a checkpoint per epoch, into a run directory."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW, add_config_args, add_shortcut_args, shortcut_overrides

EXAMPLES = """examples:
  overfocus train --out runs/shapes --epochs 10
  overfocus train --data tiny-imagenet:../shared/data/tiny-imagenet-10 --model vgg11 \\
      --set model.width=0.25 --epochs 30 --out runs/tin-vanilla
  overfocus train --data cub:/data/CUB_200_2011 --set data.image_size=128 \\
      --set regularizer.name=sgdrop --set regularizer.rho=0.01 --out runs/cub-sgdrop
  overfocus train --config my.yaml --set optim.lr=0.01 --out runs/x
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model with a checkpoint per epoch", epilog=EXAMPLES,
                       formatter_class=RAW)
    add_config_args(p)
    add_shortcut_args(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import build_config
    from ..train import train

    cfg = build_config(args.config, shortcut_overrides(args) + args.overrides)
    out = train(cfg, Path(args.out), force=args.force)
    print(f"run written to {out}\n  checkpoints: {out / 'checkpoints'}\n  metrics:     {out / 'metrics.jsonl'}")
    return 0
