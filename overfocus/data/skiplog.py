"""The files a dataset skipped under --skip-bad, visible to the process that opened it.

DataLoader workers are separate processes, each with its own copy of the dataset, so a list kept
on the dataset would only ever hold what the main process read. A skip is therefore appended to a
small temporary file (one path a line) that every copy writes to and every copy reads. The file
is removed when the log that created it is garbage collected, or at exit, in the process that
created it only (a forked worker's copy never removes it).

Example:
    >>> log = SkipLog()
    >>> log.add("/data/a.jpg"), log.add("/data/a.jpg"), log.paths()
    (True, False, ['/data/a.jpg'])
"""
from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path
from typing import List


class SkipLog:
    """An append-only, de-duplicated list of file paths shared by the processes of one dataset."""

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="overfocus-skipped-", suffix=".txt")
        os.close(fd)
        weakref.finalize(self, _remove, self.path, os.getpid())

    def paths(self) -> List[str]:
        """The recorded paths, first-seen order, each once."""
        try:
            lines = Path(self.path).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return list(dict.fromkeys(line for line in lines if line))

    def add(self, path: str) -> bool:
        """Record `path`; True when it was not recorded before (the caller then warns once)."""
        if path in self.paths():
            return False
        with open(self.path, "a", encoding="utf-8") as fh:  # O_APPEND: whole lines from any process
            fh.write(path + "\n")
        return True


def _remove(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        Path(path).unlink(missing_ok=True)
