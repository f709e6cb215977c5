"""Watching the probe set while a model trains: maps and metrics of the current weights, logged live.

Used by `overfocus train --tensorboard DIR` / `--wandb PROJECT` and by `overfocus.Tracker`. The
probe images are evaluated through the analysis core (`analysis.core.evaluate_batch`, the one
evaluation of a batch), with the parameters frozen and the model's mode restored afterwards; the
drawing and the event files are `render.tensorboard.LiveWriter`'s, the W&B run
`render.wandb.WandbWriter`'s (the same interface, the same items).

Example:
    >>> from overfocus.data import open_dataset
    >>> from overfocus.models import build_model
    >>> test = open_dataset("builtin?train=8&test=8", "test", 32)
    >>> probe = ProbePass(test, [0, 4], layer="block3", mean=(0.5,) * 3, std=(0.25,) * 3,
    ...                   methods=("grad_cam",), metric_names=("area_ratio",))
    >>> result = probe.run(build_model("cifarnet", len(test.classes), width=0.125))
    >>> sorted(result.means["grad_cam"]), result.maps["grad_cam"].shape
    (['area_ratio'], (2, 32, 32))
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..analysis.core import evaluate_batch
from ..attribution import attribution_mode, normalize_maps
from ..data import collate_samples
from ..render.tensorboard import LiveWriter, probe_means
from ..render.wandb import WandbWriter

LIVE_METRICS = ("area_ratio", "gini", "entropy", "box_iou", "hit", "pointing_game", "energy_pg")


@dataclass
class ProbeResult:
    """One probe pass: [0, 1] maps per method (N x H x W numpy) and the probe-set metric means."""

    maps: Dict[str, np.ndarray]
    means: Dict[str, Dict[str, float]]


class ProbePass:
    """The probe images of a run, evaluated with whatever weights the model has now."""

    def __init__(self, test_dataset, indices: Sequence[int], *, layer: str, mean, std,
                 methods: Sequence[str] = ("grad_cam",), metric_names: Sequence[str] = LIVE_METRICS):
        self.batch = collate_samples([test_dataset[i] for i in indices])
        self.ids = list(self.batch.image_ids)
        self.has_boxes = bool(getattr(test_dataset, "has_boxes", False))
        self.layer, self.mean, self.std = layer, tuple(mean), tuple(std)
        self.methods, self.metric_names = tuple(methods), tuple(metric_names)

    def run(self, model: nn.Module) -> ProbeResult:
        """Evaluate the probe batch on the model's device; the model's mode and flags are restored."""
        device = next(model.parameters()).device
        batch = self.batch.to(device)
        with attribution_mode(model):
            out = evaluate_batch(model, batch.images, batch.labels, batch.boxes if self.has_boxes else None,
                                 mean=self.mean, std=self.std, methods=self.methods, layer=self.layer,
                                 metric_names=self.metric_names)
        maps = {m: normalize_maps(v.detach())[0].cpu().numpy() for m, v in out.maps.items()}
        values = {m: {k: v.detach().cpu().numpy() for k, v in by.items()} for m, by in out.metrics.items()}
        return ProbeResult(maps, probe_means(values))

    def images_uint8(self) -> np.ndarray:
        """The probe images as N x H x W x 3 uint8 (what the overlays are drawn on)."""
        return (self.batch.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def boxes(self) -> Optional[list]:
        return [b.cpu().numpy() for b in self.batch.boxes] if self.has_boxes else None


class LiveLog:
    """A ProbePass and its live writers (TensorBoard and/or W&B) together: `log(row, probe.run(model))`
    once per epoch."""

    def __init__(self, probe: ProbePass, logdir: Optional[Path | str] = None,
                 wandb: Optional[Mapping[str, Any] | str] = None, wandb_defaults: Optional[Mapping[str, Any]] = None):
        self.probe = probe
        self.writers: list = []
        if logdir:
            self.writers.append(LiveWriter(logdir))
        if wandb is not None:
            self.writers.append(WandbWriter(wandb, defaults=wandb_defaults))
        self._images, self._boxes = probe.images_uint8(), probe.boxes()

    def log(self, row: Mapping[str, Any], result: Optional[ProbeResult]) -> None:
        """Log an epoch's metrics row and, when given, its probe pass (maps and means)."""
        means, maps = (result.means, result.maps) if result is not None else ({}, {})
        for writer in self.writers:
            writer.log_epoch(row, means, self._images, maps, self.probe.ids, self._boxes)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
