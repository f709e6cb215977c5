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
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
}


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
