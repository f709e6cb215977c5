"""Arguments shared by several sub-commands."""
from __future__ import annotations

import argparse
import math

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

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


METHOD_ARGS_HELP = ("an attribution method's argument, repeatable: METHOD.KEY=VALUE (value read as YAML), e.g. "
                    "score_cam.batch_size=32 or 'captum:Occlusion.sliding_window_shapes=[3,8,8]'; or a YAML/JSON "
                    "file whose method_args section maps methods to their arguments")


def add_method_args(parser) -> None:
    """`--method-args` of analyze and audit (docs/methods.md)."""
    parser.add_argument("--method-args", action="append", default=[], metavar="METHOD.KEY=VALUE|FILE",
                        help=METHOD_ARGS_HELP)


def parse_method_args(items) -> dict:
    """`--method-args` items -> {method: {key: value}}; a later item wins over an earlier one.

    Example:
        >>> parse_method_args(["score_cam.batch_size=8", "captum:Occlusion.strides=[3,4,4]", "captum:X.eps=1e-3"])
        {'score_cam': {'batch_size': 8}, 'captum:Occlusion': {'strides': [3, 4, 4]}, 'captum:X': {'eps': 0.001}}
    """
    from ..errors import OverfocusError

    out: dict = {}
    for item in items:
        if "=" not in item:
            for method, given in _method_args_file(item).items():
                out.setdefault(method, {}).update(given)
            continue
        key, raw = item.split("=", 1)
        method, dot, name = key.rpartition(".")
        if not dot or not method or not name:
            raise OverfocusError(f"--method-args {item!r}: write METHOD.KEY=VALUE, e.g. score_cam.batch_size=32")
        out.setdefault(method, {})[name] = _yaml_value(raw, f"--method-args {key}")
    return out


def _yaml_value(raw: str, where: str):
    """A YAML value (the bounded reader of `--set`); a number YAML 1.1 leaves as a string (1e-3)
    becomes a float."""
    from ..fileio import load_scalar

    value = load_scalar(raw, where)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _method_args_file(path: str) -> dict:
    from pathlib import Path

    from ..config import load_file
    from ..errors import OverfocusError

    if not Path(path).is_file():
        raise OverfocusError(f"--method-args {path!r}: neither METHOD.KEY=VALUE nor a file; write e.g. "
                             "score_cam.batch_size=32, or name a YAML file with a method_args section")
    section = load_file(path).get("method_args")
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        raise OverfocusError(f"--method-args {path}: the file needs a method_args section mapping each method to "
                             "its arguments, e.g. method_args: {score_cam: {batch_size: 32}}")
    return {str(k): dict(v) for k, v in section.items()}


def with_continue_command(exc, run_dir) -> Exception:
    """A training stopped by an unreadable image: its one line names the command that continues
    from the last durable epoch (`overfocus resume RUN --skip-bad`), where one exists; else `exc`.

    Example:
        >>> from overfocus.errors import OverfocusError
        >>> str(with_continue_command(OverfocusError("cannot read x.jpg: truncated; replace it or pass --skip-bad to "
        ...     "skip such files"), "/nonexistent"))
        'cannot read x.jpg: truncated; replace it or pass --skip-bad to skip such files'
    """
    from ..data.imagefile import SKIP_HINT
    from ..errors import OverfocusError
    from ..runs.rundir import RunDir

    run = RunDir(run_dir)
    if not isinstance(exc, OverfocusError) or SKIP_HINT not in str(exc) or not run.exists():
        return exc
    if run.read_manifest().get("status") != "failed":  # nothing of this call became durable
        return exc
    last = run.latest_epoch()
    if last is None:
        return exc
    return OverfocusError(str(exc).replace(SKIP_HINT, f"replace the file, or skip such files: epochs 0-{last} are "
                                                      f"kept, continue with `overfocus resume {run_dir} --skip-bad`"))
