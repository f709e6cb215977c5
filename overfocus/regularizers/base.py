"""The regularizer plug-in interface of the training engine.

A regularizer owns the training loss of a step. The engine calls, per step:
    loss, stats = reg.loss(model, batch, step)     # batch.images already mean/std normalised
    ... backward, optimizer step ...
    reg.after_step(model)                          # e.g. the EMA update
and per epoch `reg.on_epoch_start(epoch)`. `state_dict()` / `load_state_dict()` go into every
checkpoint so a resumed run is bit-identical. `stats` values are floats or 0-d tensors; the engine
averages them over the epoch and logs them in metrics.jsonl.

Each method subclasses `Regularizer`, declares its hyper-parameters as a dataclass `Params`
(validated from `--set regularizer.KEY=VALUE`), and registers itself in REGULARIZERS.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import RegularizerConfig, from_dict
from ..errors import OverfocusError
from ..models import get_module
from ..models.hooks import Hooks
from ..registry import Registry

REGULARIZERS: Registry = Registry("regularizer")


@dataclass
class RegContext:
    """What a regularizer may know about the run when it is built."""

    model_name: str
    latent_layer: str
    num_classes: int
    steps_per_epoch: int
    epochs: int
    device: torch.device
    has_boxes: bool = False
    image_size: int = 64
    seed: int = 0


@dataclass
class StepInfo:
    """Where training stands: 0-based global step, 1-based epoch, step within the epoch.

    `batch_share` is this process's fraction of the global batch (1.0 without DDP). The engine
    weights each rank's loss so that batch MEANS match a single process; a loss term that is a
    SUM over images must divide it by `batch_share` to stay a sum over the global batch.
    """

    step: int
    epoch: int
    step_in_epoch: int
    batch_share: float = 1.0


class Regularizer:
    """Base class: plain cross-entropy, nothing after the step, no state.

    Example:
        >>> reg = build_regularizer(RegularizerConfig("none"), None)
        >>> type(reg).__name__
        'NoRegularizer'
    """

    name = "none"
    needs_boxes = False

    @dataclass
    class Params:
        pass

    def __init__(self, params: Any, ctx: RegContext):
        self.params, self.ctx = params, ctx

    def setup(self, model: nn.Module) -> None:
        """Called once with the online model before training (or resuming) starts."""

    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        return F.cross_entropy(model(batch.images), batch.labels), {}

    def after_step(self, model: nn.Module) -> None:
        """Called after each optimizer step."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each training epoch (1-based)."""

    def teardown(self, model: nn.Module) -> None:
        """Called when training ends: remove hooks so the model is plain again."""

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


@REGULARIZERS.register("none")
class NoRegularizer(Regularizer):
    """Vanilla training: cross-entropy only."""


@contextlib.contextmanager
def latent_hook(model: nn.Module, layer: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the output z of `layer` by fn(z) for the duration of the block; always removed."""
    with Hooks().forward(get_module(model, layer), lambda _m, _i, out: fn(out)):
        yield


def build_regularizer(cfg: RegularizerConfig, ctx: RegContext) -> Regularizer:
    """Instantiate the configured regularizer, validating its params against its dataclass."""
    cls = REGULARIZERS.get(cfg.name)
    params = from_dict(cls.Params, cfg.params, f"regularizer({cfg.name})")
    if cls.needs_boxes and ctx is not None and not ctx.has_boxes:
        raise OverfocusError(f"regularizer {cfg.name!r} needs ground-truth boxes, but the dataset has none: "
                             "use a dataset with boxes (builtin, tiny-imagenet, cub, voc, coco, yolo)")
    return cls(params, ctx)
