"""Export a run to TensorBoard: per-epoch scalars and the probe-set overlays as images.

Scalars: every numeric field of metrics.jsonl as `run/<field>`, every summary.csv mean as
`<metric>/<method>`. Images: the evolution-video frame of each epoch as `probe/<method>`.
Needs the optional `tensorboard` package (`pip install tensorboard`, in the `dev` extra).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import OverfocusError
from ..fileio import writing
from .io import Analysis, load_analysis
from .frames import FrameStyle, check_style, evolution_frames

EVENT_GLOB = "events.out.tfevents.*"


def require_tensorboard() -> None:
    """Raise a one-line OverfocusError when the optional tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise OverfocusError("TensorBoard export needs the tensorboard package: pip install tensorboard "
                             "(or pip install 'overfocus[dev]')")


def export(run_dir: Path | str, logdir: Optional[Path | str] = None, size: int = 512, alpha: float = 0.5,
           cmap: str = "inferno") -> Path:
    """Write TensorBoard event files for one analysed run; return the folder holding them.

    Without `logdir` the events go to RUN/tensorboard; with it to LOGDIR/<run name>, so several
    runs exported to one LOGDIR appear side by side in `tensorboard --logdir LOGDIR`. A new
    export replaces the events of an earlier one instead of adding duplicates.

    Example:
        >>> export("runs/demo")                  # doctest: +SKIP
        PosixPath('runs/demo/tensorboard')
    """
    require_tensorboard()
    style = FrameStyle(size, alpha, cmap)
    check_style(style)
    analysis = load_analysis(run_dir)
    target = Path(logdir) / analysis.name if logdir else analysis.run_dir / "tensorboard"
    with writing(target):  # a read-only run folder or a full disk: one line naming the folder
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            _write_events(analysis, staging, style)
            _swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_events(analysis: Analysis, folder: Path, style: FrameStyle) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        _scalars(analysis, writer)
        for method in analysis.methods:
            frames = evolution_frames(analysis, [method], list(range(len(analysis.probe))), style)
            for epoch, frame in zip(analysis.epochs, frames):
                writer.add_image(f"probe/{method}", frame, global_step=epoch, dataformats="HWC")
    finally:
        writer.close()


def _scalars(analysis: Analysis, writer) -> None:
    for row in analysis.metrics:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(f"run/{key}", float(value), global_step=int(row["epoch"]))
    for r in sorted(analysis.summary, key=lambda r: (r["metric"], r["method"], r["epoch"])):
        writer.add_scalar(f"{r['metric']}/{r['method']}", r["mean"], global_step=r["epoch"])


def _swap_in(staging: Path, target: Path) -> None:
    """Drop the events of an earlier export, then move the new complete files into place."""
    for old in target.glob(EVENT_GLOB):
        old.unlink()
    for new in staging.glob(EVENT_GLOB):
        os.replace(new, target / new.name)
