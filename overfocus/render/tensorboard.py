"""TensorBoard: export an analysed run, and the writer a training loop logs to while it runs.

The tags are the same live and exported, so a live log and a later export overlay in one
TensorBoard: every numeric field of metrics.jsonl as `run/<field>`, each map metric's mean as
`<metric>/<method>` (exported: summary.csv's mean over the analysed images; live: the mean over the
probe set), and one image tag per probe image, `overlay/<method>/<image id>`, so TensorBoard's
image slider scrubs the epochs (`metric_tag`, `overlay_tag`, `run_tag`: the one naming).
Export: `export`; live: `LiveWriter`, used by `overfocus train --tensorboard` and `overfocus.Tracker`.
Only arrays come in here: the model-running part lives in `overfocus.training.live`.
Needs the optional `tensorboard` package (`pip install tensorboard`, in the `dev` extra).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from ..errors import OverfocusError
from ..fileio import writing
from .frames import FrameStyle, check_style
from .io import Analysis, load_analysis
from .overlay import attribution_panel

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
        for epoch, scalars, frames in export_items(analysis, style):
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=epoch)
            for tag, frame in frames.items():
                writer.add_image(tag, frame, global_step=epoch, dataformats="HWC")
    finally:
        writer.close()


def run_tag(field: str) -> str:
    """A metrics.jsonl field: `run/<field>`."""
    return f"run/{field}"


def metric_tag(metric: str, method: str) -> str:
    """A map metric's mean: `<metric>/<method>` (summary.csv's names: `hit`, not `hit_ratio`)."""
    return f"{metric}/{method}"


def overlay_tag(method: str, image_id: str) -> str:
    """One probe image's overlay, one step per epoch: `overlay/<method>/<image id>`."""
    return f"overlay/{method}/{image_id}"


def export_items(analysis: Analysis, style: FrameStyle):
    """Per epoch, in order: (epoch, scalars, images) of an analysed run's export, whatever the logger:
    `run/<field>` of metrics.jsonl, `<metric>/<method>` means of summary.csv, and one overlay per
    probe image and method, `overlay/<method>/<image id>`: the tags of the live log (`live_items`).
    Shared by the TensorBoard export and `render/wandb.py`."""
    rows = {int(r["epoch"]): r for r in analysis.metrics if "epoch" in r}
    means: Dict[int, Dict[str, float]] = {}
    for r in analysis.summary:
        means.setdefault(int(r["epoch"]), {})[metric_tag(r["metric"], r["method"])] = r["mean"]
    analysed = set(analysis.epochs)
    for epoch in sorted(analysed | set(rows) | set(means)):
        scalars = {**metrics_row_scalars(rows.get(epoch, {})), **dict(sorted(means.get(epoch, {}).items()))}
        yield epoch, scalars, (probe_overlays(analysis, epoch, style) if epoch in analysed else {})


def probe_overlays(analysis: Analysis, epoch: int, style: FrameStyle) -> Dict[str, np.ndarray]:
    """{overlay tag: panel} of every probe image and method at one analysed epoch (boxes drawn)."""
    probe, maps = analysis.probe, analysis.load_epoch(epoch).maps
    return {overlay_tag(method, image_id): attribution_panel(probe.images[i], maps[method][i], probe.boxes_of(i),
                                                             style.width, style.alpha, style.cmap)
            for method in analysis.methods for i, image_id in enumerate(probe.image_ids)}


def _swap_in(staging: Path, target: Path) -> None:
    """Drop the events of an earlier export, then move the new complete files into place."""
    for old in target.glob(EVENT_GLOB):
        old.unlink()
    for new in staging.glob(EVENT_GLOB):
        os.replace(new, target / new.name)


def metrics_row_scalars(row: Mapping[str, Any]) -> Dict[str, float]:
    """Every numeric field of one metrics.jsonl row as `run/<field>` (the epoch itself left out).

    Example:
        >>> metrics_row_scalars({"epoch": 2, "test_acc": 0.5, "status": "ok"})
        {'run/test_acc': 0.5}
    """
    return {run_tag(key): float(value) for key, value in row.items()
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool)}


