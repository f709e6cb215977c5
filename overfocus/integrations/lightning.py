"""A Lightning callback that records a `Trainer.fit` as an overfocus run directory.

Built on `overfocus.Tracker`: epoch 0 (the weights before training) at fit start, then one
checkpoint, metrics line and run.json update at the end of each training epoch (overfocus epoch =
Lightning's `current_epoch + 1`), written by global rank 0 only. Scalars the LightningModule logs
(`self.log("train_loss", ...)`) go into metrics.jsonl; name the logged accuracies with
`train_acc_key` / `test_acc_key`, or leave them out and the tracker measures them in eval mode.
A fit resumed from a Lightning checkpoint (`trainer.fit(module, ckpt_path=...)`) continues the same
run with `resume=True` (a Tracker option: it also starts the run when there is none yet).
A second `fit()` with the same callback continues the run when it carries on from the epoch the
run ended at (the same Trainer with more `max_epochs`); any other second fit is refused before it
trains, with one line, and the finished run is left as it was.

Example:
    >>> from overfocus.integrations.lightning import OverfocusCallback      # doctest: +SKIP
    >>> callback = OverfocusCallback("runs/pl", data="builtin", model_name="cifarnet",
    ...                              model_kwargs={"width": 0.25}, resume=True)  # doctest: +SKIP
    >>> lightning.Trainer(max_epochs=5, callbacks=[callback]).fit(module, loader)  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ..errors import OverfocusError
from ..training.tracker import Tracker

try:
    from lightning.pytorch import Callback
except ImportError:
    raise OverfocusError('the Lightning callback needs the lightning package: pip install lightning '
                         '(or pip install "overfocus[integrations]")') from None


class OverfocusCallback(Callback):
    """Record the fit as an overfocus run directory (see the module docstring).

    Args:
        run_dir: the run folder the tracker creates.
        module_attr: the LightningModule's attribute holding the network whose recipe is recorded
            (default "model" when it exists, else the LightningModule itself).
        train_acc_key, test_acc_key: names of logged metrics holding the accuracies (fractions).
        **tracker_options: `overfocus.Tracker`'s options (data=..., model_name=..., arch=..., ...).
    """

    def __init__(self, run_dir: Path | str, *, module_attr: Optional[str] = None,
                 train_acc_key: Optional[str] = None, test_acc_key: Optional[str] = None, **tracker_options: Any):
        super().__init__()
        self.run_dir, self.module_attr = Path(run_dir), module_attr
        self.train_acc_key, self.test_acc_key = train_acc_key, test_acc_key
        self.tracker_options = tracker_options
        self.tracker = None
        self._refused = False  # this fit was refused: the recorded run is not touched

    def network(self, pl_module) -> torch.nn.Module:
        """The network inside the LightningModule (what the recipe rebuilds)."""
        name = self.module_attr or ("model" if isinstance(getattr(pl_module, "model", None), torch.nn.Module)
                                    else None)
        if name is None:
            return pl_module
        net = getattr(pl_module, name, None)
        if not isinstance(net, torch.nn.Module):
            raise OverfocusError(f"OverfocusCallback(module_attr={name!r}): the LightningModule has no such "
                                 "network attribute: name the attribute that holds your model")
        return net

    def on_fit_start(self, trainer, pl_module) -> None:
        self._refused = False
        if not trainer.is_global_zero:
            return
        if self.tracker is not None:
            return self._continue(trainer)
        self.tracker = Tracker(self.run_dir, **self.tracker_options)
        self.tracker.start(self.network(pl_module))

    def _continue(self, trainer) -> None:
        """A second fit with this callback: on from the run's last epoch, or refused cleanly."""
        last = self.tracker.last_epoch
        if trainer.current_epoch != last:
            self._refused = True
            raise OverfocusError(f"OverfocusCallback: {self.run_dir} already records epochs up to {last}, and this "
                                 f"fit starts at epoch {trainer.current_epoch + 1}: pass a new OverfocusCallback "
                                 "with another run_dir (the recorded run is left as it was)")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.tracker is None or trainer.sanity_checking:
            return
        logged = _scalars(trainer.callback_metrics)
        train_acc = logged.pop(self.train_acc_key, None) if self.train_acc_key else None
        test_acc = logged.pop(self.test_acc_key, None) if self.test_acc_key else None
        logged = {k: v for k, v in logged.items() if k not in ("epoch", "train_acc", "test_acc", "gap", "seconds")}
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.tracker.epoch_end(trainer.current_epoch + 1, self.network(pl_module), train_acc=train_acc,
                               test_acc=test_acc, optimizer=optimizer, **logged)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.tracker is not None:
            self.tracker.finish("complete")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.tracker is not None and not self._refused:
            self.tracker.finish("failed")


def _scalars(metrics: Dict[str, Any]) -> Dict[str, float]:
    """The one-number entries of Lightning's callback_metrics, as floats; names made key-safe."""
    out = {}
    for key, value in metrics.items():
        if torch.is_tensor(value) and value.numel() == 1:
            out[key.replace("/", "_")] = float(value.detach().cpu())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key.replace("/", "_")] = float(value)
    return out
