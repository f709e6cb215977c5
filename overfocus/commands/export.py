"""`overfocus export RUN --to wandb|tensorboard`: a finished, analysed run to an experiment tracker."""
from __future__ import annotations

import argparse

from .common import RAW

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus export runs/demo --to tensorboard              # as `overfocus tensorboard runs/demo`
  overfocus export runs/demo --to wandb --project overfocus   # needs the wandb package and a login
  WANDB_MODE=offline overfocus export runs/demo --to wandb   # needs wandb; local files only, `wandb sync` later

logs what `overfocus tensorboard` writes: every metrics.jsonl number as run/<field>, every
summary mean as <metric>/<method>, and per epoch the evolution-video frame as probe/<method>,
with the epoch as the step. Needs `overfocus analyze RUN` first.
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="export an analysed run to Weights & Biases or TensorBoard",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory analysed by `overfocus analyze`")
    p.add_argument("--to", required=True, choices=["wandb", "tensorboard"], help="where to log the run")
    p.add_argument("--project", help="W&B project (default: wandb's own default or $WANDB_PROJECT)")
    p.add_argument("--name", help="W&B run name (default: the run folder's name)")
    p.add_argument("--logdir", help="TensorBoard log root (as `overfocus tensorboard --logdir`)")
    p.add_argument("--size", type=int, default=512, help="width of the probe frames in pixels (default 512)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import OverfocusError

    if args.to == "tensorboard":
        if args.project or args.name:
            raise OverfocusError("--project and --name are W&B options: use them with --to wandb")
        from ..render.tensorboard import export

        folder = export(args.run, args.logdir, size=args.size)
        print(f"TensorBoard events written to {folder}")
        return 0
    if args.logdir:
        raise OverfocusError("--logdir is a TensorBoard option: use it with --to tensorboard")
    from ..render.wandb import export

    options = {k: v for k, v in (("project", args.project), ("name", args.name)) if v}
    folder = export(args.run, options, size=args.size)
    print(f"logged {args.run} to Weights & Biases; local files in {folder}")
    return 0
