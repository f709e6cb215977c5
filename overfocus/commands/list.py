"""`overfocus list`: what can be chosen (models, dataset kinds, regularizers, attribution methods, metrics)."""
from __future__ import annotations

import argparse

from .common import RAW

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus list
  overfocus list models
  overfocus list metrics
"""
KINDS = ["models", "datasets", "regularizers", "methods", "metrics"]


def register(sub) -> None:
    p = sub.add_parser("list", help="list models, dataset kinds, regularizers, methods and metrics", epilog=EXAMPLES,
                       formatter_class=RAW)
    p.add_argument("what", nargs="?", choices=KINDS, help="show only this kind (default: all of them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import DATASETS
    from ..models import MODELS
    from ..regularizers import REGULARIZERS

    if args.what in (None, "models"):
        print("models (name: latent layer - description):")
        for name in MODELS.names():
            e = MODELS.get(name)
            print(f"  {name}: {e.latent_layer} - {e.description}")
    if args.what in (None, "datasets"):
        print("dataset kinds (--data KIND[:PATH]):")
        for name in DATASETS.names():
            print(f"  {name}")
    if args.what in (None, "regularizers"):
        print("regularizers (--set regularizer.name=NAME):")
        for name in REGULARIZERS.names():
            doc = (REGULARIZERS.get(name).__doc__ or "").strip().splitlines()[0]
            print(f"  {name}: {doc}")
    if args.what in (None, "methods"):
        print_methods()
    if args.what in (None, "metrics"):
        print_metrics()
    return 0


def print_methods() -> None:
    from ..attribution import ATTRIBUTIONS, DEFAULT_METHODS

    print("attribution methods (--methods a,b; * = default; arguments: --method-args METHOD.KEY=VALUE):")
    for name in ATTRIBUTIONS.names():
        print(_method_line(ATTRIBUTIONS.get(name), name in DEFAULT_METHODS))
    print("Captum attribution classes (--methods captum:ClassName; docs/methods.md):")
    for name in ATTRIBUTIONS.family_names():
        print(_method_line(ATTRIBUTIONS.get(name), False))


def _method_line(m, default: bool) -> str:
    doc = (m.fn.__doc__ or "").strip().splitlines()[0].rstrip(".")
    passes = f" [shares the {m.forward_pass} pass]" if m.forward_pass else ""
    return f"  {m.name}{' *' if default else ''}: {m.title} - {doc}{passes}"


def print_metrics() -> None:
    from ..metrics import METRICS, SUMMARY_METRICS

    print("metrics (map metrics for --metrics; then the numbers summaries and reports derive):")
    for registry in (METRICS, SUMMARY_METRICS):
        for name in registry.registered():
            m = registry.get(name)
            lo, hi = ("" if v is None else f"{v:g}" for v in m.range)
            needs = [w for w, flag in (("boxes", m.needs_boxes), ("human maps", m.needs_human)) if flag]
            extra = f", needs {' and '.join(needs)}" if needs else ""
            verdict = (": better" if m.higher_is_better else ": worse") if m.higher_means else ""
            print(f"  {name} [{m.kind}]: {m.title} ({m.unit}; range [{lo}, {hi}]; {m.direction}{verdict}{extra})")
