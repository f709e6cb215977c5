"""`overfocus data`: fetch a dataset archive (online users) and describe a dataset spec."""
from __future__ import annotations

import argparse

from .common import RAW

EXAMPLES = """examples:
  overfocus data info tiny-imagenet:../shared/data/tiny-imagenet-10   # needs that folder
  overfocus data info "builtin?classes=4&decoy=absent"
  overfocus data fetch imagenette                 # needs internet; into ~/.cache/overfocus/imagenette
  overfocus data fetch imagewoof --cache /data/cache   # needs internet
  overfocus data fetch mydata --url https://example.org/mydata.tgz --sha256 HEX   # needs internet
"""


def register(sub) -> None:
    p = sub.add_parser("data", help="fetch a dataset, or describe a --data spec", epilog=EXAMPLES,
                       formatter_class=RAW)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    f = actions.add_parser("fetch", help="download, verify and unpack a dataset into the cache",
                           epilog=_fetch_epilog(), formatter_class=RAW)
    f.add_argument("name", help="a known name (see below) or any name with --url")
    f.add_argument("--cache", help="cache folder (default $OVERFOCUS_CACHE or ~/.cache/overfocus)")
    f.add_argument("--url", help="archive URL (.tar, .tgz, .tar.xz, ...) for a name not listed below")
    f.add_argument("--sha256", help="expected sha256 of the archive; a mismatch deletes it")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fetch)
    i = actions.add_parser("info", help="number of images, classes and whether boxes exist",
                           epilog=EXAMPLES, formatter_class=RAW)
    i.add_argument("spec", help="dataset spec, e.g. cub:/data/CUB_200_2011 or folder:DIR")
    i.add_argument("--image-size", type=int, default=64, help="image size the spec is opened with (default 64)")
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _fetch_epilog() -> str:
    from ..data.fetch import KNOWN

    lines = ["known names:"] + [f"  {n}: {s.description}\n      {s.url}" for n, s in sorted(KNOWN.items())]
    return "\n".join(lines) + "\n\n" + EXAMPLES


def run_fetch(args: argparse.Namespace) -> int:
    from ..data.fetch import KNOWN, fetch

    folder = fetch(args.name, args.cache, args.url, args.sha256, show_progress=not args.quiet)
    kind = KNOWN[args.name].kind if args.name in KNOWN else None
    print(f"{args.name} is ready in {folder}")
    if kind:
        print(f"  use it with: --data {kind}:{folder}")
    else:
        print("  use it with the --data kind of its format (see `overfocus list datasets`)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..data import open_dataset

    train = open_dataset(args.spec, "train", args.image_size)
    test = open_dataset(args.spec, "test", args.image_size)
    names = ", ".join(train.classes[:8]) + (", ..." if len(train.classes) > 8 else "")
    print(f"spec:      {args.spec}")
    print(f"classes:   {len(train.classes)} ({names})")
    print(f"boxes:     {'yes' if train.has_boxes else 'no'}")
    for split, ds in (("train", train), ("test", test)):
        boxed = _images_with_boxes(ds)
        extra = f", {boxed} with at least one box" if boxed is not None and train.has_boxes else ""
        print(f"{split + ':':<10} {len(ds)} images{extra}")
    return 0


def _images_with_boxes(dataset) -> "int | None":
    """How many records carry a box (file datasets only; generated data always has one)."""
    records = getattr(dataset, "records", None)
    return None if records is None else sum(1 for r in records if len(r[2]))
