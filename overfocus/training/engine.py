"""The training engine: fit, evaluate, a checkpoint per epoch, resume.

Determinism: the model is initialised from `seed`; epoch e shuffles with a generator seeded from
(seed, e); augmentation draws from (seed, e, index); the global torch RNG state (dropout) and the
regularizer's state are saved in the latest epoch's training state (run_checkpoints.py: epoch_NNNN.pt
holds the weights only). Resuming from epoch e therefore replays epochs e+1... exactly as an
uninterrupted run would on the CPU.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from ..config import RunConfig, from_dict, to_dict, validate
from ..data import Batch, normalize, open_dataset, skipped_files
from ..data.splits import fixed_subset_indices, probe_ids, readable_probe_indices
from ..data.subset import Subset  # the one subset that keeps the dataset's attributes
from ..data.transforms import BoxAwareAugment
from ..device import resolve_device
from ..distributed import (DistInfo, GlobalBatchSampler, all_reduce_sum, barrier, env_info, gather_objects,
                            init_process_group)
from ..errors import OverfocusError
from ..fileio import clean_stale_temps
from ..models import MODELS, build_model, check_model_size, get_module, latent_layer_name
from ..progress import progress
from ..regularizers import RegContext, StepInfo, build_regularizer
from ..regularizers.leak import LeakDiagnostic
from ..runs.accuracy import eval_loaders, evaluate, make_loader
from ..runs.checkpoints import state_payload, weights_payload
from ..runs.claim import RunClaim, check_out_dir
from ..runs.lock import run_lock
from ..runs.manifest import dataset_fingerprint, run_manifest
from ..runs.rundir import TRACKER_KIND, RunDir, recorded_by
from ..runs.writer import EpochWriter
from .hooks import DivergenceCheck, EpochEnd, EpochHooks, LeakHook, epoch_hooks
from .live import LiveLog, ProbePass


@dataclass
class Datasets:
    train: Any  # with augmentation when enabled
    train_eval: Any  # same images, no augmentation: the fixed eval-mode subset comes from it
    test: Any
    classes: List[str]
    has_boxes: bool
    augment: Optional[BoxAwareAugment] = None  # the train split's; its epoch is set per epoch


def open_datasets(cfg: RunConfig) -> Datasets:
    """Open train (augmented when asked) and test splits of the configured data."""
    d = cfg.data
    augment = BoxAwareAugment(d.image_size, cfg.train.seed) if d.augment else None
    train = open_dataset(d.spec, "train", d.image_size, augment, d.skip_bad)
    train_eval = open_dataset(d.spec, "train", d.image_size, None, d.skip_bad)
    test = open_dataset(d.spec, "test", d.image_size, None, d.skip_bad)
    if d.limit:
        indices = list(range(min(d.limit, len(train))))
        train, train_eval = Subset(train, indices), Subset(train_eval, indices)
    return Datasets(train, train_eval, test, list(train_eval.classes), bool(getattr(test, "has_boxes", False)),
                    augment)


def build_optimizer(model: nn.Module, cfg: RunConfig):
    o = cfg.optim
    if o.name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
    elif o.name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        raise OverfocusError(f"unknown optimizer {o.name!r}: use adam, adamw or sgd")
    if o.schedule not in ("none", "step", "cosine"):
        raise OverfocusError(f"unknown schedule {o.schedule!r}: use none, step or cosine")
    if o.warmup_epochs:
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_factor(o, cfg.train.epochs))
    if o.schedule == "none":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)
    elif o.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, o.step_size, o.gamma)
    elif o.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.train.epochs))
    else:
        raise OverfocusError(f"unknown schedule {o.schedule!r}: use none, step or cosine")
    return opt, sched


def warmup_factor(o, epochs: int):
    """The learning-rate factor after e epochs: linear warm-up to 1 over `warmup_epochs`, then the
    schedule over the remaining epochs (cosine to 0, step, or constant).

    Example:
        >>> from overfocus.config import OptimConfig
        >>> f = warmup_factor(OptimConfig(schedule="cosine", warmup_epochs=2), epochs=6)
        >>> [round(f(e), 3) for e in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    import math

    warm = o.warmup_epochs

    def factor(e: int) -> float:  # e: epochs done (LambdaLR's count); epoch e + 1 trains with it
        if e < warm:
            return (e + 1) / warm
        after = e - warm
        if o.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(1.0, after / max(1, epochs - warm))))
        if o.schedule == "step":
            return o.gamma ** (after // o.step_size)
        return 1.0

    return factor


def rng_state(device: torch.device) -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def model_outputs(asked: int, classes: List[str]) -> int:
    """The model's number of outputs: `model.num_classes`, else the data's class count; fewer
    outputs than the data has classes cannot be trained (a label would have no output).

    Example:
        >>> model_outputs(0, ["a", "b", "c"]), model_outputs(5, ["a", "b", "c"])
        (3, 5)
    """
    if asked and asked < len(classes):
        raise OverfocusError(f"config key 'model.num_classes' is {asked}, but the data has {len(classes)} classes: "
                             f"use 0 (from the data) or at least {len(classes)} (--set model.num_classes=...)")
    return asked or len(classes)


class Trainer:
    """Owns model, optimizer, scheduler, regularizer and data of one run.

    Example:
        >>> from overfocus.config import build_config
        >>> cfg = build_config(overrides=["data.spec=builtin?train=32&test=16", "train.epochs=1",
        ...                               "model.width=0.125", "train.progress=false"])
        >>> Trainer(cfg, "/tmp/overfocus-doctest-run", force=True).fit()  # doctest: +ELLIPSIS
        PosixPath('/tmp/overfocus-doctest-run')
    """

    def __init__(self, cfg: RunConfig, run_dir: Path | str, force: bool = False, resuming: bool = False,
                 dist_info: Optional[DistInfo] = None, tensorboard: Optional[Path | str] = None,
                 wandb: Optional[str] = None):
        self.cfg, self.run = cfg, RunDir(run_dir)
        self.dist = dist_info or env_info()
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.device = resolve_device(cfg.train.device, self.dist.local_rank)
        self._claim: Optional[RunClaim] = None
        # one train or resume per run folder: a second exits at once, naming the holder (rank 0 writes)
        self._lock = run_lock(self.run.root).acquire() if self.rank == 0 else None
        try:
            self._open(cfg, force, resuming, tensorboard, wandb)
        except BaseException:
            self.close()
            raise

    def _open(self, cfg: RunConfig, force: bool, resuming: bool, tensorboard, wandb) -> None:
        init_process_group(self.dist, self.device)
        if not resuming:
            check_out_dir(self.run.root, force)  # every rank checks, so no rank waits for one that failed
        if self.rank == 0:
            clean_stale_temps(self.run.root, recursive=True)  # what a killed writer left (under the lock)
        self.data = open_datasets(cfg)
        num_classes = model_outputs(cfg.model.num_classes, self.data.classes)
        self.num_classes = num_classes
        torch.manual_seed(cfg.train.seed)
        check_model_size(cfg.model.name, num_classes, cfg.model.width, cfg.model.small_input, cfg.model.batch_norm)
        self.model = build_model(cfg.model.name, num_classes, cfg.model.width, cfg.model.small_input,
                                 cfg.model.batch_norm).to(self.device)
        if cfg.model.classifier_dropout >= 0:
            for module in self.model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = cfg.model.classifier_dropout
        if cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.latent_layer = latent_layer_name(cfg.model.name, cfg.model.latent_layer)
        get_module(self.model, self.latent_layer, "model.latent_layer")  # an unknown layer: one line, now
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg)
        self.train_model = self._wrap_ddp(self.model)  # checkpoints always save the bare self.model
        self.regularizer = build_regularizer(cfg.regularizer, self._reg_context())
        self._eval_loaders = self._make_eval_loaders()
        self._leak = self._make_leak_diagnostic()
        self.hooks = self._make_hooks(tensorboard, wandb)
        if not resuming and self.rank == 0:  # only now that data and model have opened
            self._claim = RunClaim.take(self.run.root, force)
        barrier(self.dist)  # nobody reads the run directory before rank 0 has claimed it

    def close(self) -> None:
        """Release the run folder's lock (also done by the end of the process, killed or not)."""
        if self._lock is not None:
            self._lock.release()

    def _wrap_ddp(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _reg_context(self) -> RegContext:
        steps = math.ceil(len(self.data.train) / (self.cfg.data.batch_size * self.world_size))
        return RegContext(self.cfg.model.name, self.latent_layer, self.num_classes, steps, self.cfg.train.epochs,
                          self.device, self.data.has_boxes, self.cfg.data.image_size, self.cfg.train.seed)

    def _train_subset_indices(self) -> List[int]:
        n_pick = self.cfg.data.train_subset or len(self.data.test)
        return fixed_subset_indices(len(self.data.train_eval), n_pick, self.cfg.train.seed)

    def _make_eval_loaders(self) -> Dict[str, Any]:
        d = self.cfg.data
        return eval_loaders(self.data.train_eval, self.data.test, self.cfg.train.seed, d.batch_size, d.num_workers,
                            train_size=d.train_subset or None)

    def _make_leak_diagnostic(self) -> Optional[LeakDiagnostic]:
        """The label-leak columns, for a regularizer whose mask follows the label (regularizers/leak.py)."""
        d, images = self.cfg.data, self.cfg.train.leak_images
        if self.rank != 0 or not LeakDiagnostic.wanted(self.regularizer, images):
            return None
        return LeakDiagnostic(self.regularizer, self.data.train_eval, self._train_subset_indices(), self.data.test,
                              images, self.num_classes, self.cfg.train.seed, d.batch_size, d.num_workers)

    @property
    def gradcam_layer(self) -> str:
        """The attribution layer run.json records: `model.latent_layer` when set, else the model's declared one."""
        return self.cfg.model.latent_layer or MODELS.get(self.cfg.model.name).gradcam_layer

    def _make_hooks(self, logdir: Optional[Path | str], wandb: Optional[str]) -> EpochHooks:
        """The epoch-end hooks (training/hooks.py); rank 0 writes, the other ranks only check divergence.
        With `--tensorboard DIR` / `--wandb PROJECT` (a W&B run named after the run folder, its files in
        RUN/wandb) the probe set's scalars and overlays go there every epoch."""
        if self.rank != 0:
            return epoch_hooks(None, advice=self._divergence_advice)
        live = None
        if logdir or wandb:
            probe = ProbePass(self.data.test, readable_probe_indices(self.data.test), layer=self.gradcam_layer,
                              mean=self.cfg.data.mean, std=self.cfg.data.std)
            live = LiveLog(probe, logdir, {"project": wandb} if wandb else None,
                           wandb_defaults={"name": self.run.root.name, "dir": str(self.run.root),
                                           "config": to_dict(self.cfg)})
        t, d = self.cfg.train, self.cfg.data
        leak = [LeakHook(self._leak, self.device, d.mean, d.std)] if self._leak is not None else []
        return epoch_hooks(EpochWriter(self.run, t.keep_every, t.keep_full_every), advice=self._divergence_advice,
                           probe=live.probe if live else None, live=live, epoch_lines=t.progress, row_hooks=leak)

    def _divergence_advice(self, epoch: int) -> str:
        lr = self.cfg.optim.lr
        return (f"checkpoints up to epoch {epoch - 1} are kept; lower optim.lr (now {lr:g}), e.g. "
                f"`overfocus resume {self.run.root} --lr {lr / 10:g}`")

    # ---- the loop -------------------------------------------------------------------------
    def fit(self, start_epoch: int = 0) -> Path:
        """Train from `start_epoch` (0 = fresh: epoch 0 checkpoint is the initial weights)."""
        self.regularizer.setup(self.model)
        status = "failed"
        try:
            self.hooks.before_train()
            if start_epoch == 0:
                self._write_manifest(status="running", epochs=[])
                self._end_epoch(0, train_stats={"train_loss": None}, seconds=0.0)
                if self._claim is not None:  # the new run is durable: the replaced one can go
                    self._claim.commit()
            bar = progress(range(start_epoch + 1, self.cfg.train.epochs + 1), self.cfg.train.progress,
                           desc="epochs", initial=start_epoch, total=self.cfg.train.epochs)
            for epoch in bar:
                t0 = time.perf_counter()
                stats = self.train_epoch(epoch)
                self._end_epoch(epoch, stats, time.perf_counter() - t0)
            if self.rank == 0:
                manifest = self.run.read_manifest()
                manifest["status"] = "complete"
                self.run.write_manifest(manifest)
                self._report_skipped(manifest.get("skipped_files", []))
            status = "complete"
        except BaseException:
            if self._claim is not None and not self._claim.committed:
                self._claim.undo()  # nothing durable yet: leave the disk as it was before
            else:
                self._mark_failed()
            raise
        finally:
            self.regularizer.teardown(self.model)
            try:
                self.hooks.after_train(status)
            finally:
                self.close()
        return self.run.root

    def epoch_loader(self, epoch: int):
        """The shuffled training loader of one epoch (order from (seed, epoch) alone)."""
        if self.data.augment is not None:
            self.data.augment.set_epoch(epoch)
        sampler = GlobalBatchSampler(len(self.data.train), self.cfg.data.batch_size,
                                     self.cfg.train.seed * 100_003 + epoch, self.rank, self.world_size)
        return make_loader(self.data.train, self.cfg.data.batch_size, self.cfg.data.num_workers, sampler), sampler

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One epoch of regularized training; returns averaged loss and regularizer stats."""
        self.train_model.train()
        self.regularizer.on_epoch_start(epoch)
        loader, sampler = self.epoch_loader(epoch)
        mean, std, device = self.cfg.data.mean, self.cfg.data.std, self.device
        total = torch.zeros((), device=device)
        sums: Dict[str, Any] = {}
        steps = 0
        amp = self.cfg.train.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp) if amp else None
        for i, batch in enumerate(progress(loader, self.cfg.train.progress, desc=f"epoch {epoch}")):
            batch = batch.to(device)
            batch = Batch(normalize(batch.images, mean, std), batch.labels, batch.boxes, batch.image_ids)
            if self.cfg.train.channels_last:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
            info = StepInfo((epoch - 1) * len(loader) + i, epoch, i, len(batch) / sampler.global_sizes[i])
            with torch.autocast(device.type, enabled=amp):
                loss, stats = self.regularizer.loss(self.train_model, batch, info)
            if self.world_size > 1:  # DDP averages over ranks: weight each by its share of the batch
                loss = loss * (len(batch) * self.world_size / sampler.global_sizes[i])
            self.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(self.optimizer)
                scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.regularizer.after_step(self.model)
            total += loss.detach()
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + (value.detach() if torch.is_tensor(value) else value)
            steps += 1
        self.scheduler.step()
        total = all_reduce_sum(total, self.dist) / self.world_size
        out = {"train_loss": (total / max(steps, 1)).item()}
        out.update({k: float(v / max(steps, 1)) for k, v in sums.items()})
        return out

    def _end_epoch(self, epoch: int, train_stats: Dict[str, float], seconds: float) -> None:
        """Evaluate (rank 0), then run the epoch-end hooks: divergence check, durable write, live log."""
        rng_states = gather_objects(rng_state(self.device), self.dist)  # every rank's, for exact resume
        if self.rank != 0:
            self.hooks.after_epoch(EpochEnd(epoch, self.model, {"epoch": epoch, **train_stats}))
            barrier(self.dist)
            return
        # the training loss first, so that diverged weights are not evaluated; the hooks check both losses
        DivergenceCheck(self._divergence_advice).after_epoch(EpochEnd(epoch, self.model, dict(train_stats)))
        mean, std, amp = self.cfg.data.mean, self.cfg.data.std, self.cfg.train.amp
        train_loss_eval, train_acc = evaluate(self.model, self._eval_loaders["train"], self.device, mean, std, amp)
        test_loss, test_acc = evaluate(self.model, self._eval_loaders["test"], self.device, mean, std, amp)
        row = {"epoch": epoch, **train_stats, "train_eval_loss": train_loss_eval, "train_acc": train_acc,
               "test_loss": test_loss, "test_acc": test_acc, "gap": train_acc - test_acc,
               # the images behind each accuracy: the plots' 95% intervals depend on them
               "train_images": len(self._eval_loaders["train"].dataset),
               "test_images": len(self._eval_loaders["test"].dataset),
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
        state, dtype = self.model.state_dict(), self.cfg.train.checkpoint_dtype
        weights = weights_payload(state, epoch, self.cfg.model.name, self.num_classes, dtype)
        full = state_payload(epoch, state, dtype, self.optimizer.state_dict(), self.scheduler.state_dict(),
                             self.regularizer.state_dict(), rng_states)
        self.hooks.after_epoch(EpochEnd(epoch, self.model, row, weights, full,
                                        {"skipped_files": self.skipped_files()}))
        barrier(self.dist)

    def _write_manifest(self, status: str, epochs: List[Dict[str, Any]]) -> None:
        if self.rank != 0:
            return
        d = self.data
        self.run.write_manifest(run_manifest(
            to_dict(self.cfg), status=status, seed=self.cfg.train.seed,
            dataset=dataset_fingerprint(self.cfg.data.spec, d.train, d.test, d.classes, d.has_boxes),
            num_classes=self.num_classes, latent_layer=self.latent_layer, gradcam_layer=self.gradcam_layer,
            probe_ids=probe_ids(d.test), epochs=epochs, skipped_files=self.skipped_files()))

    def skipped_files(self) -> List[str]:
        """Files skipped as unreadable under --skip-bad so far (by this process and its loaders)."""
        return skipped_files(self.data.train, self.data.train_eval, self.data.test)

    def _report_skipped(self, files: List[str]) -> None:
        if files:
            print(f"--skip-bad skipped {len(files)} unreadable image(s) in all; run.json lists them as "
                  "skipped_files", file=sys.stderr, flush=True)

    def _mark_failed(self) -> None:
        if self.rank == 0 and self.run.exists():
            try:
                manifest = self.run.read_manifest()
                manifest["status"] = "failed"
                self.run.write_manifest(manifest)
            except (OverfocusError, OSError):
                pass  # never hide the original error behind a bookkeeping one

    def restore(self, epoch: int) -> None:
        """Load everything of epoch `epoch`'s checkpoint (model, optimizer, RNG, regularizer)."""
        ckpt = self.run.load_training_state(epoch)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.regularizer.load_state_dict(ckpt["regularizer"])
        per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        set_rng_state(per_rank[self.rank] if len(per_rank) == self.world_size else ckpt["rng"], self.device)


def train(cfg: RunConfig, run_dir: Path | str, force: bool = False, tensorboard: Optional[Path | str] = None,
          wandb: Optional[str] = None) -> Path:
    """Train a model as configured, writing the run directory (and, with `tensorboard`, per-epoch
    scalars and probe overlays to that log folder while it trains; with `wandb`, the same to that
    Weights & Biases project).

    Example:
        >>> from overfocus.config import build_config
        >>> cfg = build_config(overrides=["data.spec=builtin?train=32&test=16", "train.epochs=1",
        ...                               "model.width=0.125", "train.progress=false"])
        >>> train(cfg, "/tmp/overfocus-doctest-train", force=True).name
        'overfocus-doctest-train'
    """
    return Trainer(cfg, run_dir, force=force, tensorboard=tensorboard, wandb=wandb).fit()


def refuse_unrecorded_training(manifest: Dict[str, Any], root: Path) -> None:
    """`resume` needs the training recipe (optimizer, schedule, regularizer), which runs recorded by
    a Tracker or by `analyze FOLDER` do not have: say where such a run is continued instead."""
    kind = recorded_by(manifest)
    if kind == TRACKER_KIND:
        raise OverfocusError(f"{root} was recorded by overfocus.Tracker in your own training loop, whose optimizer "
                             "overfocus does not know: continue it in that loop with Tracker(..., resume=True)")
    if kind:
        raise OverfocusError(f"{root} holds the analysis of a checkpoint folder ({kind}), not a training run: "
                             "there is nothing to resume; `overfocus analyze` it again for new checkpoints")


def resume(run_dir: Path | str, epochs: Optional[int] = None, lr: Optional[float] = None,
           tensorboard: Optional[Path | str] = None, skip_bad: bool = False) -> Path:
    """Continue a run from its last durable checkpoint (optionally to a new total of epochs, or
    with a new learning rate, e.g. after training diverged; with `tensorboard`, the epochs trained
    from here on are logged to that folder as `train` would; with `skip_bad`, unreadable images are
    skipped from here on, as `train --skip-bad` does, e.g. after a run stopped on a corrupt file).

    Example:
        >>> from overfocus.config import build_config
        >>> cfg = build_config(overrides=["data.spec=builtin?train=32&test=16", "train.epochs=1",
        ...                               "model.width=0.125", "train.progress=false"])
        >>> run = train(cfg, "/tmp/overfocus-doctest-resume", force=True)
        >>> resume(run, epochs=2).name
        'overfocus-doctest-resume'
    """
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    refuse_unrecorded_training(manifest, run.root)
    last = run.latest_epoch()
    if last is None:
        raise OverfocusError(f"{run.root} has no durable checkpoint yet (its train stopped before epoch 0), so there "
                             "is nothing to resume: start it again with the same `overfocus train` command and --force")
    cfg = from_dict(RunConfig, manifest["config"])
    if lr is not None:
        cfg.optim.lr = lr
        validate(cfg)
    if epochs is not None:
        if epochs < last:
            raise OverfocusError(f"resume --epochs {epochs} is below the {last} epochs {run.root} already has: "
                                 f"pass a total of at least {last}")
        cfg.train.epochs = epochs
        validate(cfg)  # the same range as train.epochs of a fresh run
    if skip_bad:
        cfg.data.skip_bad = True  # before the datasets open
    run.read_metrics()  # a damaged metrics.jsonl is named now, not after an epoch of training
    trainer = Trainer(cfg, run.root, resuming=True, tensorboard=tensorboard)  # takes the run's lock
    try:
        last = run.latest_epoch() if run.latest_epoch() is not None else last  # read again under the lock
        trainer.restore(last)
        if lr is not None:  # the checkpoint's optimizer and schedule carry the old rate
            for group in trainer.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = lr
            trainer.scheduler.base_lrs = [lr] * len(trainer.optimizer.param_groups)
        manifest = run.read_manifest()
        if epochs is not None or lr is not None or skip_bad:
            manifest["config"] = to_dict(cfg)
        manifest["status"] = "running"
        if trainer.rank == 0:
            run.write_manifest(manifest)
    except BaseException:
        trainer.close()
        raise
    return trainer.fit(start_epoch=last)
