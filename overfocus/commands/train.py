"""`overfocus train`: train a model, a checkpoint per epoch, into a run directory."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from ..errors import OverfocusError
from .common import RAW, add_config_args, add_shortcut_args, shortcut_overrides, with_continue_command

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus train --out runs/shapes --epochs 10
  overfocus train --data tiny-imagenet:../shared/data/tiny-imagenet-10 --model vgg11 \\
      --set model.width=0.25 --epochs 30 --out runs/tin-vanilla   # needs that folder
  overfocus train --data cub:/data/CUB_200_2011 --set data.image_size=128 \\
      --set regularizer.name=sgdrop --set regularizer.rho=0.01 --out runs/cub-sgdrop   # needs CUB-200-2011
  overfocus train --like runs/demo --set regularizer.name=dropout --out runs/dropout   # the demo's setup, dropout
  overfocus train --config runs/demo/run.json --set optim.lr=0.01 --out runs/lr01   # or your own YAML file
  overfocus train --like runs/demo --epochs 2 --nproc 2 --out runs/ddp   # DDP on this machine (as torchrun below)
  overfocus train --out runs/shapes --tensorboard tb/shapes   # then: tensorboard --logdir tb
  overfocus train --out runs/shapes2 --wandb overfocus   # needs the wandb package; W&B files in runs/shapes2/wandb
  torchrun --nproc_per_node=4 -m overfocus train --device cuda --out runs/ddp4   # needs 4 GPUs
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model with a checkpoint per epoch", epilog=EXAMPLES,
                       formatter_class=RAW)
    add_config_args(p)
    add_shortcut_args(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace an existing run directory")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="log each epoch's metrics and the probe-set attention overlays to TensorBoard in DIR "
                        "while training (needs the tensorboard package)")
    p.add_argument("--wandb", metavar="PROJECT",
                   help="log the same as --tensorboard to this Weights & Biases project while training "
                        '(pip install "overfocus[wandb]"; WANDB_MODE=offline logs to local files)')
    p.add_argument("--nproc", type=int, default=0,
                   help="launch N processes with torchrun on this machine (DistributedDataParallel)")
    p.set_defaults(func=run)


def relaunch_with_torchrun(nproc: int, command: str, argv: list) -> int:
    """Re-run this command under `torch.distributed.run` with `nproc` local processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "overfocus", command, *argv]
    return subprocess.call(cmd)


def strip_nproc(argv: list) -> list:
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def config_source(args: argparse.Namespace):
    """The file the configuration starts from: --config, or RUN/run.json of --like RUN."""
    from ..errors import OverfocusError

    if not args.like:
        return args.config
    manifest = Path(args.like) / "run.json"
    if not manifest.is_file():
        raise OverfocusError(f"--like {args.like}: no run.json there; pass a run directory written by "
                             "`overfocus train` (e.g. runs/demo after `overfocus demo`)")
    warn_unrecorded_training(manifest, args.like)
    return str(manifest)


def warn_unrecorded_training(manifest: Path, like: str) -> None:
    """A run recorded by a Tracker (or `analyze FOLDER`) has data and model but no training recipe:
    say on stderr that the optimizer, schedule and regularizer are the defaults (or --set)."""
    import sys

    from ..runs.rundir import RunDir, recorded_by

    kind = recorded_by(RunDir(manifest.parent).read_manifest())  # a damaged run.json: one line here
    if kind:
        print(f"overfocus train: --like {like}: that run was recorded by {kind!r}, which keeps its data and model "
              "but not how it was trained: optimizer, schedule, epochs and regularizer are the defaults "
              "(set them with --set)", file=sys.stderr)


def recipe_line(cfg, args: argparse.Namespace) -> str:
    """What this call trains, in one line; a model nobody chose is named as the default.

    Example:
        >>> from overfocus.config import build_config
        >>> args = argparse.Namespace(model=None, overrides=[], config=None, like=None)
        >>> recipe_line(build_config(), args)
        'overfocus train: cifarnet (width 1, the default model: --model NAME chooses another) on builtin at 64 px, 10 epochs, regularizer none'
    """
    chosen = args.model or getattr(args, "config", None) or getattr(args, "like", None) or \
        any(o.startswith("model.name=") for o in getattr(args, "overrides", []) or [])
    default = "" if chosen else ", the default model: --model NAME chooses another"
    return (f"overfocus train: {cfg.model.name} (width {cfg.model.width:g}{default}) on {cfg.data.spec} at "
            f"{cfg.data.image_size} px, {cfg.train.epochs} epochs, regularizer {cfg.regularizer.name}")


def run(args: argparse.Namespace) -> int:
    from ..config import build_config
    from ..training.engine import train

    cfg = build_config(config_source(args), shortcut_overrides(args) + args.overrides)  # validate before launching
    if args.tensorboard:
        from ..render.tensorboard import require_tensorboard

        require_tensorboard()  # before any training, not after the first epoch
    if args.wandb:
        from ..render.wandb import require_wandb

        require_wandb()
    if args.nproc > 1:
        argv = args.argv[args.argv.index("train") + 1:]
        return relaunch_with_torchrun(args.nproc, "train", strip_nproc(argv))
    from ..distributed import env_info

    if env_info().is_main:
        print(recipe_line(cfg, args), flush=True)  # stdout: stderr is for warnings and the one error line
    try:
        out = train(cfg, Path(args.out), force=args.force, tensorboard=args.tensorboard, wandb=args.wandb)
    except OverfocusError as exc:
        raise with_continue_command(exc, args.out) from None
    from ..distributed import env_info

    if env_info().is_main:
        print(f"run written to {out}\n  checkpoints: {out / 'checkpoints'}\n  metrics:     {out / 'metrics.jsonl'}")
    return 0
