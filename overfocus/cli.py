"""The `overfocus` command: argparse sub-commands mapped onto the library's functions.

Exit codes: 0 success, 1 a gate failed (audit), 2 bad input (one line on stderr, no traceback).
Each sub-command lives in `overfocus/commands/<name>.py` with `register(subparsers)`, which adds
its parser and sets `func` to a function taking the parsed args and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from .errors import OverfocusError

COMMANDS = ["train", "resume", "demo", "list", "data", "analyze", "audit", "render", "compare", "tensorboard"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overfocus", description="Watch, measure and counter how CNNs narrow their attention in training.",
        epilog="Start with `overfocus demo`; each sub-command has --help with examples.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"overfocus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name.replace('-', '_')}", __package__).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OverfocusError as exc:
        print(f"overfocus {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"overfocus {args.command}: interrupted; completed work is kept (resume where it applies)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
