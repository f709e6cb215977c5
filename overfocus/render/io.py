"""Readers of what `overfocus analyze` wrote (RUN/analysis/, see docs/rendering.md) and atomic writers.

Rendering reads only files: analysis.json, summary.csv, probe/images.npz, probe/epoch_NNNN.npz and
the run's metrics.jsonl. Nothing here runs a model.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..analysis.onset import read_onset
from ..analysis.storage import parse_summary_file
from ..errors import OverfocusError
from ..fileio import TEMP_MARK, file_mode, temp_prefix, writing
from ..registry import did_you_mean
from ..runs.rundir import RunDir, epoch0_is_initial
from .meta import MetricLabel, method_title, metric_info

@dataclass
class ProbeSet:
    """The fixed probe images of a run, as the model saw them (un-normalised uint8)."""

    images: np.ndarray          # P x H x W x 3 uint8
    boxes: np.ndarray           # P x K x 4 float32, padded with -1 rows
    labels: np.ndarray          # P int64
    image_ids: List[str]
    classes: List[str]

    def __len__(self) -> int:
        return len(self.image_ids)

    def boxes_of(self, index: int) -> np.ndarray:
        """The real boxes (N x 4) of one probe image, padding rows dropped."""
        b = self.boxes[index].reshape(-1, 4)
        return b[(b >= 0).all(axis=1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]

    def class_name(self, index: int) -> str:
        return self.classes[index] if 0 <= index < len(self.classes) else str(index)

    @property
    def has_boxes(self) -> bool:
        """Whether any probe image has an object box (legends name the green box only then)."""
        return any(len(self.boxes_of(i)) for i in range(len(self)))


@dataclass
class EpochMaps:
    """One analysed epoch of the probe set: normalised maps per method, prediction, confidence."""

    epoch: int
    maps: Dict[str, np.ndarray]  # method -> P x H x W float32 in [0, 1]
    pred: np.ndarray             # P int64
    conf: np.ndarray             # P float32


@dataclass
class Analysis:
    """Everything rendering needs from one run directory.

    Example:
        >>> a = load_analysis("runs/demo")          # doctest: +SKIP
        >>> a.epochs[:3], a.methods                  # doctest: +SKIP
        ([0, 1, 2], ['grad_cam', 'sgdrop'])
    """

    run_dir: Path
    meta: Dict
    probe: ProbeSet
    epochs: List[int]
    summary: List[Dict] = field(default_factory=list)
    metrics: List[Dict] = field(default_factory=list)
    onset: Optional[Dict] = None  # RUN/analysis/onset.json (peak epoch per method), None when absent
    manifest: Dict = field(default_factory=dict)  # run.json ({} where absent)

    @property
    def epoch0_is_initial(self) -> bool:
        """Whether epoch N means "after N epochs of training" (run.json; see rundir.epoch0_is_initial)."""
        return epoch0_is_initial(self.manifest)

    def step_of(self, epoch: int) -> Optional[int]:
        """Optimizer steps done at `epoch`, where run.json records them (Lightning file names), else None."""
        return next((e.get("step") for e in self.manifest.get("epochs", []) if e.get("epoch") == epoch), None)

    @property
    def name(self) -> str:
        return run_name(self.run_dir)

    @property
    def methods(self) -> List[str]:
        return list(self.meta.get("methods", []))

    def method_title(self, method: str) -> str:
        """Display title from analysis.json's `method_info` (plain name for older analyses)."""
        return method_title(self.meta, method)

    def metric_info(self, metric: str) -> MetricLabel:
        """Title, unit and range from analysis.json's `metric_info` (plain name, no range, for older ones)."""
        return metric_info(self.meta, metric)

    def load_epoch(self, epoch: int) -> EpochMaps:
        return read_probe_epoch(self.run_dir / "analysis" / "probe" / f"epoch_{epoch:04d}.npz", epoch)

    def metrics_row(self, epoch: int) -> Optional[Dict]:
        """The metrics.jsonl line of `epoch` (train/test accuracy, gap), or None."""
        return next((r for r in self.metrics if r.get("epoch") == epoch), None)

    def summary_value(self, epoch: int, method: str, metric: str) -> float:
        """Mean of `metric` for `method` at `epoch` from summary.csv; NaN when absent."""
        for r in self.summary:
            if r["epoch"] == epoch and r["method"] == method and r["metric"] == metric:
                return r["mean"]
        return math.nan

    def accuracy_counts(self) -> Optional[Tuple[int, int]]:
        """(train images, test images) behind the accuracies of metrics.jsonl (`accuracy_counts`);
        for runs trained before the counts were written, the analysed images when the analysis
        took the whole test split (the train accuracy then uses a fixed subset of the same size)."""
        counts = accuracy_counts(self.metrics)
        if counts is not None:
            return counts
        subset = ((self.manifest.get("config") or {}).get("data") or {}).get("train_subset") or 0
        if self.meta.get("split", "test") != "test" or self.meta.get("limit") or subset:
            return None
        n = [r.get("n") for r in self.summary if r["metric"] == "correct" and r["method"] == "model"]
        return (int(n[-1]), int(n[-1])) if n and n[-1] else None

    def chance(self) -> Optional[float]:
        """The accuracy of guessing uniformly, 1 / classes (None when the classes are unknown)."""
        return 1.0 / len(self.probe.classes) if self.probe.classes else None

    def empty_maps(self, epoch: int, method: str) -> Optional[tuple]:
        """(degenerate maps, maps) of `method` at `epoch` from summary.csv, None for an analysis
        without the count (made before degenerate maps were counted)."""
        for r in self.summary:
            if (r["epoch"], r["method"], r["metric"]) == (epoch, method, "degenerate_count"):
                return (int(r["mean"]), int(r["n"])) if math.isfinite(r["mean"]) else None
        return None


