"""`EpochWriter`: THE durable end of an epoch, for `overfocus train`, the Tracker and the Lightning callback.

In this order: the weights file (epoch_NNNN.pt), the full training state when there is one
(training_state_NNNN.pt), the metrics line (metrics.jsonl, later epochs dropped: a resumed run
rewrites them), run.json's `epochs` entry, then `checkpoints/latest`; only then are the files
that `keep_every` / `keep_full_every` let go deleted (runs/checkpoints.py). Each write is atomic
(fileio), so a crash at any point leaves the previous epoch complete and `latest` naming it.

Example:
    >>> import tempfile, torch
    >>> from overfocus.runs.rundir import RunDir
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.write_manifest({"schema": 1, "status": "running", "epochs": []})
    >>> writer = EpochWriter(run)
    >>> sha = writer.write(0, {"model": {"w": torch.zeros(2)}}, {"epoch": 0, "train_acc": 0.5, "test_acc": 0.25,
    ...                                                          "seconds": 0.0})
    >>> run.latest_epoch(), run.read_manifest()["epochs"][0]["test_acc"], run.read_metrics()[0]["train_acc"]
    (0, 0.25, 0.5)
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from .checkpoints import mark_pruned, prune
from .rundir import RunDir, atomic_torch_save


class EpochWriter:
    """Writes one epoch of a run directory durably (see the module docstring)."""

    def __init__(self, run: RunDir, keep_every: int = 1, keep_full_every: int = 0):
        self.run, self.keep_every, self.keep_full_every = run, keep_every, keep_full_every

    def write(self, epoch: int, weights: Mapping[str, Any], row: Mapping[str, Any],
              state: Optional[Mapping[str, Any]] = None, manifest_updates: Optional[Mapping[str, Any]] = None) -> str:
        """Make `epoch` durable; returns the weights file's sha256 (recorded in run.json)."""
        run = self.run
        sha = atomic_torch_save(run.checkpoint_path(epoch), dict(weights))
        if state is not None:
            atomic_torch_save(run.state_path(epoch), dict(state))
        run.write_metrics([r for r in run.read_metrics() if r["epoch"] < epoch] + [dict(row)])
        manifest = run.read_manifest()
        manifest["status"] = "running"  # until the run ends: a later epoch never leaves "complete" stale
        manifest["epochs"] = mark_pruned([e for e in manifest["epochs"] if e["epoch"] < epoch], epoch,
                                         self.keep_every) + [self.entry(epoch, sha, row)]
        manifest.update(manifest_updates or {})
        run.write_manifest(manifest)
        run.set_latest(epoch)
        prune(run, epoch, self.keep_every, self.keep_full_every)  # only now that `epoch` is durable
        return sha

    def entry(self, epoch: int, sha: str, row: Mapping[str, Any]) -> Dict[str, Any]:
        """run.json's record of one epoch: its file, hash, accuracies and duration."""
        return {"epoch": epoch, "file": f"checkpoints/{self.run.checkpoint_path(epoch).name}", "sha256": sha,
                "train_acc": row.get("train_acc"), "test_acc": row.get("test_acc"), "seconds": row.get("seconds")}
