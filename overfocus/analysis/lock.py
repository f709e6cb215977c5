"""One analyze at a time per analysis folder: a lock file, `RUN/analysis/analysis.lock`.

A plain (or torchrun) analyze holds the lock exclusively for the whole call; rank 0 takes it for
its job, the other ranks follow rank 0's plan, so the ranks of one job share it. `--shard R/W`
processes (a job array) only write their own parts, so they hold it shared: shards run side by
side, while a merging call waits for none of them and is refused while any is running.
A second call does not wait: it exits with one line naming the holder, so that no work is done
twice and no file is written by two processes. The operating system releases the lock when the
process ends, killed or not, so a lock never outlives its holder (the file itself stays).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with AnalysisLock(folder):
    ...     AnalysisLock(folder).acquire()
    Traceback (most recent call last):
    ...
    overfocus.errors.OverfocusError: ...
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Optional

from ..errors import OverfocusError, option
from ..fileio import make_dirs, writing

try:  # POSIX; elsewhere calls are not serialised (documented in docs/analysis.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "analysis.lock"


class AnalysisLock:
    """The lock of one analysis folder; `shared=True` for --shard processes. A context manager."""

    def __init__(self, folder: Path, shared: bool = False):
        self.path = Path(folder) / LOCK_NAME
        self.shared = shared
        self._fh: Optional[IO[str]] = None

    def acquire(self) -> "AnalysisLock":
        """Take the lock now, or raise a one-line OverfocusError naming who holds it."""
        make_dirs(self.path.parent)
        with writing(self.path):
            fh = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fh)
                fh.close()
                raise OverfocusError(f"another `overfocus analyze` is writing {self.path.parent}{holder}: wait "
                                     f"for it to finish (it will have done this work), or pass {option('out', 'DIR')} "
                                     "to analyse into another folder") from None
        # who holds it, for the message of the next caller (shared holders all write the same text)
        who = "--shard processes" if self.shared else f"pid {os.getpid()}"
        fh.seek(0)
        fh.truncate()
        fh.write(f"{who} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the file releases the lock
            self._fh = None

    def __enter__(self) -> "AnalysisLock":
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()


def _holder(fh: IO[str]) -> str:
    """' (pid N since T)' from the lock file, or '' when it names nobody."""
    try:
        fh.seek(0)
        text = fh.read().strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""
