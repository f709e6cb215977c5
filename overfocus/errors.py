"""The project's error type and the conversion of failed writes into it.

The CLI's contract (docs/errors.md): an OverfocusError is bad input or environment, printed as one
line with exit 2; anything else is a bug (exit 3, traceback saved to a file).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

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
