"""Weights & Biases: the twin of the TensorBoard writers, logging exactly what they log.

Live (`WandbWriter`, used by `overfocus train --wandb PROJECT`, `overfocus.Tracker(wandb={...})`
and the Lightning callback's `wandb={...}`): per epoch the `run/<field>` scalars of metrics.jsonl,
the probe-set means `probe/<metric>/<method>` and one overlay per probe image and method,
`overlay/<method>/<image id>`, with the epoch as W&B's step (its image slider scrubs the epochs).
Export (`export`, `overfocus export RUN --to wandb`): a finished run's `run/<field>`,
`<metric>/<method>` and `probe/<method>` frames, as `overfocus tensorboard` writes them.
What is logged comes from `render.tensorboard.live_items` / `export_items`: one list for both loggers.

Needs the optional `wandb` package (`pip install "overfocus[wandb]"`). The `wandb` options are
`wandb.init`'s keyword arguments (project, name, entity, dir, mode, tags, config, ...);
`WANDB_MODE=offline` logs to local files only (`wandb sync` uploads them later).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import OverfocusError
from .frames import FrameStyle, check_style
from .io import load_analysis
from .tensorboard import export_items, live_items


def require_wandb() -> None:
    """Raise a one-line OverfocusError when the optional wandb package is missing."""
    if importlib.util.find_spec("wandb") is None:
        raise OverfocusError('logging to Weights & Biases needs the wandb package: pip install "overfocus[wandb]" '
                             "(or pip install wandb)")


def init_options(options: Optional[Mapping[str, Any] | str]) -> dict:
    """`wandb.init` keyword arguments from a project name or a mapping of them.

    Example:
        >>> init_options("overfocus-demo")
        {'project': 'overfocus-demo'}
    """
    if isinstance(options, str):
        return {"project": options}
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OverfocusError(f"wandb={options!r}: pass a project name or a dict of wandb.init arguments, "
                             "e.g. wandb={'project': 'overfocus', 'mode': 'offline'}")
    return dict(options)


def _start(options: Mapping[str, Any], defaults: Mapping[str, Any]):
    require_wandb()
    import wandb

    kwargs = {**defaults, **init_options(options)}
    if kwargs.get("dir"):
        Path(kwargs["dir"]).mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(**kwargs, reinit="create_new")
    except TypeError:  # an older wandb without reinit="create_new"
        return wandb.init(**kwargs, reinit=True)
    except Exception as exc:  # wandb raises its own types for a bad key, no login, no network ...
        raise OverfocusError(f"Weights & Biases did not start ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
                             "log in with `wandb login`, or set WANDB_MODE=offline to log to local files") from None


def _image(panel: np.ndarray, caption: str):
    import wandb

    return wandb.Image(np.ascontiguousarray(panel), caption=caption)


class WandbWriter:
    """A W&B run logged epoch by epoch while a model trains; the interface of `LiveWriter`.

    Example:
        >>> live = WandbWriter({"project": "demo", "mode": "offline", "dir": "/tmp/wb"})   # doctest: +SKIP
        >>> live.log_epoch({"epoch": 1, "test_acc": 0.5}, {}, images, {"grad_cam": maps}, ids)  # doctest: +SKIP
        >>> live.close()                                                                   # doctest: +SKIP
    """

    def __init__(self, options: Optional[Mapping[str, Any] | str], size: int = 192, alpha: float = 0.5,
                 cmap: str = "inferno", defaults: Optional[Mapping[str, Any]] = None):
        self.style = FrameStyle(size, alpha, cmap)
        check_style(self.style)
        require_wandb()
        self._options, self._defaults = init_options(options), dict(defaults or {})
        self._run = None  # started at the first epoch: the run folder (its files' default home) exists by then

    def log_epoch(self, row: Mapping[str, Any], probe_means: Mapping[str, Mapping[str, float]],
                  images: np.ndarray, maps: Mapping[str, np.ndarray], image_ids: Sequence[str],
                  boxes: Optional[Sequence[np.ndarray]] = None) -> None:
        """One epoch, as `LiveWriter.log_epoch` logs it, at W&B step = the epoch."""
        scalars, panels = live_items(row, probe_means, images, maps, image_ids, boxes, self.style)
        epoch = int(row["epoch"])
        if self._run is None:
            self._run = _start(self._options, self._defaults)
        self._run.log({**scalars, **{tag: _image(p, f"epoch {epoch}") for tag, p in panels.items()}}, step=epoch)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def export(run_dir: Path | str, options: Optional[Mapping[str, Any] | str] = None, size: int = 512,
           alpha: float = 0.5, cmap: str = "inferno") -> str:
    """Log an analysed run to a new W&B run (named after the run, its local files in RUN/wandb,
    unless `options` say otherwise); return the W&B run's local folder.

    Example:
        >>> export("runs/demo", {"project": "overfocus", "mode": "offline"})   # doctest: +SKIP
        'runs/demo/wandb/offline-run-20260101_000000-abc123/files'
    """
    require_wandb()
    style = FrameStyle(size, alpha, cmap)
    check_style(style)
    analysis = load_analysis(run_dir)
    run = _start(options or {}, {"name": analysis.name, "job_type": "overfocus-export", "dir": str(analysis.run_dir),
                                 "config": {"run_dir": str(analysis.run_dir), "methods": analysis.methods}})
    try:
        for epoch, scalars, frames in export_items(analysis, style):
            run.log({**scalars, **{tag: _image(f, f"epoch {epoch}") for tag, f in frames.items()}}, step=epoch)
        return str(run.dir)
    finally:
        run.finish()
