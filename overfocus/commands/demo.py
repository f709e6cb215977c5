"""`overfocus demo`: train -> analyze -> render on the built-in data, in a few minutes on 2 CPU cores."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus demo                      # writes runs/demo; needs no runs/demo yet (else add --force)
  overfocus demo --out runs/demo2 --force
  overfocus demo --epochs 3 --out runs/quick   # quicker, for a smoke test
"""

DEMO_OVERRIDES = [
    "data.spec=builtin?classes=6&train=2000&test=300",
    "data.image_size=64",
    "data.batch_size=32",
    "model.name=vgg11",
    "model.width=0.25",
    "optim.lr=0.001",
    "train.epochs=12",
]


def register(sub) -> None:
    p = sub.add_parser("demo", help="train, analyze and render a small run on the built-in data",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--epochs", type=int, help="number of epochs (default 12)")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-render", action="store_true", help="stop after the analysis")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze
    from ..config import build_config
    from ..render import RenderOptions, render_run
    from ..training.engine import train

    overrides = list(DEMO_OVERRIDES) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    print("1/3 training (a checkpoint per epoch) ...", flush=True)
    out = train(build_config(overrides=overrides), Path(args.out), force=args.force)
    print("2/3 analysing every checkpoint (Grad-CAM + SGDrop maps, metrics) ...", flush=True)
    analyze(out, methods=("grad_cam", "sgdrop"), device="cpu")
    figures = []
    if not args.no_render:
        print("3/3 rendering videos and plots ...", flush=True)
        figures = render_run(out, RenderOptions(methods=["grad_cam"])).written
    _print_summary(out, figures)
    return 0


def _print_summary(out: Path, figures: list) -> None:
    print(f"\ndemo run written to {out}")
    print(f"  checkpoints (epoch 0 = initial weights): {out / 'checkpoints'}")
    print(f"  per-epoch accuracy and gap:              {out / 'metrics.jsonl'}")
    print(f"  resolved configuration and versions:     {out / 'run.json'}")
    print(f"  per-image records and summary:           {out / 'analysis'}")
    for path in figures:
        print(f"  figure: {path}")
    print("next:")
    for line in next_steps(out):
        print(f"  {line}")


def next_steps(out: Path) -> list:
    """The commands the demo suggests next; they run as printed (a test follows them)."""
    sgdrop = out.parent / "sgdrop" if out.name != "sgdrop" else out.parent / "sgdrop-2"
    return [f"overfocus audit {out} --fail-under hit_ratio=0.3          # audit the last checkpoint, HTML report",
            f"overfocus train --like {out} --set regularizer.name=sgdrop --out {sgdrop}   # same setup, SGDrop",
            f"overfocus analyze {sgdrop}",
            f"overfocus compare {out} {sgdrop}                     # curves, video and table side by side",
            "overfocus train --help                                # train on your own data"]
