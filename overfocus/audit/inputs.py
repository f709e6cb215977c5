"""The inputs of `overfocus audit`: its options, the checkpoint (and run) to audit, the
preprocessing, the images, and the validation of gates and thresholds, all before any model runs.

Example:
    >>> parse_pairs(["hit_ratio=0.3"], "--fail-under")
    [('hit_ratio', 0.3)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..analysis.runsource import listed_checkpoint
from ..analysis.source import evenly_spaced
from ..attribution.methods import DEFAULT_METHODS, check_method_args
from ..config import IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_SIZE
from ..data import open_dataset
from ..errors import OverfocusError, shorten
from ..metrics.registry import reported_metrics
from ..models.build import ModelOptions, allow_recorded_arch, check_recipe_args
from ..registry import did_you_mean
from ..runs.rundir import RunDir
from .findings import THRESHOLDS


@dataclass
class AuditOptions:
    """Everything `overfocus audit` takes; `target` is a checkpoint file or a run directory."""

    target: str
    data: Optional[str] = None
    model: ModelOptions = field(default_factory=ModelOptions)
    image_size: Optional[int] = None
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    limit: int = 500
    batch_size: int = 32
    human: Optional[str] = None
    thresholds: Dict[str, float] = field(default_factory=dict)
    gates: List[Tuple[str, float]] = field(default_factory=list)
    methods: Tuple[str, ...] = DEFAULT_METHODS
    method_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # --method-args, per method
    target_class: str = "gt"
    device: str = "cpu"
    examples: int = 6
    progress: bool = True
    skip_bad: bool = False  # skip unreadable images with a warning each


@dataclass
class AuditTarget:
    """The checkpoint to audit and, when it belongs to a run, that run."""

    checkpoint: Path
    run: Optional[RunDir] = None
    manifest: Optional[Dict[str, Any]] = None


@dataclass
class Preprocessing:
    data: str
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str  # run.json | options | assumed
    assumed: List[str] = field(default_factory=list)  # fields nobody gave: image_size, mean, std
    skip_bad: bool = False  # --skip-bad, or the run was trained with it


# ---- inputs -------------------------------------------------------------------------------------------
def resolve_source(target: str | Path) -> AuditTarget:
    """A run directory -> its latest checkpoint; a checkpoint inside RUN/checkpoints -> with its run."""
    path = Path(target)
    if path.is_dir():
        run = RunDir(path)
        manifest = run.read_manifest()
        foreign = listed_checkpoint(path, manifest)  # the output folder of `analyze FOLDER`
        return AuditTarget(foreign or run.checkpoint_path(_last_epoch(run)), run, manifest)
    if not path.is_file():
        raise OverfocusError(f"{path} does not exist: pass a checkpoint file or a run directory")
    run = RunDir(path.resolve().parent.parent)
    if path.resolve().parent.name == "checkpoints" and run.exists():
        return AuditTarget(path, run, run.read_manifest())
    return AuditTarget(path)


def _last_epoch(run: RunDir) -> int:
    latest = run.latest_epoch()
    epochs = run.checkpoint_epochs()
    if latest is None and not epochs:
        raise OverfocusError(f"run {run.root} has no checkpoint yet: train it first or pass a checkpoint file")
    return latest if latest is not None else epochs[-1]


def resolve_preprocessing(opts: AuditOptions, source: AuditTarget) -> Preprocessing:
    """Options win; else the run's recorded preprocessing; else 64 px and ImageNet mean/std (assumed)."""
    recorded = (source.manifest or {}).get("config", {}).get("data", {})
    data = opts.data or recorded.get("spec")
    if not data:
        raise OverfocusError("no data to audit on: pass --data SPEC (e.g. --data folder:PATH or --data builtin)")
    picks = {"image_size": (opts.image_size, recorded.get("image_size"), 64),
             "mean": (opts.mean, recorded.get("mean"), IMAGENET_MEAN),
             "std": (opts.std, recorded.get("std"), IMAGENET_STD)}
    values = {k: next(v for v in choices if v is not None) for k, choices in picks.items()}
    assumed = [k for k, (given, rec, _) in picks.items() if given is None and rec is None]
    origin = ("assumed" if len(assumed) == 3 else "options" if any(c[0] is not None for c in picks.values())
              else "run.json")
    mean, std = tuple(values["mean"]), tuple(values["std"])
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise OverfocusError(f"--mean/--std need three values each, std positive (got {mean} / {std})")
    if not 8 <= int(values["image_size"]) <= MAX_IMAGE_SIZE:
        raise OverfocusError(f"--image-size {values['image_size']}: use 8 to {MAX_IMAGE_SIZE} pixels per side")
    skip_bad = opts.skip_bad or bool(recorded.get("skip_bad", False))
    return Preprocessing(data, int(values["image_size"]), mean, std, origin, assumed, skip_bad)


