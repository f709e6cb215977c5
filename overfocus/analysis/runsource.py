"""Where an analysis gets its checkpoints: a run directory of `overfocus train` (`OwnRun`) or a
folder of checkpoint files written by any other training (`CheckpointFolder`).

Both give the one analysis path (runner, evaluator) the same things: the run's facts (`info`),
the epochs it has, the model to load them into, and how to load one epoch's weights. A foreign
folder also writes what a run directory would hold for the later stages, into its output folder
(default FOLDER/overfocus/): run.json describing the model and the files, and metrics.jsonl with
the train/test accuracy of every analysed checkpoint (measured in eval mode on the whole test
split and a fixed train subset of the same size, as `overfocus train` measures it, unless the
training's own log is given). `render`, `compare` and `tensorboard` read that folder like a run.

Example:
    >>> source = open_source("runs/demo")                                      # doctest: +SKIP
    >>> source.epochs()[:3], source.info.gradcam_layer                          # doctest: +SKIP
    ([0, 1, 2], 'block3')
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..checkpoint.files import load_checkpoint, read_weights
from ..checkpoint.folder import FolderScan, scan_folder
from ..checkpoint.history import HistoryColumns, read_history
from ..checkpoint.keys import check_and_load, infer_num_classes
from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..data import open_dataset
from ..data.splits import probe_ids
from ..errors import OverfocusError, option
from ..models.build import ModelOptions, build_target
from ..models.layers import choose_layer
from ..runs.accuracy import eval_loaders, evaluate
from ..runs.manifest import RunInfo, run_manifest
from ..runs.rundir import RunDir, recorded_by
from .settings import available_epochs
from .storage import analysis_dir

FOREIGN_KIND = "checkpoint-folder"  # run.json `source.kind` of a foreign folder's output
DEFAULT_BATCH = 64


@dataclass(frozen=True)
class FolderOptions:
    """How to read a folder of foreign checkpoints: the model as `overfocus audit` takes it, the
    preprocessing, the file names, and where the train/test accuracy comes from.

    Example:
        >>> FolderOptions(ModelOptions(model="resnet18"), image_size=64).image_size
        64
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    image_size: Optional[int] = None
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    epoch_pattern: Optional[str] = None
    epoch_offset: Optional[int] = None  # added to every file's epoch (None: Lightning's epoch=K read as K+1)
    metrics_file: Optional[str] = None  # the training's own log of train/test accuracy
    columns: HistoryColumns = field(default_factory=HistoryColumns)
    subset_seed: int = 0  # which train images form the fixed subset the train accuracy is measured on


class RunSource:
    """The checkpoints of one run as the analysis sees them (see the module docstring)."""

    root: Path  # the folder the user named (for messages)
    out_root: Path  # where the analysis goes: `analysis/` inside it
    info: RunInfo
    layer_given: bool = False  # the caller named the attribution layer (not the run's or the model's own)

    def epochs(self) -> List[int]:
        raise NotImplementedError

    def checkpoint(self, epoch: int) -> Path:
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module:
        """The one model object of the call, random weights (each checkpoint is loaded into it)."""
        raise NotImplementedError

    def load_into(self, model: torch.nn.Module, epoch: int) -> None:
        """Overwrite every parameter and buffer of `model` with epoch's weights (OverfocusError if unusable)."""
        raise NotImplementedError

    def analysis_folder(self, out: Optional[Path | str]) -> Path:
        return self.out_root / "analysis"

    def begin(self, force: bool = False) -> None:
        """Rank 0, before the loop: run-level files the later stages read."""

    def history_missing(self, epochs: List[int]) -> List[int]:
        """Epochs of `epochs` whose train/test accuracy is still to be measured."""
        return []

    def record_history(self, epoch: int, model: torch.nn.Module, device: torch.device) -> None:
        """Measure and store the train/test accuracy of epoch's weights (loaded in `model`)."""


