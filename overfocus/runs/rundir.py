"""The run directory format: run.json manifest, a checkpoint per epoch, metrics.jsonl, `latest`.

Every file is written to a temporary name, flushed, fsynced and renamed into place, so a crash
(even `kill -9`) leaves either the old file or the new one, never half of one. `checkpoints/latest`
is written only after the checkpoint it names is durable.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch

from ..checkpoint.files import load_checkpoint
from ..errors import OverfocusError
from ..fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, json_safe

SCHEMA_VERSION = 1
TRACKER_KIND = "tracker"  # run.json `source.kind` of a run recorded by overfocus.Tracker


def recorded_by(manifest: Dict[str, Any]) -> Optional[str]:
    """Who wrote a run.json: None for `overfocus train`, else its `source.kind` ("tracker",
    "checkpoint-folder" for the output of `overfocus analyze FOLDER`).

    Example:
        >>> recorded_by({"source": {"kind": "tracker"}}), recorded_by({"config": {}})
        ('tracker', None)
    """
    return (manifest.get("source") or {}).get("kind")


def epoch0_is_initial(manifest: Dict[str, Any]) -> bool:
    """run.json's `epoch0_is_initial`: whether epoch N means "after N epochs of training" (epoch 0 =
    the initial weights). True for runs of `overfocus train` and the tracker, and for run.json files
    written before the field existed (they all counted that way).

    Example:
        >>> epoch0_is_initial({"epoch0_is_initial": False}), epoch0_is_initial({})
        (False, True)
    """
    return bool(manifest.get("epoch0_is_initial", True))


def atomic_torch_save(path: Path, obj: Any) -> str:
    """Save with torch.save atomically; return the sha256 of the bytes written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


class RunDir:
    """Paths and readers of one run directory.

    Example:
        >>> run = RunDir("runs/demo")
        >>> run.checkpoint_path(3).name
        'epoch_0003.pt'
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def state_path(self, epoch: int) -> Path:
        """The full training state of an epoch (optimizer, scheduler, regularizer, RNG): kept for the
        latest epoch (and every `train.keep_full_every`-th), beside the weights of epoch_NNNN.pt."""
        return self.checkpoints / f"training_state_{epoch:04d}.pt"

    def load_training_state(self, epoch: int) -> Dict[str, Any]:
        """Everything `resume` needs of `epoch`: the training state with the float32 model weights.

        Runs written before the split hold it all in epoch_NNNN.pt; a newer run's weights-only
        epoch without its state file cannot be resumed from (one line saying which epochs can)."""
        state_file = self.state_path(epoch)
        if not state_file.is_file():
            payload = load_checkpoint(self.checkpoint_path(epoch)) if self.checkpoint_path(epoch).is_file() else {}
            if "optimizer" not in payload:
                kept = sorted(int(p.stem.rsplit("_", 1)[-1]) for p in self.checkpoints.glob("training_state_*.pt"))
                what = "kept its weights only" if payload else "was not kept (train.keep_every)"
                raise OverfocusError(f"epoch {epoch} of {self.root} {what}; the full training state is kept for the "
                                     f"latest epoch and every train.keep_full_every-th: resume from an epoch with "
                                     f"its state ({', '.join(map(str, kept)) or 'none left'})")
            return payload
        state = load_checkpoint(state_file)
        if "model" not in state:  # the weights file holds them in float32: not stored twice
            state["model"] = load_checkpoint(self.checkpoint_path(epoch))["model"]
        return state

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> Dict[str, Any]:
        if not self.manifest_path.is_file():
            raise OverfocusError(f"{self.root} is not an overfocus run directory (no run.json): "
                                 "pass the folder that `overfocus train` created")
        try:
            manifest = json.loads(self.manifest_path.read_bytes().decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise OverfocusError(f"{self.manifest_path} is not valid JSON ({exc.msg})") from None
        except (UnicodeDecodeError, RecursionError) as exc:  # not text, or nested beyond any run.json
            reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else "it is nested too deeply"
            raise OverfocusError(f"{self.manifest_path} is not a run.json: {reason}") from None
        if not isinstance(manifest, dict):
            raise OverfocusError(f"{self.manifest_path} is not a run.json: it holds a {type(manifest).__name__}, "
                                 "not an object")
        return manifest

    def write_manifest(self, manifest: Dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def latest_epoch(self) -> Optional[int]:
        """The last durable checkpoint's epoch, from the `latest` pointer."""
        pointer = self.checkpoints / "latest"
        if not pointer.is_file():
            return None
        name = pointer.read_text().strip()
        try:
            return int(name.removeprefix("epoch_").removesuffix(".pt"))
        except ValueError:
            raise OverfocusError(f"{pointer} is damaged ({name!r}); delete it to resume from the last "
                                 "checkpoint file") from None

    def set_latest(self, epoch: int) -> None:
        atomic_write_text(self.checkpoints / "latest", self.checkpoint_path(epoch).name + "\n")

    def checkpoint_epochs(self) -> List[int]:
        """Epochs that have a checkpoint file, sorted (whether or not it is readable)."""
        if not self.checkpoints.is_dir():
            return []
        epochs = []
        for p in self.checkpoints.glob("epoch_*.pt"):
            try:
                epochs.append(int(p.stem.removeprefix("epoch_")))
            except ValueError:
                continue
        return sorted(epochs)

    def read_metrics(self) -> List[Dict[str, Any]]:
        """The rows of metrics.jsonl; a damaged line raises OverfocusError naming it."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for number, line in enumerate(self.metrics_path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                row = exc.msg
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise OverfocusError(f"{self.metrics_path} line {number} is damaged: restore the file, or delete "
                                     "it (it is rewritten from the next epoch on)")
            rows.append(row)
        return rows

    def write_metrics(self, rows: Iterable[Dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl atomically (small: one line per epoch); NaN and inf become null (valid JSON)."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in rows))


