"""`overfocus audit`: one checkpoint -> report.json + self-contained report.html + exit code."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Tuple

from .common import RAW, add_method_args, finite_float, parse_method_args

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus audit runs/demo                                     # a run's last checkpoint, with its history
  overfocus audit runs/demo/checkpoints/epoch_0005.pt --limit 200
  overfocus audit resnet18.pt --model resnet18 --num-classes 10 --data tiny-imagenet:DATA \\
      --image-size 64 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225   # needs your weights and data
  overfocus audit model.pt --arch torchvision.models:resnet18 --layer layer4 \\
      --data folder:PHOTOS                           # needs torchvision, your weights and photos
  overfocus audit runs/demo --fail-under accuracy=0.8 --fail-under energy_pg=0.5 --json   # CI gate
  overfocus audit runs/demo --limit 64 --methods hirescam,score_cam --method-args score_cam.batch_size=128

exit codes: 0 every gate passed, 1 a gate failed (named on stderr), 2 bad input
"""


def register(sub) -> None:
    p = sub.add_parser("audit", help="audit a checkpoint: attention findings, HTML report, CI gates",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("checkpoint", help="checkpoint file (.pt: run checkpoint, state_dict, TorchScript, pickled "
                   "module) or a run directory")
    p.add_argument("--data", help="dataset spec (default for a run: the run's data); the test split is audited")
    add_model_args(p)
    add_preprocessing_args(p)
    p.add_argument("--out", help="output folder (default RUN/audit, or <checkpoint dir>/audit-<stem>)")
    p.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                   help="gate, repeatable: exit 1 when METRIC < VALUE (e.g. accuracy=0.8, energy_pg=0.5, "
                   "sgdrop.area_ratio=0.05)")
    p.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                   help="override a finding threshold (see docs/audit.md), e.g. area_problem=0.02")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of a summary")
    p.add_argument("--limit", type=int, default=500, help="audit at most N test images, evenly spaced (0 = all; "
                   "default 500)")
    p.add_argument("--human", metavar="DIR", help="folder of human importance maps named <image_id>.npy/.png")
    p.add_argument("--target", dest="target_class", choices=["gt", "predicted"], default="gt",
                   help="class to explain: ground truth (default) or the predicted class")
    p.add_argument("--methods", default="grad_cam,sgdrop", help="attribution methods, comma-separated; the first "
                   "is the one findings and METRIC gates read (default grad_cam,sgdrop; `overfocus list methods`)")
    add_method_args(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning each "
                   "(default: as the run was trained, else off)")
    p.set_defaults(func=run)


def add_model_args(p: argparse.ArgumentParser, layer: bool = True) -> None:
    p.add_argument("--model", help="model of a plain state_dict: a registered name (see `overfocus list models`), "
                   "a torchvision name, or timm:NAME (with the integrations extra)")
    p.add_argument("--arch", metavar="MODULE:FACTORY", help="import path of a model factory, e.g. "
                   "torchvision.models:resnet18 (called with num_classes= when given)")
    if layer:
        p.add_argument("--layer", help="layer for the attention maps (default: the model's declared layer)")
    p.add_argument("--num-classes", type=int, help="number of outputs (default: read from the weights)")
    p.add_argument("--width", type=finite_float, help="width multiplier of a registered model (default 1)")
    p.add_argument("--small-input", action="store_true", help="the registered model's small-input variant")
    p.add_argument("--trust-pickle", action="store_true", help="allow files with pickled Python objects "
                   "(full nn.Modules): only for files from a source you trust")
    p.add_argument("--trust-recipe", action="store_true", help="build the model from the import path "
                   "(module:callable) a checkpoint or run.json records, which runs that code: only for files "
                   "from a source you trust (or name the same path with --arch)")
    p.add_argument("--strip-prefix", metavar="P", help="remove this prefix from the weights' keys (default: the "
                   "one of module., _orig_mod., model. that makes them match the model)")


def add_preprocessing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the run's, else 64)")
    p.add_argument("--mean", help="normalisation mean, three comma-separated values (default: ImageNet's)")
    p.add_argument("--std", help="normalisation std, three comma-separated values (default: ImageNet's)")


def triple(text: Optional[str], flag: str) -> Optional[Tuple[float, float, float]]:
    from ..errors import OverfocusError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise OverfocusError(f"{flag} {text!r} needs three comma-separated numbers, e.g. {flag} 0.5,0.5,0.5")
    return values


def model_options(args: argparse.Namespace):
    """ModelOptions from the options of add_model_args (shared by audit and analyze)."""
    from ..models.build import ModelOptions

    return ModelOptions(args.model, args.arch, args.layer, args.num_classes,
                        args.width if args.width is not None else 1.0, args.small_input, args.trust_pickle,
                        strip_prefix=args.strip_prefix, trust_recipe=args.trust_recipe)


def options(args: argparse.Namespace):
    from ..audit.inputs import AuditOptions, parse_pairs
    from ..errors import OverfocusError

    if args.limit < 0 or args.batch_size < 1:
        raise OverfocusError("--limit must be 0 (all) or more and --batch-size at least 1")
    model = model_options(args)
    return AuditOptions(args.checkpoint, args.data, model, args.image_size, triple(args.mean, "--mean"),
                        triple(args.std, "--std"), args.limit, args.batch_size, args.human,
                        dict(parse_pairs(args.threshold, "--threshold")), parse_pairs(args.fail_under, "--fail-under"),
                        target_class=args.target_class, device=args.device, skip_bad=args.skip_bad,
                        methods=_methods(args.methods), method_args=parse_method_args(args.method_args))


def _methods(text: str) -> Tuple[str, ...]:
    from ..errors import OverfocusError

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise OverfocusError("--methods is empty: name at least one, e.g. --methods grad_cam,sgdrop")
    return names


def run(args: argparse.Namespace) -> int:
    from ..audit.flow import audit, default_out, summary_lines, write_outputs
    from ..audit.inputs import check_options
    from ..fileio import check_writable, clean_stale_temps

    opts = options(args)
    check_options(opts)  # bad gates and thresholds fail before any work
    out = Path(args.out) if args.out else default_out(args.checkpoint)
    check_writable(out)  # a read-only or full disk must not cost a whole audit
    clean_stale_temps(out)  # what a killed audit left
    result = audit(opts)
    json_path, html_path = write_outputs(result, out)
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        print("\n".join(summary_lines(result.report)))
        print(f"report: {html_path}\n        {json_path}")
    failed = [g for g in result.report["gates"] if not g["passed"]]
    for g in failed:
        print(f"overfocus audit: gate failed: {g['metric']} = {g['value']:.4g} < {g['min']:g}", file=sys.stderr)
    return 1 if failed else 0