def open_source(path: Path | str, data: Optional[str] = None, folder: Optional[FolderOptions] = None,
                out: Optional[Path | str] = None, layer: Optional[str] = None, show: bool = True,
                recipe: Optional[ModelOptions] = None) -> RunSource:
    """A run directory (it has run.json) or a folder of checkpoint files; `recipe` says which
    import path a run's run.json may name (`arch`, `trust_recipe`: `models.build.allow_recorded_arch`)."""
    path = Path(path)
    if (path / "run.json").is_file():
        manifest = RunDir(path).read_manifest()
        origin = (manifest.get("source") or {}).get("folder")
        if recorded_by(manifest) == FOREIGN_KIND:
            raise OverfocusError(f"{path} holds the analysis of the checkpoint folder {origin}: analyse that "
                                 f"folder (`overfocus analyze {origin} --model ... --data ...`)")
        return OwnRun(path, manifest, out, recipe)
    if not path.is_dir():
        raise OverfocusError(f"{path} does not exist: pass a run directory or a folder of checkpoint files")
    return CheckpointFolder(path, folder or FolderOptions(), data, out, layer, show)


def listed_checkpoint(root: Path | str, manifest: Dict[str, Any]) -> Optional[Path]:
    """The last checkpoint file that a foreign folder's output run.json lists (what `overfocus
    audit OUT` audits), or None for a run directory of `overfocus train`.

    Example:
        >>> listed_checkpoint("ck/overfocus", {"source": {"kind": FOREIGN_KIND},
        ...                   "epochs": [{"epoch": 3, "file": "../epoch_3.pt"}]}).name
        'epoch_3.pt'
    """
    if recorded_by(manifest) != FOREIGN_KIND or not manifest.get("epochs"):
        return None
    last = max(manifest["epochs"], key=lambda e: e["epoch"])
    return Path(root) / last["file"]


# ---- a run directory of `overfocus train` --------------------------------------------------------
class OwnRun(RunSource):
    def __init__(self, root: Path, manifest: Dict[str, Any], out: Optional[Path | str],
                 recipe: Optional[ModelOptions] = None):
        self.run = RunDir(root)
        self._recipe = recipe
        self.root = self.run.root
        self.out_root = self.run.root
        self._out = out
        self.info = RunInfo.from_manifest(manifest)

    def epochs(self) -> List[int]:
        return available_epochs(self.run)

    def checkpoint(self, epoch: int) -> Path:
        return self.run.checkpoint_path(epoch)

    def analysis_folder(self, out: Optional[Path | str]) -> Path:
        return analysis_dir(self.root, out)  # --out names the analysis folder itself for a run

    def build_model(self) -> torch.nn.Module:
        return self.info.build_model(self._recipe)  # registry, timm:NAME, or an import path the user allowed

    def load_into(self, model: torch.nn.Module, epoch: int) -> None:
        path = self.checkpoint(epoch)
        ckpt = load_checkpoint(path)
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise OverfocusError(f"checkpoint {path} holds no model weights (no `model` entry)")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise OverfocusError(f"checkpoint {path} does not fit the run's {self.info.model_name or self.info.arch} "
                                 f"({str(exc).strip().splitlines()[0][:160]})") from None


