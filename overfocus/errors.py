"""The project's error type and the conversion of failed writes into it.

The CLI's contract (docs/errors.md): an OverfocusError is bad input or environment, printed as one
line with exit 2; anything else is a bug (exit 3, traceback saved to a file).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
from pathlib import Path
from typing import Iterator, Optional

WRITE_FIXES = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is exceeded: free space or write elsewhere",
    errno.EACCES: "permission denied: make it writable or write elsewhere",
    errno.EPERM: "operation not permitted: make it writable or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or choose another path",
    errno.EISDIR: "a folder stands where a file is needed: move it or choose another path",
    errno.EEXIST: "a file stands where a folder is needed: move it or choose another path",
    errno.ENAMETOOLONG: "the name is too long (at most 255 bytes a name, 4096 a path): choose a shorter path",
}
# failures of the machine or of a path the user gave, met where no reader named them first
ENVIRONMENT_FIXES = {**WRITE_FIXES, errno.ELOOP: "symbolic links loop: fix the link or choose another path"}


MAX_LINE = 300  # an error line is read on a terminal: a value or path longer than this is cut
MAX_VALUE = 60  # the longest value (repr) a message quotes in full


class OverfocusError(ValueError):
    """Bad input from a user. The CLI prints the message alone and exits with code 2.

    Example:
        >>> raise OverfocusError("no images in /data/x: point --data at a folder of class folders")
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: no images in /data/x: point --data at a folder of class folders
    """


def write_error(path: os.PathLike | str, exc: OSError) -> OverfocusError:
    """The one-line OverfocusError of a failed write of `path` (disk full, read-only, ...).

    Example:
        >>> str(write_error("/runs/a/run.json", OSError(errno.ENOSPC, "No space left on device")))
        'cannot write /runs/a/run.json: the disk is full: free space or write elsewhere'
    """
    fix = WRITE_FIXES.get(exc.errno or 0, f"{exc.strerror or exc}: check the path and the disk")
    return OverfocusError(f"cannot write {Path(path)}: {fix}")


def is_write_failure(exc: BaseException) -> bool:
    """True for the OSErrors a write meets through no fault of the program (space, permission, ...)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_FIXES


def shorten(value: object, limit: int = MAX_VALUE) -> str:
    """The repr of a value a message quotes, cut in the middle when longer than `limit` characters.

    Example:
        >>> shorten("x" * 100, 20)
        "'xxxxxxxx...xxxxxxx'"
        >>> shorten(0.5)
        '0.5'
    """
    return shorten_text(repr(value), limit)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), at most 200 characters.

    Example:
        >>> first_line(RuntimeError("PytorchStreamReader failed\\nat line 3"))
        'PytorchStreamReader failed'
    """
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def shorten_text(text: str, limit: int = 120) -> str:
    """`text` (e.g. a path) cut in the middle to at most `limit` characters.

    Example:
        >>> shorten_text("/data/" + "d" * 200 + "/x.jpg", 30)
        '/data/dddddddd...ddddddd/x.jpg'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 2) // 2
    return f"{text[:head]}...{text[len(text) - (limit - 3 - head):]}"


def one_line(message: str, limit: int = MAX_LINE) -> str:
    """An error message as ONE line of at most about `limit` characters.

    Line breaks become "; "; a longer line keeps its start (what is wrong) and its end (the fix)
    and loses its middle, so a huge value or a 4096-character path never floods the terminal.

    Example:
        >>> one_line("bad value\\nfix it")
        'bad value; fix it'
        >>> len(one_line("start " + "y" * 1000 + " end"))
        300
    """
    text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head - 3]} ... {text[-(limit - head - 2):]}"


def environment_error(exc: BaseException) -> "OverfocusError | None":
    """The one-line OverfocusError of an OSError that the environment caused (a name or path too
    long, no space, read-only, permission, a link loop), naming its file; None for any other error.

    The CLI's last line of defence: readers and writers name their failures themselves
    (`write_error`), but a path the user typed reaches many `stat` calls first.

    Example:
        >>> str(environment_error(OSError(errno.ENAMETOOLONG, "File name too long", "/r/" + "n" * 20)))
        'cannot use /r/nnnnnnnnnnnnnnnnnnnn: the name is too long (at most 255 bytes a name, 4096 a path): choose a shorter path'
        >>> environment_error(ValueError("x")) is None
        True
    """
    if not isinstance(exc, OSError) or exc.errno not in ENVIRONMENT_FIXES:
        return None
    where = f"cannot use {shorten_text(exc.filename)}" if exc.filename else "a file operation failed"
    return OverfocusError(f"{where}: {ENVIRONMENT_FIXES[exc.errno]}")


# Whether messages are read by a command-line user (`--force`) or a Python caller (`force=True`):
# the CLI sets it around its command; the library's default is the Python spelling.
_CLI_SPELLING = contextvars.ContextVar("overfocus_cli_spelling", default=False)


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block `option` spells options as command-line flags (the CLI's `main` uses it)."""
    token = _CLI_SPELLING.set(True)
    try:
        yield
    finally:
        _CLI_SPELLING.reset(token)


def option(name: str, value: Optional[str] = None) -> str:
    """An option as the reader of a message gives it: `--name VALUE` on the command line, `name=VALUE`
    (`name=True` for a switch) in Python.

    Example:
        >>> option("force"), option("layer", "'layer3'")
        ('force=True', "layer='layer3'")
        >>> with cli_spelling():
        ...     option("force"), option("layer", "'layer3'"), option("epoch_offset", "N")
        ('--force', '--layer layer3', '--epoch-offset N')
    """
    if _CLI_SPELLING.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is None else f"{flag} {value.strip(chr(39))}"
    return f"{name}=True" if value is None else f"{name}={value}"
