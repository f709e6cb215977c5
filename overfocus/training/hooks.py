"""The epoch-end hooks of a run (in the manner of detectron2's `HookBase`): `before_train`,
`after_epoch`, `after_train`, run in list order by `EpochHooks`.

`overfocus train` (the `Trainer`), `overfocus.Tracker` and the Lightning callback (built on the
tracker) end every epoch through the same list, `epoch_hooks`, so each fact of a run is written by
one piece of code:

    DivergenceCheck   a non-finite loss stops the run before the epoch is written
    ProbeHook         the probe set's maps and metric means with this epoch's weights (when due);
                      with `record=True` (the tracker) their means join the metrics line
    LeakHook          the label-leak columns of a label-masked regularizer (regularizers/leak.py)
    WriteEpoch        `runs.writer.EpochWriter`: checkpoint, metrics line, run.json epochs, `latest`
    ProbeFiles        the probe maps as RUN/live/probe_epoch_NNNN.npz (the tracker)
    EpochLine         one plain line per epoch (`overfocus train`)
    LiveLogHook       TensorBoard / W&B (`training.live.LiveLog`), after the epoch is durable, so a
                      logging failure loses no checkpoint

Example:
    >>> class Count(EpochHook):
    ...     def __init__(self): self.epochs = []
    ...     def after_epoch(self, end): self.epochs.append(end.epoch)
    >>> hooks = EpochHooks([DivergenceCheck(), Count()])
    >>> hooks.after_epoch(EpochEnd(1, None, {"epoch": 1, "train_loss": 0.5}))
    >>> hooks.hooks[1].epochs
    [1]
    >>> hooks.after_epoch(EpochEnd(2, None, {"epoch": 2, "train_loss": float("nan")}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    overfocus.errors.OverfocusError: training diverged at epoch 2 (training loss is nan): ...
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import OverfocusError
from ..fileio import atomic_write_bytes
from ..progress import epoch_line
from ..regularizers.leak import LeakDiagnostic
from ..runs.rundir import RunDir
from ..runs.writer import EpochWriter
from .live import LiveLog, ProbePass, ProbeResult


@dataclass
class EpochEnd:
    """What one epoch's end hands its hooks; hooks before `WriteEpoch` may add to `row`."""

    epoch: int
    model: Optional[nn.Module]
    row: Dict[str, Any]  # the metrics line of metrics.jsonl
    weights: Optional[Dict[str, Any]] = None  # epoch_NNNN.pt's payload
    state: Optional[Dict[str, Any]] = None  # training_state_NNNN.pt's payload (`overfocus train` only)
    manifest_updates: Dict[str, Any] = field(default_factory=dict)  # run.json keys besides `epochs`
    probe: Optional[ProbeResult] = None  # set by ProbeHook in the epochs it runs


class EpochHook:
    """One thing a run does around its epochs; every method is optional."""

    def before_train(self) -> None:
        """Called once before the first epoch of this process (a resumed run calls it again)."""

    def after_epoch(self, end: EpochEnd) -> None:
        """Called at the end of every epoch (epoch 0: the initial weights), in list order."""

    def after_train(self, status: str) -> None:
        """Called once when the run ends ("complete" or "failed"), even after an exception."""


class EpochHooks:
    """A list of hooks run in order; `after_train` reaches every hook even when one of them fails."""

    def __init__(self, hooks: Iterable[EpochHook]):
        self.hooks: List[EpochHook] = list(hooks)

    def before_train(self) -> None:
        for hook in self.hooks:
            hook.before_train()

    def after_epoch(self, end: EpochEnd) -> None:
        for hook in self.hooks:
            hook.after_epoch(end)

    def after_train(self, status: str) -> None:
        failure: Optional[BaseException] = None
        for hook in self.hooks:
            try:
                hook.after_train(status)
            except Exception as exc:  # the others still close; the first failure is raised after
                failure = failure or exc
        if failure is not None:
            raise failure

    def find(self, kind: type) -> Optional[EpochHook]:
        """The first hook of a type (None when the list has none)."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)


def _train_advice(epoch: int) -> str:
    return f"checkpoints up to epoch {epoch - 1} are kept; lower the learning rate"


class DivergenceCheck(EpochHook):
    """Stop a diverged run before its NaN weights become a checkpoint that reads as a result: a
    non-finite `train_loss` or `test_loss` in the metrics line raises a one-line OverfocusError."""

    KEYS = (("train_loss", "training loss"), ("test_loss", "test loss"))

    def __init__(self, advice: Callable[[int], str] = _train_advice):
        self.advice = advice

    def after_epoch(self, end: EpochEnd) -> None:
        for key, what in self.KEYS:
            value = end.row.get(key)
            if value is not None and not math.isfinite(value):
                raise OverfocusError(f"training diverged at epoch {end.epoch} ({what} is {value}): "
                                     f"{self.advice(end.epoch)}")


class ProbeHook(EpochHook):
    """The probe set evaluated with the epoch's weights every `every` epochs (`end.probe`); with
    `record`, its metric means join the metrics line as `probe_<metric>_<method>`."""

    def __init__(self, probe: ProbePass, every: int = 1, record: bool = False):
        self.probe, self.every, self.record = probe, every, record

    def after_epoch(self, end: EpochEnd) -> None:
        if not self.every or end.epoch % self.every:
            return
        end.probe = self.probe.run(end.model)
        if self.record:
            end.row.update({f"probe_{metric}_{method}": value for method, means in end.probe.means.items()
                            for metric, value in means.items()})


class LeakHook(EpochHook):
    """The label-leak columns of a label-masked regularizer (`regularizers.leak.LeakDiagnostic`) in the
    metrics line, measured with the epoch's weights before it is written."""

    def __init__(self, diagnostic: LeakDiagnostic, device: torch.device, mean, std):
        self.diagnostic, self.device, self.mean, self.std = diagnostic, device, mean, std

    def after_epoch(self, end: EpochEnd) -> None:
        end.row.update(self.diagnostic.row(end.model, end.epoch, self.device, self.mean, self.std))