TRAIN_IMAGES, TEST_IMAGES = "train_images", "test_images"  # metrics.jsonl: images behind each accuracy


def accuracy_counts(metrics_rows: Sequence[Dict]) -> Optional[Tuple[int, int]]:
    """(train images, test images) each accuracy of metrics.jsonl was measured on, from its
    `train_images` / `test_images` fields (the last epoch's); None when the rows do not say.

    Example:
        >>> accuracy_counts([{"epoch": 0, "train_acc": .5, "train_images": 80, "test_images": 96}])
        (80, 96)
        >>> accuracy_counts([{"epoch": 0, "train_acc": .5}]) is None
        True
    """
    for row in reversed(list(metrics_rows)):
        train, test = row.get(TRAIN_IMAGES), row.get(TEST_IMAGES)
        if isinstance(train, int) and isinstance(test, int) and train > 0 and test > 0:
            return train, test
    return None


def run_name(run_dir: Path | str) -> str:
    """The run's folder name; for the output folder of `overfocus analyze FOLDER` (its run.json
    names the checkpoint folder) the name of that folder. A name that only numbers a repetition
    (`seed0`, `version_3`, `run2`, `7`) is shown with its parent's (`sgdrop/seed0`): a title that
    says "seed0" would not say which run it is.

    Example:
        >>> run_name("runs/demo")
        'demo'
        >>> run_name("runs/table/sgdrop/seed1")
        'sgdrop/seed1'
    """
    run_dir = Path(run_dir)
    try:  # a name is wanted even for a damaged or missing run.json: fall back to the folder's
        source = RunDir(run_dir).read_manifest().get("source") or {}
    except (OverfocusError, OSError):
        source = {}
    if not isinstance(source, dict):
        source = {}
    path = Path(source["folder"]) if source.get("folder") else run_dir.resolve()
    if REPETITION_NAME.fullmatch(path.name) and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


REPETITION_NAME = re.compile(r"(seed|version|run|rep|trial)?[_-]?\d+", re.IGNORECASE)


def no_analysis_error(run_dir: Path, detail: str) -> OverfocusError:
    return OverfocusError(f"{run_dir} has no usable analysis ({detail}): run `overfocus analyze {run_dir}` first")


def load_analysis(run_dir: Path | str) -> Analysis:
    """Read analysis.json, the probe set, summary.csv and metrics.jsonl of a run directory.

    Raises OverfocusError (telling the user to run `overfocus analyze RUN`) when the analysis is
    missing or incomplete.

    Example:
        >>> load_analysis("runs/demo").epochs      # doctest: +SKIP
        [0, 1, 2, 3]
    """
    run_dir = Path(run_dir)
    meta = read_analysis_json(run_dir)
    probe = read_probe_set(run_dir)
    epochs = analysed_epochs(run_dir, meta)
    summary_path = run_dir / "analysis" / "summary.csv"
    summary = read_summary_csv(summary_path) if summary_path.is_file() else []
    run = RunDir(run_dir)
    return Analysis(run_dir, meta, probe, epochs, summary, run.read_metrics(), read_onset(run_dir / "analysis"),
                    run.read_manifest() if run.exists() else {})