def model_options(opts: AuditOptions, source: AuditTarget) -> ModelOptions:
    """The run's model settings (run.json) fill what the user did not give."""
    if not source.manifest:
        return opts.model
    cfg = source.manifest.get("config", {}).get("model", {})
    m = opts.model
    given = m.model or m.arch
    where = f"{source.run.manifest_path}" if source.run is not None else "run.json"
    recorded = {"width": cfg.get("width", m.width), "small_input": cfg.get("small_input", m.small_input),
                "batch_norm": cfg.get("batch_norm")}
    if not given:
        check_recipe_args(recorded, where)
    if not m.num_classes and source.manifest.get("num_classes") is not None:
        check_recipe_args({"num_classes": source.manifest["num_classes"]}, where)
    arch = m.arch or (None if m.model or not cfg.get("arch") else allow_recorded_arch(cfg["arch"], m, where))
    return ModelOptions(model=m.model or (None if arch else cfg.get("name") or None), arch=arch,
                        layer=m.layer or (None if given else source.manifest.get("gradcam_layer")),
                        num_classes=m.num_classes or source.manifest.get("num_classes"),
                        width=m.width if given else float(recorded["width"]),
                        small_input=m.small_input if given else recorded["small_input"],
                        batch_norm=m.batch_norm if given else recorded["batch_norm"],
                        trust_pickle=m.trust_pickle, strip_prefix=m.strip_prefix, trust_recipe=m.trust_recipe)


def open_audit_data(prep: Preprocessing, limit: int, whole_folder: bool = False) -> Tuple[Any, str]:
    """(the images to audit, which split): at most `limit` images evenly spaced (0 = all) over the
    test split, or, with `whole_folder`, over every image of data that has no split of its own
    (a folder of test images: its 20% share would silently leave most of them out)."""
    dataset = open_dataset(prep.data, "test", prep.image_size, skip_bad=prep.skip_bad)
    split = "test"
    if whole_folder and "test_fraction" not in prep.data:
        everything = _all_images(prep)
        if everything is not None and len(everything) > len(dataset):
            dataset, split = everything, "all"
    if len(dataset) == 0:
        raise OverfocusError(f"--data {prep.data} has no test images: point it at data with a test split")
    return evenly_spaced(dataset, limit), split


def _all_images(prep: Preprocessing):
    """Every image of `prep.data` as its test split (test_fraction=1), or None for a kind without
    a fractional split (its test split is its own)."""
    spec = prep.data + ("&" if "?" in prep.data else "?") + "test_fraction=1"
    try:
        return open_dataset(spec, "test", prep.image_size, skip_bad=prep.skip_bad)
    except OverfocusError:
        return None


def parse_pairs(items: Sequence[str], what: str) -> List[Tuple[str, float]]:
    """`name=value` strings -> [(name, float)]; a malformed item is an OverfocusError.

    Example:
        >>> parse_pairs(["accuracy=0.8"], "--fail-under")
        [('accuracy', 0.8)]
    """
    out = []
    for item in items:
        name, eq, value = item.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            raise OverfocusError(f"{what} {shorten(item)} needs the form name=number, e.g. {what} accuracy=0.8") from None
        if not eq or not name.strip():
            raise OverfocusError(f"{what} {shorten(item)} needs the form name=number, e.g. {what} accuracy=0.8")
        if not math.isfinite(out[-1][1]):
            raise OverfocusError(f"{what} {shorten(item)}: the number must be finite, e.g. {what} accuracy=0.8")
    return out


def gate_names(methods: Sequence[str]) -> List[str]:
    """Every metric name a gate may use: model metrics, map metrics (primary method) and method.metric."""
    per_map = reported_metrics("map", "report")
    return reported_metrics("model", "report") + per_map + [f"{m}.{n}" for m in methods for n in per_map]


def check_options(opts: AuditOptions) -> Dict[str, float]:
    """Validate methods, their arguments, gates and thresholds before any work; return the resolved thresholds."""
    check_method_args(opts.methods, opts.method_args)
    known = set(gate_names(opts.methods))
    for name, _ in opts.gates:
        if name not in known:
            raise OverfocusError(f"--fail-under: unknown metric {name!r}{did_you_mean(name, known)}: use one of {', '.join(gate_names(()))} "
                                 f"or METHOD.METRIC (methods: {', '.join(opts.methods)})")
    thresholds = {k: t.default for k, t in THRESHOLDS.items()}
    for name, value in opts.thresholds.items():
        if name not in THRESHOLDS:
            raise OverfocusError(f"--threshold: unknown name {name!r}{did_you_mean(name, THRESHOLDS)}: use one of {', '.join(THRESHOLDS)}")
        thresholds[name] = float(value)
    if opts.target_class not in ("gt", "predicted"):
        raise OverfocusError(f"--target {opts.target_class!r}: use gt or predicted")
    human_root(opts.human)
    return thresholds


# ---- human maps -------------------------------------------------------------------------------------
def human_root(spec: Optional[str]) -> Optional[Path]:
    """`--human DIR` (or `folder:DIR`): a folder of maps named after the image ids."""
    if not spec:
        return None
    root = Path(spec.removeprefix("folder:"))
    if not root.is_dir():
        raise OverfocusError(f"--human {spec}: no such folder; pass a folder of maps named <image_id>.npy/.png")
    return root