def live_items(row: Mapping[str, Any], probe_means: Mapping[str, Mapping[str, float]], images: np.ndarray,
               maps: Mapping[str, np.ndarray], image_ids: Sequence[str], boxes: Optional[Sequence[np.ndarray]],
               style: FrameStyle):
    """What one live epoch logs, whatever the logger: scalars (`run/<field>`, `<metric>/<method>` over the
    probe set) and one overlay per probe image and method (`overlay/<method>/<image id>`, H x W x 3
    uint8): the tags of the export (`export_items`).

    Shared by the TensorBoard `LiveWriter` and the W&B writer (`render/wandb.py`), so both log the same.
    """
    scalars = metrics_row_scalars(row)
    for method, means in probe_means.items():
        for metric, value in means.items():
            scalars[metric_tag(metric, method)] = float(value)
    no_boxes = np.zeros((0, 4))
    panels = {}
    for method, method_maps in maps.items():
        for i, image_id in enumerate(image_ids):
            panels[overlay_tag(method, image_id)] = attribution_panel(
                images[i], method_maps[i], no_boxes if boxes is None else boxes[i], style.width, style.alpha,
                style.cmap)
    return scalars, panels


class LiveWriter:
    """Event files written epoch by epoch while a model trains (`tensorboard --logdir DIR` shows them live).

    Example:
        >>> import tempfile
        >>> live = LiveWriter(tempfile.mkdtemp())
        >>> live.log_epoch({"epoch": 1, "train_acc": 0.5}, {"grad_cam": {"area_ratio": 0.2}},
        ...                np.zeros((1, 8, 8, 3), np.uint8), {"grad_cam": np.ones((1, 8, 8))}, ["img0"])
        >>> live.close()
    """

    def __init__(self, logdir: Path | str, size: int = 192, alpha: float = 0.5, cmap: str = "inferno"):
        require_tensorboard()
        self.style = FrameStyle(size, alpha, cmap)
        check_style(self.style)
        self.logdir = Path(logdir)
        with writing(self.logdir):  # a read-only or full disk: one line naming the folder
            self.logdir.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(self.logdir))

    def log_epoch(self, row: Mapping[str, Any], probe_means: Mapping[str, Mapping[str, float]],
                  images: np.ndarray, maps: Mapping[str, np.ndarray], image_ids: Sequence[str],
                  boxes: Optional[Sequence[np.ndarray]] = None) -> None:
        """One epoch: the metrics row, the probe-set metric means, one overlay per probe image and method.

        `images` are N x H x W x 3 uint8, `maps[method]` N x h x w in [0, 1], `boxes` N arrays of
        (x0, y0, x1, y1) in image pixels or None.
        """
        scalars, panels = live_items(row, probe_means, images, maps, image_ids, boxes, self.style)
        epoch = int(row["epoch"])
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=epoch)
        for tag, panel in panels.items():
            self._writer.add_image(tag, panel, global_step=epoch, dataformats="HWC")
        self._writer.flush()  # visible in TensorBoard now, not when the run ends

    def close(self) -> None:
        self._writer.close()


def probe_means(metrics: Mapping[str, Mapping[str, Sequence[float]]]) -> Dict[str, Dict[str, float]]:
    """Mean of each per-image metric of each method, NaNs (undefined values) left out; named as in
    summary.csv (the mean of `hit` is `hit`), so that live and exported tags are the same.

    Example:
        >>> probe_means({"grad_cam": {"hit": [1.0, 0.0, float("nan")]}})
        {'grad_cam': {'hit': 0.5}}
    """
    out: Dict[str, Dict[str, float]] = {}
    for method, by_metric in metrics.items():
        out[method] = {}
        for metric, values in by_metric.items():
            finite = np.asarray(values, np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                out[method][metric] = float(finite.mean())
    return out
