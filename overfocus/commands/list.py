"""`overfocus list`: what can be chosen (models, dataset kinds, regularizers)."""
from __future__ import annotations

import argparse

from .common import RAW

EXAMPLES = """examples:
  overfocus list
  overfocus list models
"""


def register(sub) -> None:
    p = sub.add_parser("list", help="list models, dataset kinds and regularizers", epilog=EXAMPLES,
                       formatter_class=RAW)
    p.add_argument("what", nargs="?", choices=["models", "datasets", "regularizers"])
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
    return 0
