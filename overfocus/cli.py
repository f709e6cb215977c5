"""The `overfocus` command: argparse sub-commands mapped onto the library's functions.

Exit codes (the contract of docs/errors.md): 0 success, 1 a failed gate (audit), 2 bad input or
environment (one line on stderr naming the file or value and the fix, no traceback; also a
SystemExit raised by code the user let run, so that a gate never passes unchecked), 130
interrupted (Ctrl-C), 3 a bug (one line saying where the full traceback was written).
Expected failures become OverfocusError where they happen; `main` only maps types to codes.
Each sub-command lives in `overfocus/commands/<name>.py` with `register(subparsers)`, which adds
its parser and sets `func` to a function taking the parsed args and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import traceback
from typing import List, NoReturn, Optional

from . import __version__
from .errors import OverfocusError, cli_spelling, environment_error, one_line
from .registry import did_you_mean

COMMANDS = ["train", "resume", "demo", "list", "data", "analyze", "audit", "render", "compare", "explore", "select", "tensorboard", "export"]
EXIT_OK, EXIT_GATE, EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (exit 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        line = one_line(f"{self.prog}: error: {_with_suggestion(message)} (see `{self.prog} --help`)")
        self.exit(EXIT_BAD_INPUT, line + "\n")


def _with_suggestion(message: str) -> str:
    """argparse's "invalid choice: 'X' (choose from ...)" with registry.did_you_mean's suggestion.

    Example:
        >>> _with_suggestion("argument what: invalid choice: 'model' (choose from 'models', 'metrics')")
        "argument what: invalid choice: 'model' (did you mean 'models'?) (choose from 'models', 'metrics')"
    """
    import re


    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not found:
        return message
    choices = re.findall(r"'([^']*)'", found.group(2))
    hint = did_you_mean(found.group(1), choices)
    return message.replace(f"'{found.group(1)}' (choose", f"'{found.group(1)}'{hint} (choose", 1) if hint else message


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="overfocus", description="Watch, measure and counter how CNNs narrow their attention in training.",
        epilog="Start with `overfocus demo`; each sub-command has --help with examples.")
    parser.add_argument("--version", action="version", version=f"overfocus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".commands.{name.replace('-', '_')}", __package__).register(sub)
    return parser


def save_traceback(exc: BaseException) -> str:
    """Write the full traceback of `exc` to a file in the system temp folder; return its path."""
    with tempfile.NamedTemporaryFile("w", prefix="overfocus-crash-", suffix=".txt", delete=False) as fh:
        fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return fh.name


def stopped_by(exc: BaseException) -> str:
    """The line for a SystemExit (or another BaseException) that ended a command from inside: no
    overfocus code raises one, so it came from code the user named (a model factory or its forward).

    Example:
        >>> stopped_by(SystemExit(0))
        'code this call ran (a model named with --arch or --trust-recipe) raised SystemExit(0): the command stopped before its end, so nothing it reports was completed (no report, no gate passed); files written before stay'
    """
    detail = f"{type(exc).__name__}({exc.code!r})" if isinstance(exc, SystemExit) else type(exc).__name__
    return (f"code this call ran (a model named with --arch or --trust-recipe) raised {detail}: the command "
            "stopped before its end, so nothing it reports was completed (no report, no gate passed); files "
            "written before stay")


def utf8_locale_needed() -> bool:
    """True when Python decodes file names and text as ASCII (e.g. LC_ALL=C with PYTHONUTF8=0 and
    no locale coercion): non-ASCII paths and class names would then fail far from their cause."""
    import codecs

    return not sys.flags.utf8_mode and codecs.lookup(sys.getfilesystemencoding()).name != "utf-8"


def _rerun_in_utf8_mode() -> None:
    """Run this same command again under Python's UTF-8 mode (`-X utf8`), arguments byte for byte."""
    import os

    os.execv(sys.executable, [sys.executable, "-X", "utf8", "-m", "overfocus", *sys.argv[1:]])


def main(argv: Optional[List[str]] = None) -> int:
    if argv is None and utf8_locale_needed():  # the command line of a non-UTF-8 locale: paths are bytes
        _rerun_in_utf8_mode()
    try:
        parser = build_parser()  # imports every command (torch among them): a Ctrl-C may land here
    except KeyboardInterrupt:
        print("overfocus: interrupted while starting; nothing was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: their code, also when called in-process
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # what --nproc hands to torchrun
    prefix = f"overfocus {args.command}"
    try:
        with cli_spelling():
            return int(args.func(args) or 0)
    except OverfocusError as exc:
        print(f"{prefix}: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:  # the machine, not the input's form: say what to shrink (sizes are bounded before work)
        print(f"{prefix}: error: out of memory: use a smaller data.batch_size, data.image_size or model, "
              "or free memory", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; completed work is kept (resume where it applies)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SystemExit, GeneratorExit) as exc:  # raised by code the user let run (--arch, --trust-recipe, ...)
        print(f"{prefix}: error: {stopped_by(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        named = environment_error(exc)
        if named is None:
            return _bug(prefix, exc)
        print(f"{prefix}: error: {one_line(str(named))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # a bug by the contract: one line and the traceback on disk, not on screen
        return _bug(prefix, exc)
    except BaseException as exc:  # no overfocus code raises one: user-named code did (a BaseException subclass)
        print(f"{prefix}: error: {stopped_by(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _bug(prefix: str, exc: BaseException) -> int:
    """Exit 3: one line saying where the full traceback of `exc` was written."""
    try:
        where = f"the full traceback is in {save_traceback(exc)}"
    except OSError:
        where = "the traceback could not be saved (temp folder not writable)"
    print(f"{prefix}: internal error (a bug, please report it): {type(exc).__name__}; {where}", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
