"""One writer at a time per folder: an OS file lock on a lock file, for analyze and train alike.

The holder keeps an exclusive (or, for processes that each write only their own files, a shared)
`flock` on the file for as long as it writes; a second caller does not wait: it gets one line
naming the holder (pid and start time, written into the lock file), so that no work is done twice
and no file is written by two processes. The operating system releases the lock when the process
ends, killed or not, so a lock never outlives its holder (the file itself stays).

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.lock"
    >>> with FolderLock(path, "another `overfocus train` is writing runs/x", "wait for it"):
    ...     FolderLock(path, "another `overfocus train` is writing runs/x", "wait for it").acquire()
    Traceback (most recent call last):
    ...
    overfocus.errors.OverfocusError: another `overfocus train` is writing runs/x (pid ... since ...): wait for it
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Optional

from ..errors import OverfocusError
from ..fileio import make_dirs, writing

try:  # POSIX; elsewhere calls are not serialised (documented in docs/analysis.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FolderLock:
    """The lock file `path`; `busy` and `advice` make the refusal's line. A context manager."""

    def __init__(self, path: Path, busy: str, advice: str, shared: bool = False, who: Optional[str] = None,
                 remove: bool = False):
        self.path = Path(path)
        self.busy, self.advice, self.shared = busy, advice, shared
        self.who = who  # what the lock file says of its holder (default: this pid)
        self.remove = remove and not shared  # delete the file on release (it lives outside the folder it guards)
        self._fh: Optional[IO[str]] = None
        self._made: list = []  # folders acquire() created for the lock file, deepest first

    @property
    def held(self) -> bool:
        return self._fh is not None

    def acquire(self) -> "FolderLock":
        """Take the lock now, or raise a one-line OverfocusError naming who holds it."""
        self._made = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]
        make_dirs(self.path.parent)
        while True:
            with writing(self.path):
                fh = open(self.path, "a+", encoding="utf-8")
            if fcntl is None:
                break
            try:
                fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fh)
                fh.close()
                raise OverfocusError(f"{self.busy}{holder}: {self.advice}") from None
            if not self.remove or _same_file(fh, self.path):
                break
            fh.close()  # the holder we waited for removed this file on release: lock the new one
        # who holds it, for the message of the next caller (shared holders all write the same text)
        try:
            with writing(self.path):  # a full disk is named here, not met as a bare OSError
                fh.seek(0)
                fh.truncate()
                fh.write(f"{self.who or f'pid {os.getpid()}'} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                fh.flush()
        except OverfocusError:
            fh.close()
            raise
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            if self.remove:  # removed while still locked, so nobody can lock this file after us
                try:
                    self.path.unlink()
                    for folder in self._made:  # made for the lock alone: gone again unless used since
                        os.rmdir(folder)
                except OSError:
                    pass
            self._fh.close()  # closing the file releases the lock
            self._fh = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()


def _same_file(fh: IO[str], path: Path) -> bool:
    """Whether `path` still names the file `fh` has open (not removed or replaced meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except OSError:
        return False


def _holder(fh: IO[str]) -> str:
    """' (pid N since T)' from the lock file, or '' when it names nobody."""
    try:
        fh.seek(0)
        text = fh.read().strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def run_lock(root: Path) -> FolderLock:
    """The lock of `overfocus train` / `resume` / a Tracker on run folder `root`.

    It lives beside the folder (`.NAME.lock` in its parent), not inside it: `--force` renames the
    old folder aside, and a lock inside would travel with it, leaving the new folder unlocked. The
    file is removed on release (only a killed holder leaves it; the next train takes it over).

    Example:
        >>> run_lock(Path("runs/demo")).path.name
        '.demo.lock'
    """
    root = Path(root)
    real = root.resolve()  # every spelling of the folder (relative, absolute, through a link) shares one lock
    return FolderLock(real.parent / f".{real.name}.lock",
                      f"another `overfocus train`, `resume` or Tracker is writing {root}",
                      "wait for it to finish (a Tracker of this same process: call its finish()), or choose "
                      "another --out", remove=True)
