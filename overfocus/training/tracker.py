"""`overfocus.Tracker`: your own training loop writes an overfocus run directory.

Call `start(model)` once before training and `epoch_end(epoch, model, ...)` once per epoch; the
folder then holds what `overfocus train` writes (run.json with the model's recipe, a checkpoint
per epoch, epoch 0 being the weights before training, metrics.jsonl, `checkpoints/latest`), made
durable in the same order and through the same atomic writes (`runs.writer.EpochWriter`), so `overfocus
analyze RUN`, `render`, `compare` and `audit` work on it as on any run.

The recipe is what rebuilds the model for the analysis: a registry name with its keyword arguments
(`model_name="cifarnet", model_kwargs={"width": 0.25}`), a timm name (`model_name="timm:resnet18"`,
found by itself for a timm model), or an import path (`arch="mypackage.nets:Net"`, called with
`num_classes=` when it takes it). `start` rebuilds it once and checks that its weights have the
names and shapes of yours, so a wrong recipe fails there and not at analysis time.

A restarted loop continues its run with `resume=True`: the tracker then attaches to the folder it
wrote before (same recipe and data, checked), writes no new epoch 0, and the next `epoch_end`
continues after the last durable epoch (or goes back to an earlier one when your loop resumed from
an older checkpoint: the later epochs are then rewritten). Without an existing run it starts one,
so the same script serves the first start and every restart.

Live monitoring: with `tensorboard=DIR` every epoch's metrics and the probe-set overlays go to
TensorBoard (with `wandb={...}` the same to Weights & Biases); `analyze_every=N` evaluates the probe set every N epochs through the analysis core
and adds its means to metrics.jsonl (`probe_<metric>_<method>`) and its maps to RUN/live/.

Example:
    >>> import tempfile, torch
    >>> from overfocus.models import build_model
    >>> net = build_model("cifarnet", 3, width=0.125)
    >>> tracker = Tracker(tempfile.mkdtemp() + "/run", data="builtin?train=24&test=12&classes=3",
    ...                   model_name="cifarnet", model_kwargs={"width": 0.125}, image_size=32)
    >>> tracker.start(net)["epoch"]
    0
    >>> row = tracker.epoch_end(1, net, train_acc=0.5, test_acc=0.25, train_loss=1.2)
    >>> round(row["gap"], 2), tracker.finish()
    (0.25, 'complete')
"""
from __future__ import annotations

import numbers
import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from ..checkpoint.keys import check_and_load, infer_num_classes, strip_prefixes
from ..config import IMAGENET_MEAN, IMAGENET_STD, DataConfig, ModelConfig, RunConfig, to_dict
from ..data import collate_samples, normalize, open_dataset
from ..data.splits import probe_ids, readable_probe_indices
from ..errors import OverfocusError
from ..fileio import clean_stale_temps
from ..models.build import ModelOptions, build_target
from ..models.layers import choose_layer
from ..render.wandb import init_options, require_wandb
from ..runs.accuracy import eval_loaders, evaluate
from ..runs.claim import RunClaim, check_out_dir
from ..runs.lock import run_lock
from ..runs.manifest import dataset_fingerprint, run_manifest
from ..runs.rundir import SCHEMA_VERSION, TRACKER_KIND, RunDir, recorded_by
from ..runs.writer import EpochWriter
from .engine import Datasets
from .hooks import EpochEnd, EpochHooks, epoch_hooks
from .live import LiveLog, ProbePass

REGISTRY_KWARGS = ("width", "small_input", "batch_norm")  # what a registry model is built with besides num_classes


