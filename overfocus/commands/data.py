"""`overfocus data`: fetch a dataset archive (online users) and describe a dataset spec."""
from __future__ import annotations

import argparse

from .common import RAW

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus data info tiny-imagenet:../shared/data/tiny-imagenet-10   # needs that folder
  overfocus data check folder:my_photos        # needs my_photos/; reads every image once, exit 1 if any is bad
  overfocus data check "builtin?train=40&test=20" --jobs 2
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
    c = actions.add_parser("check", help="read every image and annotation once and list what is unreadable "
                           "or inconsistent (exit 0: all is well, 1: problems listed)", epilog=EXAMPLES,
                           formatter_class=RAW)
    c.add_argument("spec", help="dataset spec, e.g. folder:DIR or voc:/data/VOC2012")
    c.add_argument("--image-size", type=int, default=64, help="image size the samples are resized to (default 64)")
    c.add_argument("--jobs", type=int, default=0, help="parallel readers (default: the CPU count, at most 16)")
    c.set_defaults(func=run_check)
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


def run_check(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset
    from ..errors import OverfocusError

    if args.jobs < 0:
        raise OverfocusError(f"--jobs {args.jobs}: use 0 (the CPU count) or more")
    report = check_dataset(args.spec, args.image_size, args.jobs or None)
    counts = " + ".join(f"{n} {split}" for split, n in report.checked.items()) or "no"
    if report.ok:
        print(f"{args.spec}: all {counts} images read and consistent")
        return 0
    print(f"{args.spec}: {len(report.problems)} problem(s) in {counts} images:")
    for problem in report.problems:
        print(f"  {problem.line()}")
    print("fix or remove these files, or train with --skip-bad to leave unreadable images out")
    return 1


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