class WriteEpoch(EpochHook):
    """The durable write of the epoch (`runs.writer.EpochWriter`)."""

    def __init__(self, writer: EpochWriter):
        self.writer = writer
        self.sha256: Optional[str] = None  # of the last weights file written

    def after_epoch(self, end: EpochEnd) -> None:
        self.sha256 = self.writer.write(end.epoch, end.weights, end.row, end.state, end.manifest_updates)


class ProbeFiles(EpochHook):
    """The probe maps of the epochs the probe ran: RUN/live/probe_epoch_NNNN.npz (ids, one array per method)."""

    def __init__(self, run: RunDir, ids: List[str]):
        self.run, self.ids = run, list(ids)

    def after_epoch(self, end: EpochEnd) -> None:
        if end.probe is None:
            return
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=np.asarray(self.ids), **{f"maps_{m}": v for m, v in end.probe.maps.items()})
        atomic_write_bytes(self.run.root / "live" / f"probe_epoch_{end.epoch:04d}.npz", buffer.getvalue())


class EpochLine(EpochHook):
    """One plain line per epoch (`progress.epoch_line`), so a log (nohup, a cluster job, CI) shows each
    epoch as it ends."""

    def __init__(self, prefix: str = "train"):
        self.prefix = prefix

    def after_epoch(self, end: EpochEnd) -> None:
        row = end.row
        epoch_line(end.epoch, prefix=self.prefix, train_acc=row.get("train_acc"), test_acc=row.get("test_acc"),
                   gap=row.get("gap"), seconds=row.get("seconds"))


class LiveLogHook(EpochHook):
    """Every epoch's metrics line and probe pass to the live writers (TensorBoard and/or W&B)."""

    def __init__(self, live: LiveLog):
        self.live = live

    def after_epoch(self, end: EpochEnd) -> None:
        self.live.log(end.row, end.probe)

    def after_train(self, status: str) -> None:
        self.live.close()


def epoch_hooks(writer: Optional[EpochWriter], *, advice: Callable[[int], str] = _train_advice,
                probe: Optional[ProbePass] = None, live: Optional[LiveLog] = None, analyze_every: int = 0,
                record_probe: bool = False, epoch_lines: bool = False,
                row_hooks: Sequence[EpochHook] = ()) -> EpochHooks:
    """THE hook list of a run, in this order: the divergence check; the probe pass (every
    `analyze_every` epochs, every epoch for the live writers alone); `row_hooks`, which add columns
    to the metrics line (the label-leak diagnostic: `LeakHook`); the durable write; with
    `record_probe` (the Tracker) the probe's means in the metrics line and its maps in RUN/live/;
    a line per epoch; the live writers. `writer` None: a process that writes nothing (a torchrun
    rank other than 0)."""
    hooks: List[EpochHook] = [DivergenceCheck(advice)]
    every = analyze_every or (1 if live is not None else 0)
    if probe is not None and every:
        hooks.append(ProbeHook(probe, every, record=record_probe))
    hooks.extend(row_hooks)
    if writer is not None:
        hooks.append(WriteEpoch(writer))
        if probe is not None and record_probe:
            hooks.append(ProbeFiles(writer.run, probe.ids))
        if epoch_lines:
            hooks.append(EpochLine())
    if live is not None:
        hooks.append(LiveLogHook(live))
    return EpochHooks(hooks)