def check_model_kwargs(model_kwargs: Optional[Mapping[str, Any]], arch: Optional[str]) -> None:
    """model_kwargs a Tracker records: a registry model's width / small_input / batch_norm; the class
    count is Tracker's own `num_classes=`; an `arch` factory takes no model_kwargs.

    Example:
        >>> check_model_kwargs({"num_classes": 10}, "torchvision.models:resnet18")
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: Tracker model_kwargs ['num_classes']: pass num_classes=10 to Tracker itself (arch factories are called with num_classes=, and take no model_kwargs)
    """
    given = dict(model_kwargs or {})
    if "num_classes" in given:
        where = "arch factories are called with num_classes=, and take no model_kwargs" if arch else \
            "it builds the model with that many outputs"
        raise OverfocusError(f"Tracker model_kwargs ['num_classes']: pass num_classes={given['num_classes']!r} to "
                             f"Tracker itself ({where})")
    if arch and given:
        raise OverfocusError(f"Tracker(arch={arch!r}) takes no model_kwargs ({sorted(given)}): the factory is "
                             "called with num_classes= alone; put other arguments in a factory of your own "
                             "(arch='mypkg.nets:make_net')")
    unknown = set(given) - set(REGISTRY_KWARGS)
    if unknown:
        raise OverfocusError(f"Tracker model_kwargs {sorted(unknown)} are not recorded: a registry model takes "
                             f"{', '.join(REGISTRY_KWARGS)}; for other arguments use arch='module:Factory'")


