"""Taking an output folder safely: `check_out_dir` (a file, an occupied folder without --force, a
folder that is no run: refused, nothing deleted) and `RunClaim` (the folder a fresh run takes, put
back as it was unless the new run's epoch 0 becomes durable). Used by `overfocus train` and the Tracker.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Optional

from ..errors import OverfocusError
from ..fileio import writing
from .rundir import RunDir


def check_out_dir(root: Path, force: bool) -> None:
    """Refuse an --out that is a file, or an occupied folder without --force or that is no run."""
    if root.exists() and not root.is_dir():
        raise OverfocusError(f"--out {root} is an existing file, not a folder: choose another --out")
    if not (root.is_dir() and any(root.iterdir())):
        return
    if not force and RunDir(root).exists() and RunDir(root).latest_epoch() is None:
        raise OverfocusError(f"run directory {root} holds a train stopped before its epoch 0 was written, so there "
                             "is nothing to resume: start it again with the same command and --force")
    if not force:
        raise OverfocusError(f"run directory {root} already exists: choose another --out, "
                             f"resume it with `overfocus resume {root}`, or pass --force to replace it")
    if not RunDir(root).exists():
        raise OverfocusError(f"--force replaces only an overfocus run directory, and {root} has no run.json: "
                             "choose another --out (nothing was deleted)")


class RunClaim:
    """The run folder a fresh train takes, undone unless the new run becomes durable.

    An old run replaced with --force is renamed aside (atomic), not deleted, until the new run's
    epoch 0 is on disk; a failure before that puts it back. A folder this train created is
    removed again on such a failure; folders it did not create never are.
    """

    def __init__(self, root: Path, created: Optional[Path], aside: Optional[Path]):
        self.root, self.created, self.aside, self.committed = root, created, aside, False

    @classmethod
    def take(cls, root: Path, force: bool) -> "RunClaim":
        """Check the folder again and take it, in one step under the run's lock (`run_lock`, held
        by the caller): what was checked at the start may have changed while the data opened, and
        an occupied folder is set aside only with `force`."""
        check_out_dir(root, force)
        created = next((p for p in [root, *root.parents][::-1] if not p.exists()), None)
        aside = None
        with writing(root):
            if root.is_dir() and any(root.iterdir()):
                aside = root.with_name(f".{root.name}.replaced-{os.getpid()}-{time.time_ns()}")
                os.replace(root, aside)
            root.mkdir(parents=True, exist_ok=True)
        return cls(root, created, aside)

    def commit(self) -> None:
        self.committed = True
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)

    def undo(self) -> None:
        if self.aside is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            os.replace(self.aside, self.root)
        elif self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
