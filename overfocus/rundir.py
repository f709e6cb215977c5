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

from .errors import OverfocusError
from .fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file  # noqa: F401 (re-exported)

SCHEMA_VERSION = 1


def atomic_torch_save(path: Path, obj: Any) -> str:
    """Save with torch.save atomically; return the sha256 of the bytes written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path: Path, trust_pickle: bool = False) -> Dict[str, Any]:
    """Load a checkpoint as untrusted input: weights_only=True unless the user opted in.

    A truncated or corrupt file raises OverfocusError naming it (callers skip it and go on).
    """
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises many types for bad files; all mean "unusable"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise OverfocusError(f"checkpoint {path} holds pickled Python objects, not only weights: "
                                 "pass --trust-pickle if you trust its source") from None
        raise OverfocusError(f"checkpoint {path} is corrupt or not a PyTorch file ({reason})") from None


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

    def checkpoint_path(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> Dict[str, Any]:
        if not self.manifest_path.is_file():
            raise OverfocusError(f"{self.root} is not an overfocus run directory (no run.json): "
                                 "pass the folder that `overfocus train` created")
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise OverfocusError(f"{self.manifest_path} is not valid JSON ({exc.msg})") from None

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
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def write_metrics(self, rows: Iterable[Dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl atomically (small: one line per epoch)."""
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