class Tracker:
    """Record a training loop you wrote as an overfocus run directory (see the module docstring).

    Args:
        run_dir: the folder to create (an existing one only with `force=True`: the old run is
            kept aside until the new epoch 0 is durable, as `overfocus train --force` does).
        data: the data spec the model trains on (`overfocus list datasets`), e.g. "builtin".
        model_name: registry name (`overfocus list models`) or "timm:NAME"; `model_kwargs` are the
            keyword arguments you passed to `overfocus.models.build_model` (width, small_input, batch_norm).
        arch: "package.module:Factory" instead of `model_name`.
        num_classes: default from the model's last linear layer, else from the data.
        image_size, mean, std, batch_size: the preprocessing your loop applies (recorded for analysis).
        layer: the attribution layer (default the model's declared one, else the last spatial module).
        measure: measure train/test accuracy (eval mode, fixed train subset of the test set's size)
            for an epoch whose accuracies your loop does not pass.
        analyze_every: evaluate the probe set every N epochs (0 = never, unless `tensorboard`).
        tensorboard: a log folder; every epoch's scalars and probe overlays go there.
        wandb: a W&B project name or `wandb.init` arguments ({"project": ..., "mode": "offline", ...}):
            the same as `tensorboard` logs, to Weights & Biases (needs `pip install "overfocus[wandb]"`).
        methods: attribution methods of the probe pass.
        resume: continue the run this tracker wrote before in `run_dir`, if there is one (see the
            module docstring); `force` and `resume` exclude each other.
    """

    def __init__(self, run_dir: Path | str, *, data: str, model_name: Optional[str] = None,
                 model_kwargs: Optional[Mapping[str, Any]] = None, arch: Optional[str] = None,
                 num_classes: Optional[int] = None, image_size: int = 64, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, batch_size: int = 64, layer: Optional[str] = None,
                 seed: int = 0, measure: bool = True, analyze_every: int = 0,
                 tensorboard: Optional[Path | str] = None, wandb: Optional[Mapping[str, Any] | str] = None,
                 methods: Sequence[str] = ("grad_cam",),
                 force: bool = False, resume: bool = False):
        if model_name and arch:
            raise OverfocusError("Tracker: pass either model_name or arch, not both")
        check_model_kwargs(model_kwargs, arch)
        if analyze_every < 0:
            raise OverfocusError(f"Tracker analyze_every={analyze_every}: use 0 (never) or N >= 1 (every N epochs)")
        if force and resume:
            raise OverfocusError("Tracker: force=True replaces the run, resume=True continues it: pass one of them")
        self.run = RunDir(run_dir)
        self.force = force
        self._resuming = resume and self.run.manifest_path.is_file()
        if self._resuming:
            check_resumable(self.run)
        else:
            check_out_dir(self.run.root, force)
        self.data = DataConfig(spec=data, image_size=image_size, mean=tuple(mean), std=tuple(std),
                               batch_size=batch_size)
        self.model_name, self.arch = model_name, arch
        # the defaults of models.build_model, so model_kwargs are exactly the arguments you built it with
        self.model_kwargs = {"width": 1.0, "small_input": False, "batch_norm": None, **dict(model_kwargs or {})}
        self.num_classes, self.layer, self.seed, self.measure = num_classes, layer, seed, measure
        self.analyze_every, self.tensorboard, self.methods = analyze_every, tensorboard, tuple(methods)
        self.wandb = wandb
        if wandb is not None:
            require_wandb()  # before the run starts, not after its first epoch
            init_options(wandb)
        self._datasets = None
        self._loaders: Optional[Dict[str, Any]] = None
        self._hooks: Optional[EpochHooks] = None  # the epoch-end hooks (training/hooks.py), made once the layers are known
        self._claim = None
        self._lock = run_lock(self.run.root)  # held from start() to finish(): one writer per run folder
        self._shapes: Optional[Dict[str, tuple]] = None  # the model's weights' names and shapes
        self._started = False
        self._last_epoch = -1
        self._clock = time.perf_counter()

    # ---- the two calls of a loop ------------------------------------------------------------
    def start(self, model: nn.Module) -> Dict[str, Any]:
        """Before training: check the recipe, write run.json and epoch 0 (the initial weights)."""
        if self._started:
            raise OverfocusError(f"Tracker for {self.run.root} was started already: call start() once")
        model = unwrap(model)
        self._recipe_from(model)
        self._open_data()
        self.num_classes = self.num_classes or infer_num_classes(model.state_dict()) or len(self._datasets.classes)
        self._shapes = weight_shapes(model)
        self._lock.acquire()
        try:
            clean_stale_temps(self.run.root, recursive=True)  # what a killed writer left
            return self._attach(model) if self._resuming else self._start_fresh(model)
        except BaseException:
            self._lock.release()
            raise

    def _start_fresh(self, model: nn.Module) -> Dict[str, Any]:
        layers = self._check_recipe(model)
        self._claim = RunClaim.take(self.run.root, self.force)
        try:
            self.run.checkpoints.mkdir(parents=True, exist_ok=True)
            self.run.write_manifest(self._manifest(layers))
            self._started = True
            self._layers = layers
            row = self.epoch_end(0, model)
            self._claim.commit()  # the new run is durable: a replaced one can go
        except BaseException:
            self._claim.undo()
            self._started = False
            raise
        return row

    def _attach(self, model: nn.Module) -> Dict[str, Any]:
        """resume=True on an existing run: check that this is its recipe and data, then continue
        after its last durable epoch; returns that epoch's metrics line."""
        manifest = self.run.read_manifest()
        differences = recipe_differences(manifest, self._manifest_config(), int(self.num_classes))
        if differences:
            raise OverfocusError(f"Tracker(resume=True): {self.run.root} was recorded with another "
                                 f"{'; '.join(differences)}: pass the options of that run, or another run_dir")
        self._rebuild_checked(model)
        last = self.run.latest_epoch()
        if last is None:
            raise OverfocusError(f"Tracker(resume=True): {self.run.root} has no durable epoch yet: delete the "
                                 "folder (or pass force=True instead of resume=True) to start it again")
        self._layers = {k: manifest[k] for k in ("gradcam_layer", "latent_layer")}
        manifest["status"] = "running"
        self.run.write_manifest(manifest)
        self._started, self._last_epoch = True, 0  # the first epoch_end may go back to any epoch >= 1
        self._clock = time.perf_counter()
        rows = [r for r in self.run.read_metrics() if r.get("epoch") == last]
        return rows[-1] if rows else {"epoch": last}

    def epoch_end(self, epoch: int, model: nn.Module, *, train_acc: Optional[float] = None,
                  test_acc: Optional[float] = None, optimizer: Optional[torch.optim.Optimizer] = None,
                  **scalars: float) -> Dict[str, Any]:
        """After epoch `epoch`: checkpoint, metrics line, run.json, `latest`, in that order; returns the line.

        Accuracies not passed are measured when `measure` is on; `scalars` (e.g. train_loss=...)
        go into the metrics line as they are.
        """
        if epoch == 0 and not self._started:
            return self.start(model)
        if not self._started:
            raise OverfocusError("Tracker.epoch_end before start(model): call start(model) once before training")
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch <= self._last_epoch:
            raise OverfocusError(f"Tracker.epoch_end({epoch!r}): epochs must be integers that grow "
                                 f"(the last was {self._last_epoch}); to go back, restart with resume=True")
        epoch = int(epoch)
        model = unwrap(model)
        self._check_same_model(model, epoch)
        if not self._lock.held:  # an epoch after finish(): the run is open again
            self._lock.acquire()
        seconds = time.perf_counter() - self._clock
        row = {"epoch": epoch, **{k: _number(k, v) for k, v in scalars.items()}}
        train_acc, test_acc = self._accuracies(model, train_acc, test_acc)
        if train_acc is not None:
            row["train_acc"] = train_acc
        if test_acc is not None:
            row["test_acc"] = test_acc
        if train_acc is not None and test_acc is not None:
            row["gap"] = train_acc - test_acc
        if optimizer is not None:
            row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = seconds
        self._hook_list().after_epoch(EpochEnd(epoch, model, row, self._weights(epoch, model, optimizer)))
        self._last_epoch = epoch
        self._clock = time.perf_counter()
        return row

    def finish(self, status: str = "complete") -> str:
        """Mark the run complete (or failed) in run.json, close the TensorBoard writer and release
        the run folder. A later `epoch_end` opens the run again (status "running" until the next
        finish)."""
        if self._hooks is not None:
            self._hooks.after_train(status)
            self._hooks = None
        if self._started and self._lock.held:
            manifest = self.run.read_manifest()
            manifest["status"] = status
            self.run.write_manifest(manifest)
        self._lock.release()
        return status

    @property
    def last_epoch(self) -> int:
        """The last epoch this tracker wrote (-1 before start; 0 after a resume until the first epoch_end)."""
        return self._last_epoch

    def _check_same_model(self, model: nn.Module, epoch: int) -> None:
        """The run records one architecture: weights of other names or shapes are another model."""
        shapes = weight_shapes(model)
        if shapes == self._shapes:
            return
        other = sorted(set(shapes) ^ set(self._shapes or {})) or [k for k in shapes if shapes[k] != self._shapes[k]]
        raise OverfocusError(f"Tracker.epoch_end({epoch}): this model is not the one the run records (first "
                             f"difference: {other[0]}): one run holds one architecture; pass a new run_dir for "
                             "another model")

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish("complete" if exc_type is None else "failed")

    # ---- the recipe ------------------------------------------------------------------------------
    def _recipe_from(self, model: nn.Module) -> None:
        if self.model_name or self.arch:
            return
        timm_name = timm_architecture(model)
        if timm_name is None:
            raise OverfocusError("Tracker needs the model's recipe to rebuild it for analysis: pass "
                                 "model_name='cifarnet' (see `overfocus list models`) with model_kwargs, "
                                 "model_name='timm:NAME', or arch='package.module:Factory'")
        self.model_name = f"timm:{timm_name}"

    def _options(self) -> ModelOptions:
        k = self.model_kwargs
        return ModelOptions(model=self.model_name, arch=self.arch, width=float(k["width"]),
                            small_input=bool(k["small_input"]), batch_norm=k["batch_norm"])

    def _check_recipe(self, model: nn.Module) -> Dict[str, str]:
        """Rebuild the recipe once (its weights must have your model's names and shapes) and choose
        the attribution layers."""
        rebuilt, declared, latent = self._rebuild_checked(model)
        if self.layer or declared:  # no probe forward pass needed
            layer = choose_layer(rebuilt, None, asked=self.layer, declared=declared).name
            return {"gradcam_layer": layer, "latent_layer": latent if (latent and not self.layer) else layer}
        choice = choose_layer(rebuilt, self._probe_images())
        print(f"overfocus Tracker: attribution layer {choice.name!r} ({choice.reason}; "
              "layer=NAME chooses another)", file=sys.stderr)
        return {"gradcam_layer": choice.name, "latent_layer": choice.name}

    def _rebuild_checked(self, model: nn.Module):
        """The recipe's model with your weights loaded, its declared layer and latent layer."""
        rebuilt, description, declared, latent = build_target(self._options(), self.num_classes)
        try:
            check_and_load(rebuilt, strip_prefixes(model.state_dict()), description)
        except OverfocusError as exc:
            given = (f"arch={self.arch!r}" if self.arch
                     else f"model_name={self.model_name!r}, model_kwargs={self.model_kwargs}")
            what = "arch" if self.arch else "model_name and model_kwargs"
            raise OverfocusError(f"Tracker: the recipe does not rebuild your model ({exc}): pass the {what} "
                                 f"you built it with (now {given})") from None
        return rebuilt, declared, latent

    def _manifest(self, layers: Dict[str, str]) -> Dict[str, Any]:
        d = self._datasets
        return run_manifest(self._manifest_config(), source={"kind": TRACKER_KIND}, seed=self.seed,
                            dataset=dataset_fingerprint(self.data.spec, d.train, d.test, d.classes, d.has_boxes),
                            num_classes=int(self.num_classes), **layers, probe_ids=probe_ids(d.test))

    def _manifest_config(self) -> Dict[str, Any]:
        """run.json `config`: the data and the model's recipe (your loop's optimizer is not known)."""
        model_cfg = to_dict(ModelConfig(name=self.model_name or "", width=float(self.model_kwargs["width"]),
                                        small_input=bool(self.model_kwargs["small_input"]),
                                        batch_norm=self.model_kwargs["batch_norm"], num_classes=int(self.num_classes)))
        if self.arch:
            model_cfg["arch"] = self.arch
        cfg = to_dict(RunConfig(data=self.data))
        cfg["model"] = model_cfg
        for section in ("optim", "train", "regularizer"):  # your loop's: not known here
            cfg.pop(section)
        return cfg

    # ---- data, accuracies, probe pass -----------------------------------------------------------
    def _open_data(self) -> None:
        d = self.data
        test = open_dataset(d.spec, "test", d.image_size)
        train = open_dataset(d.spec, "train", d.image_size)
        if len(test) == 0:
            raise OverfocusError(f"Tracker data {d.spec!r} has no test images: the probe set and the test "
                                 "accuracy come from the test split")
        self._datasets = Datasets(train, train, test, list(test.classes), bool(getattr(test, "has_boxes", False)))

    def _probe_images(self) -> torch.Tensor:
        test = self._datasets.test
        batch = collate_samples([test[0]])
        return normalize(batch.images, self.data.mean, self.data.std)

    def _accuracies(self, model: nn.Module, train_acc, test_acc):
        if (train_acc is not None and test_acc is not None) or not self.measure:
            return _optional(train_acc, "train_acc"), _optional(test_acc, "test_acc")
        loaders = self._eval_loaders()
        device = next(model.parameters()).device
        d = self.data
        if train_acc is None:
            train_acc = evaluate(model, loaders["train"], device, d.mean, d.std)[1]
        if test_acc is None:
            test_acc = evaluate(model, loaders["test"], device, d.mean, d.std)[1]
        return float(train_acc), float(test_acc)

    def _eval_loaders(self) -> Dict[str, Any]:
        """The whole test split and a fixed train subset of its size, as `overfocus train` evaluates."""
        if self._loaders is None:
            self._loaders = eval_loaders(self._datasets.train, self._datasets.test, self.seed, self.data.batch_size)
        return self._loaders

    def _hook_list(self) -> EpochHooks:
        """The epoch-end hooks (made again for an epoch after finish()): the probe pass every
        `analyze_every` epochs (every epoch for TensorBoard / W&B alone), its means in the metrics
        line and its maps in RUN/live/, the durable write, the live writers."""
        if self._hooks is None:
            live_on = bool(self.tensorboard) or self.wandb is not None
            probe = self._probe_set() if (live_on or self.analyze_every) else None
            live = LiveLog(probe, self.tensorboard, self.wandb,
                           wandb_defaults={"name": self.run.root.name, "dir": str(self.run.root)}) if live_on else None
            self._hooks = epoch_hooks(EpochWriter(self.run), advice=_divergence_advice, probe=probe, live=live,
                                      analyze_every=self.analyze_every, record_probe=True)
            self._hooks.before_train()
        return self._hooks

    def _probe_set(self) -> ProbePass:
        test = self._datasets.test
        return ProbePass(test, readable_probe_indices(test), layer=self._layers["gradcam_layer"], mean=self.data.mean,
                         std=self.data.std, methods=self.methods)

    def _weights(self, epoch: int, model: nn.Module, optimizer) -> Dict[str, Any]:
        """epoch_NNNN.pt of a tracked run: the weights (prefixes stripped) and the recipe's name; your
        optimizer's state when passed."""
        payload = {"schema": SCHEMA_VERSION, "epoch": epoch, "model_name": self.model_name or self.arch,
                   "num_classes": int(self.num_classes),
                   "model": {k: v.detach().cpu().clone() for k, v in strip_prefixes(model.state_dict()).items()}}
        if self.arch:
            payload["arch"] = self.arch
        if optimizer is not None:
            payload["optimizer"] = optimizer.state_dict()
        return payload