DAMAGED_FILE_ERRORS = (ValueError, TypeError, KeyError, EOFError, OSError, zipfile.BadZipFile, csv.Error)


def damaged_error(path: Path, exc: BaseException) -> OverfocusError:
    """The one line for an analysis file that exists but cannot be read (truncated, edited, ...)."""
    if isinstance(exc, OverfocusError):
        return exc
    return OverfocusError(f"{path} is damaged ({type(exc).__name__}): re-run `overfocus analyze` on this run")


def read_summary_csv(path: Path) -> List[Dict]:
    """summary.csv through the one parser, after a check that no row is cut short (a truncated
    file would otherwise read as empty cells, i.e. NaN)."""
    try:
        with open(path, newline="") as fh:
            widths = {len(row) for row in csv.reader(fh) if row}
        if len(widths) > 1:
            raise ValueError("rows of different lengths")
        return parse_summary_file(path)
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_error(path, exc) from None


def read_analysis_json(run_dir: Path) -> Dict:
    path = run_dir / "analysis" / "analysis.json"
    if not path.is_file():
        raise no_analysis_error(run_dir, f"{path} is missing")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise no_analysis_error(run_dir, f"{path} is not valid JSON: {exc.msg}") from None
    if meta.get("schema") != 1:
        raise OverfocusError(f"{path} has schema {meta.get('schema')!r}, this overfocus reads schema 1: "
                             f"re-run `overfocus analyze {run_dir}`")
    return meta


def analysed_epochs(run_dir: Path, meta: Dict) -> List[int]:
    """Sorted, de-duplicated analysed epochs; each must have its probe maps file."""
    epochs = sorted({int(e) for e in meta.get("epochs_done", [])})
    if not epochs:
        raise no_analysis_error(run_dir, "no epoch has been analysed yet")
    missing = [e for e in epochs if not (run_dir / "analysis" / "probe" / f"epoch_{e:04d}.npz").is_file()]
    if missing:
        raise no_analysis_error(run_dir, f"probe maps of epoch {missing[0]} are missing")
    return epochs


def read_probe_set(run_dir: Path) -> ProbeSet:
    path = run_dir / "analysis" / "probe" / "images.npz"
    if not path.is_file():
        raise no_analysis_error(run_dir, f"{path} is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            return ProbeSet(np.asarray(z["images"], np.uint8), np.asarray(z["boxes"], np.float32).reshape(
                len(z["labels"]), -1, 4), np.asarray(z["labels"], np.int64), [str(s) for s in z["image_ids"]],
                [str(s) for s in z["classes"]])
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_error(path, exc) from None


def read_probe_epoch(path: Path, epoch: int) -> EpochMaps:
    """Read probe/epoch_NNNN.npz: `maps_<method>` (float16 -> float32), `pred`, `conf`."""
    if not path.is_file():
        raise OverfocusError(f"{path} is missing: re-run `overfocus analyze` on this run")
    try:
        with np.load(path, allow_pickle=False) as z:
            maps = {k[len("maps_"):]: np.nan_to_num(z[k].astype(np.float32)).clip(0.0, 1.0)
                    for k in z.files if k.startswith("maps_")}
            return EpochMaps(epoch, maps, np.asarray(z["pred"], np.int64), np.asarray(z["conf"], np.float32))
    except DAMAGED_FILE_ERRORS as exc:
        raise damaged_error(path, exc) from None


def select_methods(available: Sequence[str], requested: Optional[Sequence[str]], where: Path) -> List[str]:
    """The requested methods (default: all analysed), refusing names the analysis lacks."""
    if not requested:
        if not available:
            raise OverfocusError(f"the analysis of {where} has no attribution method: re-run `overfocus analyze`")
        return list(available)
    unknown = [m for m in requested if m not in available]
    if unknown:
        raise OverfocusError(f"method {unknown[0]!r} was not analysed in {where}{did_you_mean(unknown[0], available)}: "
                             "choose from "
                             f"{', '.join(available)} (or re-run `overfocus analyze` with --methods)")
    return list(requested)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the target folder; on success fsync it and rename it into place.

    For writers that insist on a file name of their own (ffmpeg).
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=f"{TEMP_MARK}{path.suffix}", dir=path.parent)
        os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


