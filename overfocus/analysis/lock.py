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

from pathlib import Path

from ..errors import option
from ..runs.lock import FolderLock

LOCK_NAME = "analysis.lock"


class AnalysisLock(FolderLock):
    """The lock of one analysis folder (`overfocus.runs.lock.FolderLock`); `shared=True` for --shard
    processes. A context manager."""

    def __init__(self, folder: Path, shared: bool = False):
        super().__init__(Path(folder) / LOCK_NAME, f"another `overfocus analyze` is writing {folder}",
                         f"wait for it to finish (it will have done this work), or pass {option('out', 'DIR')} to "
                         "analyse into another folder", shared=shared, who="--shard processes" if shared else None)
