"""Arguments shared by several sub-commands."""
from __future__ import annotations

import argparse
import math

RAW = argparse.RawDescriptionHelpFormatter


def finite_float(text: str) -> float:
    """argparse type of every float option: a finite number (NaN and infinity are usage errors).

    Example:
        >>> finite_float("0.5")
        0.5
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--config", help="YAML or JSON file with sections data/model/optim/train/regularizer, "
                       "or a run's run.json (its resolved configuration)")
    group.add_argument("--like", metavar="RUN", help="start from the configuration of run directory RUN (same data, "
                       "model, test split and probe set); change what differs with --set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, repeatable: --set optim.lr=0.01 --set regularizer.rho=0.01")


def add_shortcut_args(parser: argparse.ArgumentParser) -> None:
    """Short forms of the most used config keys (they win over --config, lose to --set)."""
    parser.add_argument("--data", help="dataset spec: builtin, tiny-imagenet:PATH, cub:PATH, voc:PATH, "
                        "coco:PATH, yolo:PATH, folder:PATH")
    parser.add_argument("--model", help="model name (see `overfocus list`)")
    parser.add_argument("--epochs", type=int, help="number of training epochs (train.epochs)")
    parser.add_argument("--seed", type=int, help="random seed of weights, batches and augmentation (train.seed)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a counted warning")


def shortcut_overrides(args: argparse.Namespace) -> list:
    pairs = [("data.spec", args.data), ("model.name", args.model), ("train.epochs", args.epochs),
             ("train.seed", args.seed), ("train.device", args.device)]
    out = [f"{k}={v}" for k, v in pairs if v is not None]
    if getattr(args, "skip_bad", False):
        out.append("data.skip_bad=true")
    return out