def _divergence_advice(epoch: int) -> str:
    return (f"checkpoints up to epoch {epoch - 1} are kept; lower your loop's learning rate and continue the run "
            "with Tracker(..., resume=True)")


def check_resumable(run: RunDir) -> None:
    """A folder a Tracker may continue: one that a Tracker recorded."""
    kind = recorded_by(run.read_manifest())
    if kind != TRACKER_KIND:
        made_by = f"`{kind}`" if kind else "`overfocus train`"
        raise OverfocusError(f"Tracker(resume=True): {run.root} was made by {made_by}, not by a Tracker: "
                             "pass another run_dir (or continue an `overfocus train` run with `overfocus resume`)")


def recipe_differences(manifest: Mapping[str, Any], config: Mapping[str, Any], num_classes: int) -> list:
    """What differs between a recorded run.json and a tracker's data and model settings.

    Example:
        >>> recorded = {"config": {"data": {"spec": "builtin"}, "model": {"name": "cifarnet"}}, "num_classes": 3}
        >>> recipe_differences(recorded, {"data": {"spec": "builtin"}, "model": {"name": "vgg11"}}, 3)
        ["model.name ('cifarnet' in the run, 'vgg11' now)"]
    """
    recorded = manifest.get("config", {})
    out = [f"{section}.{key} ({old!r} in the run, {config[section].get(key)!r} now)"
           for section in ("data", "model") for key, old in recorded.get(section, {}).items()
           if key != "num_classes" and _comparable(config[section].get(key)) != _comparable(old)]
    if int(manifest.get("num_classes", num_classes)) != num_classes:
        out.append(f"num_classes ({manifest.get('num_classes')} in the run, {num_classes} now)")
    return out


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def unwrap(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def timm_architecture(model: nn.Module) -> Optional[str]:
    """The timm name of a model made by `timm.create_model`, else None.

    Example:
        >>> timm_architecture(nn.Linear(2, 2)) is None
        True
    """
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    name = cfg.get("architecture") if isinstance(cfg, dict) else None
    return str(name) if name else None


def _number(key: str, value: Any) -> float:
    if torch.is_tensor(value):
        value = value.detach().item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise OverfocusError(f"Tracker.epoch_end({key}={value!r}): metrics must be numbers") from None


def _optional(value: Any, key: str) -> Optional[float]:
    """An accuracy your loop passed: a fraction in [0, 1], or None."""
    if value is None:
        return None
    number = _number(key, value)
    if not 0.0 <= number <= 1.0:  # NaN fails this too
        raise OverfocusError(f"Tracker.epoch_end({key}={number!r}): an accuracy is a fraction in [0, 1] "
                             "(pass correct / total, not a percentage)")
    return number


def weight_shapes(model: nn.Module) -> Dict[str, tuple]:
    """{name: shape} of a model's weights (wrapper prefixes stripped): what makes it one architecture.

    Example:
        >>> weight_shapes(nn.Linear(2, 3))
        {'weight': (3, 2), 'bias': (3,)}
    """
    return {k: tuple(v.shape) for k, v in strip_prefixes(unwrap(model).state_dict()).items()}