# ---- a folder of checkpoint files from any training ----------------------------------------------
class CheckpointFolder(RunSource):
    """Checkpoint files named by epoch (see `overfocus.checkpoint.folder`), read by `checkpoint.files.read_weights`."""

    def __init__(self, folder: Path, opts: FolderOptions, data: Optional[str], out: Optional[Path | str],
                 layer: Optional[str], show: bool = True):
        if not (opts.model.model or opts.model.arch):
            raise OverfocusError(f"{folder} is not an overfocus run (no run.json): name the architecture of its "
                                 "checkpoints with --model NAME (ours, torchvision's or timm:NAME) or "
                                 "--arch package.module:Factory")
        if not data:
            raise OverfocusError(f"{folder} is not an overfocus run (no run.json): pass the data its model was "
                                 "trained on with --data SPEC (e.g. --data builtin or --data folder:PATH)")
        self.root, self.opts, self.show = folder, opts, show
        self.out_root = Path(out) if out else folder / "overfocus"
        self.scan: FolderScan = scan_folder(folder, opts.epoch_pattern, opts.epoch_offset)
        if show:
            for note in self.scan.notes():
                print(f"overfocus analyze: {note}", file=sys.stderr)
        size = opts.image_size or 64
        mean, std = tuple(opts.mean or IMAGENET_MEAN), tuple(opts.std or IMAGENET_STD)
        test = _open(data, "test", size)
        num_classes = opts.model.num_classes or self._classes_from_weights() or len(test.classes)
        self.model, self.description, declared, latent = build_target(opts.model, num_classes)
        chosen, why = self._layer(layer or opts.model.layer, declared, size)
        self.layer_given = bool(layer or opts.model.layer)
        if show:
            print(f"overfocus analyze: {self.description}; attribution layer {chosen!r} ({why})", file=sys.stderr)
        self.info = RunInfo(opts.model.model or opts.model.arch, opts.model.width, opts.model.small_input,
                            num_classes, data, size, mean, std, DEFAULT_BATCH, 0, chosen, latent or chosen,
                            probe_ids(test))

    def _classes_from_weights(self) -> Optional[int]:
        """The output size of the first readable checkpoint (unreadable ones are reported later)."""
        for epoch in self.scan.epochs:
            try:
                return infer_num_classes(read_weights(self.scan.files[epoch], self.opts.model.trust_pickle))
            except OverfocusError:
                continue
        return None

    def _layer(self, asked: Optional[str], declared: Optional[str], size: int) -> Tuple[str, str]:
        choice = choose_layer(self.model, torch.zeros(1, 3, size, size), asked=asked, declared=declared)
        if not choice.automatic:
            return choice.name, "--layer" if asked else choice.reason
        return choice.name, f"{choice.reason}; --layer NAME chooses another"

    def epochs(self) -> List[int]:
        return self.scan.epochs

    def checkpoint(self, epoch: int) -> Path:
        return self.scan.files.get(epoch, self.root / f"<no file of epoch {epoch}>")

    def build_model(self) -> torch.nn.Module:
        return self.model

    def load_into(self, model: torch.nn.Module, epoch: int) -> None:
        path = self.checkpoint(epoch)
        state = read_weights(path, self.opts.model.trust_pickle)
        try:
            check_and_load(model, state, self.description, self.opts.model.strip_prefix)
        except OverfocusError as exc:
            raise OverfocusError(f"checkpoint {path.name}: {exc}") from None

    # -- run-level files of the output folder --
    def begin(self, force: bool = False) -> None:
        """run.json (the recipe and the files), and the training's own accuracy log when given.

        The analysis settings that analysis.json compares do not include the model: an output
        folder made with another model (or preprocessing) is refused here unless `force`, and
        then its measured accuracies are measured again."""
        run = RunDir(self.out_root)
        manifest = self._manifest()
        if run.exists():
            renumbered = _renumbered(run.read_manifest(), manifest)
            if renumbered and not force:
                raise OverfocusError(f"{self.out_root} analysed {renumbered}: pass {option('force')} to analyse it "
                                     f"again with the new numbering, or {option('epoch_offset', 'N')} to keep the "
                                     "old one")
            if renumbered:
                self._write_history({})  # the measured accuracies belong to the old numbering
            old = _recipe(run.read_manifest())
            if old != _recipe(manifest):
                if not force:
                    raise OverfocusError(f"{self.out_root} holds the analysis of another model or preprocessing "
                                         f"({_difference(old, _recipe(manifest))}): pass {option('force')} to replace "
                                         f"it, or {option('out', 'DIR')} to keep both")
                self._write_history({})
        self.out_root.mkdir(parents=True, exist_ok=True)
        run.write_manifest(manifest)
        if self.opts.metrics_file:
            shift = self.scan.history_offset  # the log numbers its epochs as the file names do
            given = {e + shift: {**row, "epoch": e + shift}
                     for e, row in read_history(self.opts.metrics_file, self.opts.columns).items()}
            self._write_history({**self._history(), **given})

    def _manifest(self) -> Dict[str, Any]:
        m, i = self.opts.model, self.info
        config = {"model": {"name": m.model, "arch": m.arch, "width": m.width, "small_input": m.small_input,
                            "num_classes": i.num_classes, "description": self.description},
                  "data": {"spec": i.data_spec, "image_size": i.image_size, "mean": list(i.mean), "std": list(i.std),
                           "batch_size": i.batch_size}}
        source = {"kind": FOREIGN_KIND, "folder": str(self.root.resolve()),
                  "skipped_files": [p.name for p in self.scan.unnamed + self.scan.duplicates]}
        epochs = [{"epoch": e, "file": os.path.relpath(p.resolve(), self.out_root.resolve()),
                   **({"step": self.scan.steps[e]} if e in self.scan.steps else {})}
                  for e, p in sorted(self.scan.files.items())]
        return run_manifest(config, status="foreign", source=source, versions=False, num_classes=i.num_classes,
                            gradcam_layer=i.gradcam_layer, latent_layer=i.latent_layer, probe_ids=i.probe_ids,
                            epoch0_is_initial=self.scan.epoch0_is_initial, epoch_offset=self.scan.offset,
                            epochs=epochs)

    def _history(self) -> Dict[int, Dict[str, Any]]:
        return {int(r["epoch"]): r for r in RunDir(self.out_root).read_metrics() if "epoch" in r}

    def _write_history(self, rows: Dict[int, Dict[str, Any]]) -> None:
        RunDir(self.out_root).write_metrics(rows[e] for e in sorted(rows))

    def history_missing(self, epochs: List[int]) -> List[int]:
        if self.opts.metrics_file:
            return []  # the training's log is the history; epochs it lacks stay without a gap
        known = self._history()
        return [e for e in epochs if e not in known]

    def record_history(self, epoch: int, model: torch.nn.Module, device: torch.device) -> None:
        loaders = self._loaders()
        i = self.info
        train_loss, train_acc = evaluate(model, loaders["train"], device, i.mean, i.std)
        test_loss, test_acc = evaluate(model, loaders["test"], device, i.mean, i.std)
        rows = self._history()
        rows[epoch] = {"epoch": epoch, "train_eval_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
                       "test_acc": test_acc, "gap": train_acc - test_acc, "measured_by": "overfocus analyze",
                       "train_images": len(loaders["train"].dataset), "test_images": len(loaders["test"].dataset)}
        self._write_history(rows)

    def _loaders(self) -> Dict[str, Any]:
        """The test split and a fixed train subset of its size (opened once, on first use)."""
        if getattr(self, "_gap_loaders", None) is None:
            i = self.info
            test, train = _open(i.data_spec, "test", i.image_size), _open(i.data_spec, "train", i.image_size)
            self._gap_loaders = eval_loaders(train, test, self.opts.subset_seed, i.batch_size)
        return self._gap_loaders

def _recipe(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """What makes two analyses of one folder comparable: the model and the preprocessing."""
    cfg = manifest.get("config") or {}
    data = cfg.get("data") or {}
    return {**(cfg.get("model") or {}), **{k: data.get(k) for k in ("image_size", "mean", "std")}}


def _renumbered(old: Dict[str, Any], new: Dict[str, Any]) -> Optional[str]:
    """'FILE as epoch 0, this call reads it as epoch 1' for the first file whose epoch changed, else None."""
    before = {e["file"]: e["epoch"] for e in old.get("epochs", [])}
    for entry in new["epochs"]:
        if entry["file"] in before and before[entry["file"]] != entry["epoch"]:
            return (f"{Path(entry['file']).name} as epoch {before[entry['file']]}, this call reads it as epoch "
                    f"{entry['epoch']}")
    return None


def _difference(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    key = next(k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k))
    return f"{key} {old.get(key)!r}, this call {new.get(key)!r}"


def _open(spec: str, split: str, size: int):
    dataset = open_dataset(spec, split, size)
    if len(dataset) == 0:
        raise OverfocusError(f"--data {spec} has no {split} images: point it at data with a {split} split")
    return dataset
