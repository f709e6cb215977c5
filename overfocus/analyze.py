"""`overfocus analyze`: a run's checkpoints x images -> per-image records, a summary, probe maps.

For every selected checkpoint, every analysed image (the test split by default) gets, per
attribution method, the map metrics of specs/METRICS.md computed on the raw map, plus the
image-level numbers of the model (correct, confidence, neuron coverage). A fixed probe set (the
run's `probe_ids`) keeps its float16 maps for rendering. The output format is documented in
docs/analysis.md and `overfocus.analysis_io`, which also reads it back.

The analysis is incremental: an epoch is done when its records file exists and analysis.json
lists it, and a later call computes only what is missing. A corrupt checkpoint is reported and
skipped; the others complete.

Example (in a notebook):
    >>> import overfocus
    >>> rows = overfocus.analyze("runs/demo", epochs="0:10:2")                    # doctest: +SKIP
    >>> rows.computed                                                             # doctest: +SKIP
    [0, 2, 4, 6, 8, 10]
    >>> [(r["epoch"], round(r["mean"], 3)) for r in rows
    ...  if r["method"] == "grad_cam" and r["metric"] == "area_ratio"]            # doctest: +SKIP
    [(0, 0.412), (2, 0.231), ...]
    >>> from overfocus.analysis_io import read_records, to_dataframe              # doctest: +SKIP
    >>> df = to_dataframe(read_records("runs/demo"))  # per image, with pandas  # doctest: +SKIP
"""
from __future__ import annotations

import math
import sys
import types
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import analysis_io as store
from .analysis_io import ALL_IMAGES, MODEL_METHOD, RECORD_COLUMNS, SUMMARY_COLUMNS
from .analysis_io import read_probe, read_records, read_summary, to_dataframe  # noqa: F401  (re-exported)
from .analysis_shards import (SECTIONS, batch_span, coverage_masks, cumulative_coverage, mask_arrays,
                              masks_from_arrays, merge_sections, parse_shard, probe_entries, probe_part_arrays,
                              union_masks)
from .distributed import DistInfo, broadcast_object, gather_objects
from .errors import OverfocusError
from .progress import progress
from .rundir import RunDir, load_checkpoint

DEFAULT_METHODS = ("grad_cam", "sgdrop")
IMAGE_METRICS = ("correct", "confidence")  # always recorded: free, from the logits
COVERAGE_METRICS = ("coverage_global", "coverage_latent")
COVERAGE_NAMES = {"coverage", *COVERAGE_METRICS}  # --metrics names that switch coverage on
# For these methods attribute() runs exactly one forward pass, so the coverage hooks can ride on it.
SINGLE_FORWARD_METHODS = {"grad_cam", "sgdrop"}
CACHE_BYTES = 512 * 2 ** 20  # analysed images are kept in memory across checkpoints up to this size
COMPARED_SETTINGS = ("methods", "metrics", "layer", "target", "data_spec", "split", "limit", "probe_ids",
                     "human", "image_size", "precision")
SETTING_DEFAULTS = {"precision": "float32"}  # what an analysis.json written before the key existed meant


# ---- what an analysis is made of --------------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """What analyze needs from run.json: the model, the preprocessing and the probe ids."""

    model_name: str
    width: float
    small_input: bool
    num_classes: int
    data_spec: str
    image_size: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    batch_size: int
    num_workers: int
    gradcam_layer: str
    latent_layer: str
    probe_ids: Tuple[str, ...]
    batch_norm: Optional[bool] = None  # model.batch_norm of the run (None = the architecture's default)

    @classmethod
    def from_manifest(cls, manifest: Dict[str, Any]) -> "RunInfo":
        from .models import MODELS

        cfg = manifest.get("config") or {}
        model, data = cfg.get("model") or {}, cfg.get("data") or {}
        if "name" not in model or "spec" not in data:
            raise OverfocusError("run.json has no model/data configuration: was it written by `overfocus train`?")
        entry = MODELS.get(model["name"])
        return cls(model["name"], float(model.get("width", 1.0)), bool(model.get("small_input", True)),
                   int(manifest.get("num_classes") or model.get("num_classes") or 0), data["spec"],
                   int(data.get("image_size", 64)), tuple(data.get("mean")), tuple(data.get("std")),
                   int(data.get("batch_size", 64)), int(data.get("num_workers", 0)),
                   manifest.get("gradcam_layer") or entry.gradcam_layer,
                   manifest.get("latent_layer") or entry.latent_layer, tuple(manifest.get("probe_ids") or ()),
                   model.get("batch_norm"))


@dataclass(frozen=True)
class Settings:
    """What an analysis is made with; two calls writing to one folder must agree on all of it."""

    methods: Tuple[str, ...]
    map_metrics: Tuple[str, ...]  # computed on the analysed images
    human_metrics: Tuple[str, ...]  # computed on the human-map images
    coverage: bool
    layer: str
    latent_layer: str
    target: str
    data_spec: str
    split: str
    limit: int
    probe_ids: Tuple[str, ...]
    human: str
    image_size: int
    precision: str = "float32"  # "bfloat16"/"float16" under --amp: the numbers differ slightly

    @property
    def metrics(self) -> List[str]:
        """Every metric name the records hold (map metrics, then the image-level ones)."""
        return [*self.map_metrics, *self.human_metrics, *IMAGE_METRICS, *(COVERAGE_METRICS if self.coverage else ())]

    @property
    def coverage_shares_forward(self) -> bool:
        """Coverage hooks ride on attribute()'s forward unless another forward is needed anyway."""
        return self.target == "gt" and set(self.methods) <= SINGLE_FORWARD_METHODS

    def compared(self) -> Dict[str, Any]:
        d = {k: getattr(self, k) for k in COMPARED_SETTINGS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class AnalysisResult(list):
    """The summary rows (list of dicts: epoch, method, metric, mean, ci_low, ci_high, n), plus
    `computed` (epochs computed by this call), `skipped` ([{epoch, reason}]), `epochs_done` and
    `folder` (the analysis folder)."""

    def __init__(self, rows: Iterable[Dict[str, Any]], computed: List[int], skipped: List[Dict[str, Any]],
                 epochs_done: List[int], folder: Path):
        super().__init__(rows)
        self.computed, self.skipped, self.epochs_done, self.folder = computed, skipped, epochs_done, folder


# ---- the public entry point -------------------------------------------------------------------
def analyze(run_dir: Path | str, epochs: Optional[Iterable[int] | str] = None,
            methods: Sequence[str] = DEFAULT_METHODS, metrics: Optional[Sequence[str]] = None, *,
            probe: Optional[int] = None, data: Optional[str] = None, split: str = "test", target: str = "gt",
            layer: Optional[str] = None, batch_size: Optional[int] = None, limit: int = 0,
            device: str = "auto", amp: bool = False, channels_last: bool = False, human: Optional[str] = None,
            force: bool = False, out: Optional[Path | str] = None, shard: Optional[str | Tuple[int, int]] = None,
            show_progress: bool = True) -> AnalysisResult:
    """Analyse the checkpoints of a run: records per image, summary per epoch, probe-set maps.

    Under torchrun (WORLD_SIZE > 1) every rank takes its share of every epoch's batches and rank 0
    merges the ranks' parts into the files a one-process call writes (docs/distributed.md).

    Args:
        run_dir: a run directory written by `overfocus train`.
        epochs: None or "all" (every checkpoint), "START:STOP[:STEP]" (STOP included), "3,5,7",
            or a list of ints.
        methods: attribution methods (grad_cam and sgdrop come from one forward + backward).
        metrics: map metrics (see `overfocus.metrics.METRICS`) and/or `coverage`; default: all that
            the data supports. `correct` and `confidence` are always recorded.
        probe: size of the probe set (default: run.json's probe_ids; more takes further test images).
        data: dataset spec (default: the run's; pass it when the data has moved).
        split: `test` (default) or `train`.
        target: `gt` (ground-truth class, the default) or `predicted`.
        layer: attribution layer (default: the model's Grad-CAM layer from run.json).
        batch_size: images per batch (default: the run's).
        limit: analyse at most this many images (0 = all).
        device: cpu, cuda, cuda:N or auto; under torchrun `cuda` and `auto` mean the rank's GPU.
        amp: autocast the model (bfloat16 where the device has it, else float16); maps and
            metrics stay float32. Pays off on GPUs; recorded in analysis.json as `precision`.
        channels_last: NHWC memory format for the model and its inputs (faster convolutions on
            recent GPUs; the numbers do not change beyond floating-point rounding).
        human: spec of a dataset with human importance maps (e.g. `osie:../shared/data/osie-150`):
            its images are analysed with target=predicted and scored with `harmonization`.
        force: recompute the selected epochs (and discard an analysis made with other settings).
        out: analysis folder (default RUN/analysis).
        shard: "R/W" or (R, W): compute only share R of W (no torch.distributed, e.g. one task of
            a job array) into `analysis/parts/`; a later call without `shard` merges complete sets.
        show_progress: progress bars on a terminal.

    Returns:
        AnalysisResult: the summary rows; `.computed` lists the epochs this call computed (with
        `shard`: the epochs whose part it wrote, and no rows).

    Example:
        >>> rows = analyze("runs/demo", epochs="0:10:5", methods=["grad_cam"])      # doctest: +SKIP
        >>> sorted({r["metric"] for r in rows})                                    # doctest: +SKIP
        ['area_ratio', 'box_iou', 'confidence', 'correct', 'coverage_global', ...]
    """
    run = RunDir(run_dir)
    info = RunInfo.from_manifest(run.read_manifest())
    selection = _select_epochs(epochs, run)
    job = _Job(run, info, make_runtime(device, amp, channels_last, shard), show_progress)
    job.open_data(data or info.data_spec, split, limit, batch_size or info.batch_size, human)
    settings = job.resolve(methods, metrics, target, layer, probe)
    return job.execute(settings, selection, store.analysis_dir(run.root, out), force)


def preflight(run_dir: Path | str, epochs: Optional[Iterable[int] | str] = None, device: str = "auto",
              nproc: int = 1, shard: Optional[str] = None) -> None:
    """The cheap checks of an analyze call, made before launching `nproc` processes for it.

    Example:
        >>> preflight("runs/demo", "0:10", device="cpu", nproc=2)                 # doctest: +SKIP
    """
    from .device import resolve_device

    run = RunDir(run_dir)
    RunInfo.from_manifest(run.read_manifest())
    _select_epochs(epochs, run)
    dev = resolve_device(device)
    if shard is not None and nproc > 1:
        raise OverfocusError("--shard and --nproc exclude each other: --nproc splits the work itself")
    parse_shard(shard)
    if dev.type == "cuda" and device in ("auto", "cuda") and nproc > torch.cuda.device_count():  # a GPU per rank
        raise OverfocusError(f"--nproc {nproc} on CUDA needs {nproc} GPUs, {torch.cuda.device_count()} "
                                 "are visible: lower --nproc or use --device cpu")


@dataclass(frozen=True)
class Runtime:
    """Where and how this process computes: device, torchrun rank, shard, precision, layout."""

    device: torch.device
    dist: DistInfo = DistInfo()
    shard: Optional[Tuple[int, int]] = None
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @property
    def part(self) -> Optional[Tuple[int, int]]:
        """(rank, world) of the share this process computes; None when it computes everything."""
        if self.shard is not None:
            return self.shard
        return (self.dist.rank, self.dist.world_size) if self.dist.enabled else None

    @property
    def precision(self) -> str:
        return "float32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")


def make_runtime(device: str = "auto", amp: bool = False, channels_last: bool = False,
                 shard: Optional[str | Tuple[int, int]] = None) -> Runtime:
    """The Runtime of this process; under torchrun it joins the process group (gloo/nccl).

    Example:
        >>> make_runtime("cpu").precision
        'float32'
    """
    from .distributed import env_info, init_process_group
    from .device import resolve_device

    info, shard = env_info(), parse_shard(shard)
    if shard is not None and info.enabled:
        raise OverfocusError("--shard is for independent processes: under torchrun the ranks split the work "
                             "themselves, drop --shard")
    dev = resolve_device(device, info.local_rank)
    init_process_group(info, dev)
    return Runtime(dev, info, shard, _amp_dtype(dev) if amp else None, bool(channels_last))


def _amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU has it (its range keeps Grad-CAM's small gradients), else float16;
    on the CPU autocast knows bfloat16 only (rarely faster there: --amp is meant for GPUs)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# ---- epoch selection ----------------------------------------------------------------------------
def available_epochs(run: RunDir) -> List[int]:
    """Epochs the run knows of: listed in run.json or present as a checkpoint file."""
    listed = {int(e["epoch"]) for e in run.read_manifest().get("epochs", []) if "epoch" in e}
    return sorted(listed | set(run.checkpoint_epochs()))


def parse_epochs(spec: Optional[Iterable[int] | str], available: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Resolve an epoch selection to (selected epochs that exist, explicitly asked ones that do not).

    Example:
        >>> parse_epochs("0:10:5", range(12))
        ([0, 5, 10], [])
        >>> parse_epochs("3,50", range(12))
        ([3], [50])
    """
    avail = sorted(set(available))
    if spec is None or (isinstance(spec, str) and spec.strip() in ("", "all")):
        return avail, []
    if isinstance(spec, str) and ":" in spec:
        start, stop, step = _parse_range(spec)
        return [e for e in avail if start <= e <= stop and (e - start) % step == 0], []
    asked = _parse_list(spec)
    return [e for e in asked if e in avail], [e for e in asked if e not in avail]


def _parse_range(text: str) -> Tuple[int, int, int]:
    parts = text.split(":")
    try:
        if len(parts) > 3:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else sys.maxsize
        step = int(parts[2]) if len(parts) == 3 and parts[2].strip() else 1
    except ValueError:
        raise OverfocusError(f"--epochs {text!r}: use START:STOP[:STEP] (STOP included), e.g. 0:50:5") from None
    if step < 1:
        raise OverfocusError(f"--epochs {text!r}: the step must be at least 1")
    return start, stop, step


def _parse_list(spec: Iterable[int] | str) -> List[int]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        return sorted({int(str(e).strip()) for e in items if str(e).strip()})
    except ValueError:
        raise OverfocusError(f"--epochs {spec!r}: use all, a list such as 3,5,7 or a range such as 0:50:5") from None


def _select_epochs(spec, run: RunDir) -> Tuple[List[int], List[int]]:
    selected, missing = parse_epochs(spec, available_epochs(run))
    if not selected and not missing:
        raise OverfocusError(f"no checkpoint of {run.root} matches --epochs {spec}: "
                             f"the run has epochs {available_epochs(run) or 'none yet'}")
    return selected, missing


# ---- the images ---------------------------------------------------------------------------------
def _collate(samples: Sequence[Dict]):
    """collate_samples, plus the stacked human maps when the samples carry them."""
    from .data import collate_samples

    batch = collate_samples(samples)
    humans = [torch.as_tensor(s["human"], dtype=torch.float32) for s in samples if s is not None and "human" in s]
    return batch, (torch.stack(humans) if humans else None)


class BatchSource:
    """The analysed images in order, batch by batch, kept in memory after the first full pass when
    they fit in `budget` bytes (decoding the same files again for every checkpoint is the slow part
    of analysing many checkpoints; the cache does not grow with the number of checkpoints)."""

    def __init__(self, dataset, batch_size: int, num_workers: int = 0, budget: int = CACHE_BYTES,
                 pin: bool = False):
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                  num_workers=num_workers, collate_fn=_collate)
        self.budget, self.pin, self._cache = budget, pin, None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        if self._cache is not None:
            yield from self._cache
            return
        cache: Optional[list] = []
        size = 0
        for item in self.loader:
            if self.pin:  # page-locked: the copy to the GPU is asynchronous (Batch.to is non_blocking)
                item[0].images = item[0].images.pin_memory()
            yield item
            size += item[0].images.nelement() * item[0].images.element_size()
            if cache is not None:
                cache.append(item)
                cache = cache if size <= self.budget else None
        self._cache = cache


def find_indices(dataset, ids: Sequence[str]) -> List[int]:
    """Dataset positions of `ids` (stops scanning as soon as every id is found)."""
    from .data import image_id_at

    wanted, found = set(ids), {}
    for i in range(len(dataset)):
        if len(found) == len(wanted):
            break
        iid = image_id_at(dataset, i)
        if iid in wanted:
            found.setdefault(iid, i)
    missing = [i for i in ids if i not in found]
    if missing:
        raise OverfocusError(f"probe images {missing[:3]} of run.json are not in the data: pass the run's "
                             "dataset with --data")
    return [found[i] for i in ids]


def extend_probe_ids(dataset, ids: Sequence[str], size: Optional[int]) -> Tuple[str, ...]:
    """The first `size` probe ids, taking further test images in order when `size` > len(ids)."""
    if size is None:
        return tuple(ids)
    if size < 1:
        raise OverfocusError(f"--probe {size}: use at least 1 image")
    from .data import image_id_at

    out, taken = list(ids[:size]), set(ids)
    for i in range(len(dataset)):
        if len(out) >= size:
            break
        iid = image_id_at(dataset, i)
        if iid not in taken:
            out.append(iid)
            taken.add(iid)
    return tuple(out)


# ---- one analysis job -------------------------------------------------------------------------
@dataclass
class _Data:
    source: BatchSource  # this process's images: all of them, or its part's share
    test: Any
    classes: List[str]
    has_boxes: bool
    human: Optional[BatchSource] = None


@dataclass
class _EpochOutput:
    """One checkpoint's results in this process: record sections, probe entries, the coverage hooks."""

    sections: Dict[str, List[Dict[str, Any]]] = field(default_factory=lambda: {name: [] for name in SECTIONS})
    cumulative: List[Dict[str, Any]] = field(default_factory=list)
    probe: Dict[int, tuple] = field(default_factory=dict)  # probe position -> (maps per method, logits)
    cov: Any = None

    def rows(self) -> List[Dict[str, Any]]:
        return merge_sections([self.sections], self.cumulative)


@dataclass
class _Plan:
    """What rank 0 decided before the loop (the same on every rank) and what the loop did."""

    state: Dict[str, Any]
    done: set
    todo: List[int]
    ready: Dict[int, int]  # epoch -> world size of a complete set of parts already on disk
    skipped: List[Dict[str, Any]]
    computed: List[int] = field(default_factory=list)

    def record(self, folder: Path, epoch: int, reason: Optional[str]) -> None:
        """Note an epoch's outcome in analysis.json (after its files are durable)."""
        if reason:
            self.skipped.append(_skip(epoch, reason))
        else:
            self.computed.append(epoch)
            self.done.add(epoch)
        self.state = _update_state(folder, self.state, self.done, self.skipped, self.computed)


class _Job:
    """One call of analyze(): the run, its data, the settings, and the loop over checkpoints."""

    def __init__(self, run: RunDir, info: RunInfo, runtime: Runtime, show_progress: bool):
        self.run, self.info, self.rt, self.device = run, info, runtime, runtime.device
        self.show = show_progress and runtime.dist.is_main
        self.data: Optional[_Data] = None
        self.human_spec = ""
        self.reused: List[int] = []

    # -- setup --
    def open_data(self, spec: str, split: str, limit: int, batch_size: int, human: Optional[str]) -> None:
        from .data import open_dataset

        if split not in ("test", "train"):
            raise OverfocusError(f"--split {split!r}: use test or train")
        if limit < 0 or batch_size < 1:
            raise OverfocusError("--limit must be >= 0 and --batch-size >= 1")
        ds = open_dataset(spec, split, self.info.image_size)
        test = ds if split == "test" else open_dataset(spec, "test", self.info.image_size)
        self.spec, self.split, self.limit, self.batch_size = spec, split, limit, batch_size
        analysed = torch.utils.data.Subset(ds, range(min(limit, len(ds)))) if limit else ds
        human_ds = self._open_human(human) if human else None
        self.n_analysed, self.n_human = len(analysed), len(human_ds) if human_ds is not None else 0
        human_src = self._source(human_ds, self.n_human) if human_ds is not None else None
        self.data = _Data(self._source(analysed, self.n_analysed), test, list(ds.classes),
                          bool(getattr(ds, "has_boxes", False)), human_src)

    def _open_human(self, spec: str):
        from .data.human import open_human_dataset

        self.human_spec = spec
        return open_human_dataset(spec, self.info.image_size)

    def _source(self, dataset, n: int) -> BatchSource:
        """This process's batches of `dataset`: all, or its part's contiguous share of the batches."""
        if self.rt.part is not None:
            dataset = torch.utils.data.Subset(dataset, range(*batch_span(n, self.batch_size, *self.rt.part)))
        return BatchSource(dataset, self.batch_size, self.info.num_workers, pin=self.device.type == "cuda")

    def resolve(self, methods, metrics, target: str, layer: Optional[str], probe: Optional[int]) -> Settings:
        """Validate the choices against the registries and the data, and fix the probe ids."""
        methods = _resolve_methods(methods)
        if target not in ("gt", "predicted"):
            raise OverfocusError(f"--target {target!r}: use gt or predicted")
        layer = layer or self.info.gradcam_layer
        self._build_model(layer)
        map_m, human_m, coverage = _resolve_metrics(metrics, self.data.has_boxes, bool(self.human_spec))
        probe_ids = extend_probe_ids(self.data.test, self.info.probe_ids, probe)
        return Settings(methods, map_m, human_m, coverage, layer, self.info.latent_layer, target, self.spec,
                        self.split, self.limit, probe_ids, self.human_spec, self.info.image_size,
                        self.rt.precision)

    def _build_model(self, layer: str) -> None:
        """Build the one model object of this call (checkpoints are loaded into it) and check the layer."""
        from .models import build_model, get_module

        i = self.info
        self.model = build_model(i.model_name, i.num_classes, i.width, i.small_input,
                                 i.batch_norm).to(self.device).eval()
        if self.rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        get_module(self.model, layer)

    # -- the loop --
    def execute(self, settings: Settings, selection: Tuple[List[int], List[int]], folder: Path,
                force: bool) -> AnalysisResult:
        self._load_probe(settings)
        if self.rt.shard is not None:
            return self._execute_shard(settings, selection, folder, force)
        plan = self._on_main(lambda: self._plan(settings, selection, folder, force))
        for epoch in progress(plan.todo, self.show, desc="checkpoints"):
            reason = self._epoch(folder, settings, epoch, plan)
            if self.rt.dist.is_main:
                plan.record(folder, epoch, reason)
        self._report_reused()
        return self._on_main(lambda: self._finish(selection[0], folder, force, plan))

    def _plan(self, settings: Settings, selection: Tuple[List[int], List[int]], folder: Path,
              force: bool) -> _Plan:
        """Rank 0: analysis.json, the probe images, stale parts removed, the epochs to do."""
        selected, missing = selection
        state = _prepare_folder(folder, settings, self.data.classes, force)
        known = set(available_epochs(self.run))  # forget skips of epochs the run does not have
        state["skipped"] = [s for s in state.get("skipped", []) if s["epoch"] in known]
        done = set(state["epochs_done"]) if not force else set(state["epochs_done"]) - set(selected)
        store.remove_parts(folder, done | (set(selected) if force else set()))  # parts of old work
        self._write_probe_images(folder, rewrite=force or not store.probe_images_path(folder).is_file())
        skipped = [_skip(e, f"no checkpoint {self.run.checkpoint_path(e)}") for e in missing]
        todo = [e for e in selected if e not in done]
        ready = {e: w for e in todo if (w := self._complete_world(folder, settings, e))}
        return _Plan(state, done, todo, ready, skipped)

    def _finish(self, selected: List[int], folder: Path, force: bool, plan: _Plan) -> AnalysisResult:
        """Rank 0: the final analysis.json and summary.csv, and the result every rank returns."""
        state = _update_state(folder, plan.state, plan.done, plan.skipped, plan.computed)
        rows = rebuild_summary(folder, state["epochs_done"], bool(plan.computed) or force, self.show)
        if plan.todo and not plan.computed and not (set(state["epochs_done"]) & set(selected)):
            raise OverfocusError(f"none of the selected checkpoints of {self.run.root} could be analysed "
                                 f"({plan.skipped[0]['reason']}); see {folder / 'analysis.json'}")
        return AnalysisResult(rows, plan.computed, state["skipped"], state["epochs_done"], folder)

    def _epoch(self, folder: Path, settings: Settings, epoch: int, plan: _Plan) -> Optional[str]:
        """One epoch on every rank; the reason it was skipped (meaningful on rank 0), or None."""
        main = self.rt.dist.is_main
        if epoch in plan.ready:  # a complete set of parts is on disk: only the merge is left
            return self._merge(folder, settings, epoch, plan.ready[epoch]) if main else None
        if self.rt.part is None:
            return self._one_epoch(folder, settings, epoch)
        rank, world = self.rt.part
        reasons = gather_objects(self._one_part(folder, settings, epoch, rank, world), self.rt.dist)
        if not main:
            return None  # on to the next epoch while rank 0 merges this one
        failed = next((r for r in reasons if r), None)
        if failed:
            store.remove_parts(folder, [epoch])
            return failed
        return self._merge(folder, settings, epoch, world)

    def _execute_shard(self, settings: Settings, selection: Tuple[List[int], List[int]], folder: Path,
                       force: bool) -> AnalysisResult:
        """--shard R/W: this share's parts of the epochs not done yet; no shared file is written."""
        if force:
            raise OverfocusError("--shard cannot be combined with --force: run `overfocus analyze RUN --force` "
                                 "without --shard, or give the shards a fresh --out")
        existing = store.read_analysis_json(folder)
        if existing is not None:
            _refuse_mismatch(folder, existing, _fresh_state(settings, self.data.classes))
        done = set(existing.get("epochs_done", [])) & set(store.record_epochs(folder)) if existing else set()
        selected, missing = selection
        skipped = [_skip(e, f"no checkpoint {self.run.checkpoint_path(e)}") for e in missing]
        computed = []
        for epoch in progress([e for e in selected if e not in done], self.show, desc="checkpoints"):
            reason = self._one_part(folder, settings, epoch, *self.rt.shard)
            (skipped.append(_skip(epoch, reason)) if reason else computed.append(epoch))
        self._report_reused()
        return AnalysisResult([], computed, skipped, sorted(done), folder)

    def _on_main(self, fn):
        """fn() on rank 0, its value on every rank; an error on rank 0 is raised on every rank
        (ranks would otherwise wait for rank 0 forever)."""
        if not self.rt.dist.enabled:
            return fn()
        if not self.rt.dist.is_main:
            ok, value = broadcast_object(None, self.rt.dist)
            if not ok:
                raise OverfocusError(value)
            return value
        try:
            value = fn()
        except BaseException as exc:
            text = str(exc) if isinstance(exc, OverfocusError) else f"rank 0 failed: {type(exc).__name__}: {exc}"
            broadcast_object((False, text), self.rt.dist)
            raise
        broadcast_object((True, value), self.rt.dist)
        return value

    # -- one epoch in one process --
    def _one_epoch(self, folder: Path, settings: Settings, epoch: int) -> Optional[str]:
        """Analyse one checkpoint and write its files; the reason it was skipped, or None."""
        try:
            model = self._load_model(epoch)
        except OverfocusError as exc:
            return str(exc)
        out = self._analyse(model, settings, epoch, probe_positions=None)
        self._write_epoch(folder, epoch, out.rows(), self._probe_arrays(settings, epoch, out.probe))
        store.remove_parts(folder, [epoch])  # an unfinished sharded attempt at it is obsolete now
        return None

    def _write_epoch(self, folder: Path, epoch: int, rows: List[Dict[str, Any]], probe: Dict[str, np.ndarray]):
        store.write_npz(store.probe_epoch_path(folder, epoch), **probe)
        store.write_csv(store.records_path(folder, epoch), rows, RECORD_COLUMNS, ".9g")  # last: "done"

    # -- parts (torchrun ranks, shards) --
    def _part_meta(self, settings: Settings, epoch: int, rank: int, world: int) -> Dict[str, Any]:
        """What a part was made from; a part on disk is reused only when all of it matches."""
        ckpt = self.run.checkpoint_path(epoch)
        stat = ckpt.stat() if ckpt.is_file() else None
        return {"settings": settings.compared(), "batch_size": self.batch_size, "n": self.n_analysed,
                "n_human": self.n_human, "span": list(batch_span(self.n_analysed, self.batch_size, rank, world)),
                "human_span": list(batch_span(self.n_human, self.batch_size, rank, world)),
                "checkpoint": [stat.st_size, stat.st_mtime_ns] if stat else None}

    def _one_part(self, folder: Path, settings: Settings, epoch: int, rank: int, world: int) -> Optional[str]:
        """This rank's share of one checkpoint, written as a part (or a finished one reused)."""
        meta = self._part_meta(settings, epoch, rank, world)
        if store.part_meta(folder, epoch, rank, world) == meta:
            self.reused.append(epoch)
            return None
        try:
            model = self._load_model(epoch)
        except OverfocusError as exc:
            return str(exc)
        # probe images outside the analysed ones are rank 0's job (one process computes them too)
        out = self._analyse(model, settings, epoch, probe_positions=self._uncovered_probe() if rank == 0 else [])
        size = self.info.image_size
        arrays = probe_part_arrays(out.probe, settings.methods, (size, size), self.info.num_classes)
        if out.cov is not None:
            arrays.update(mask_arrays(*coverage_masks(out.cov)))
        store.write_part(folder, epoch, rank, world, out.sections, arrays, meta)
        return None

    def _complete_world(self, folder: Path, settings: Settings, epoch: int) -> Optional[int]:
        """World size of a complete, up-to-date set of parts of `epoch` on disk (any world size)."""
        for world in store.part_worlds(folder, epoch):
            if all(store.part_meta(folder, epoch, r, world) == self._part_meta(settings, epoch, r, world)
                   for r in range(world)):
                return world
        return None

    def _merge(self, folder: Path, settings: Settings, epoch: int, world: int) -> Optional[str]:
        """Rank 0: the parts of one epoch -> the records and probe files of a one-process run."""
        parts = [store.read_part(folder, epoch, r, world) for r in range(world)]
        cumulative: List[Dict[str, Any]] = []
        if settings.coverage:
            masks = [masks_from_arrays(arrays) for _, arrays in parts]
            latent_key = next((key for _, key in masks if key), "")
            totals = cumulative_coverage(union_masks(m for m, _ in masks), latent_key)
            cumulative = _cumulative_rows(epoch, totals)
        probe: Dict[int, tuple] = {}
        for _, arrays in parts:
            probe.update(probe_entries(arrays, settings.methods))
        rows = merge_sections([sections for sections, _ in parts], cumulative)
        self._write_epoch(folder, epoch, rows, self._probe_arrays(settings, epoch, probe))
        store.remove_parts(folder, [epoch])
        return None

    def _report_reused(self) -> None:
        if self.reused:
            rank, world = self.rt.part
            print(f"overfocus analyze: rank {rank} of {world} reused its finished parts of epochs "
                  f"{sorted(self.reused)}", file=sys.stderr)

    # -- the computation --
    def _load_model(self, epoch: int) -> torch.nn.Module:
        """Load a checkpoint's weights into the call's one model (strict: every parameter and buffer
        is overwritten), so memory stays that of one model whatever the number of checkpoints and
        no time goes into random initialisation per checkpoint."""
        path = self.run.checkpoint_path(epoch)
        ckpt = load_checkpoint(path)
        state = ckpt.get("model") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise OverfocusError(f"checkpoint {path} holds no model weights (no `model` entry)")
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise OverfocusError(f"checkpoint {path} does not fit the run's {self.info.model_name} "
                                 f"({str(exc).strip().splitlines()[0][:160]})") from None
        return self.model.eval()

    def _analyse(self, model: torch.nn.Module, settings: Settings, epoch: int,
                 probe_positions: Optional[List[int]]) -> _EpochOutput:
        """This process's images of one checkpoint; `probe_positions`: probe images to compute on
        top of those met (None: every one not met)."""
        out = _EpochOutput(cov=self._coverage(model, settings))
        seen: List[Tuple[str, int]] = []
        for batch, _ in progress(self.data.source, self.show, desc=f"epoch {epoch}"):
            labels = batch.labels.tolist()  # from the host copy: no device round trip for the rows
            batch = batch.to(self.device)
            maps, logits = self._attribute(model, batch, settings, out.cov)
            out.sections["batch"] += _batch_rows(epoch, batch, labels, maps, logits, settings)
            seen += list(zip(batch.image_ids, labels))
            self._keep_probe(batch, maps, logits, out.probe)
        if out.cov is not None:
            out.sections["coverage"] = _coverage_image_rows(epoch, out.cov, seen)
            out.cumulative = _cumulative_rows(epoch, out.cov.cumulative())
        if self.data.human is not None:
            out.sections["human"] = self._human_rows(model, settings, epoch)
        if probe_positions is None:
            probe_positions = [k for k in range(len(self.probe_batch)) if k not in out.probe]
        self._fill_probe(model, settings, out.probe, probe_positions)
        return out

    def _keep_probe(self, batch, maps, logits, probe: Dict[int, tuple]) -> None:
        """Probe images are usually test images analysed anyway: keep their maps, not compute them twice."""
        if self.split != "test":
            return
        for j, iid in enumerate(batch.image_ids):
            k = self.probe_pos.get(iid)
            if k is not None:
                probe[k] = ({m: v[j].clone() for m, v in maps.items()}, logits[j].clone())

    def _coverage(self, model: torch.nn.Module, settings: Settings):
        from .metrics import NeuronCoverage

        return NeuronCoverage(model, latent_layer=settings.latent_layer) if settings.coverage else None

    def _attribute(self, model, batch, settings: Settings, cov=None, target: Optional[str] = None):
        """Maps and logits of one batch from one attribute() call; coverage hooks ride on its forward
        when they can, else on a separate no-grad forward (needed anyway for target=predicted)."""
        from .attribution import attribute
        from .data import normalize

        x = normalize(batch.images, self.info.mean, self.info.std)
        if self.rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = target or settings.target
        hooks = cov if cov is not None else nullcontext()
        with self._autocast():
            if target == "predicted" or (cov is not None and not settings.coverage_shares_forward):
                with torch.no_grad(), hooks:
                    logits = model(x)
                targets = logits.argmax(1) if target == "predicted" else batch.labels
                maps = attribute(model, x, targets, methods=settings.methods, layer=settings.layer)
            else:
                with hooks:
                    maps, logits = attribute(model, x, batch.labels, methods=settings.methods,
                                             layer=settings.layer, return_logits=True)
        # under autocast maps and logits may come back in half precision: metrics work in float32
        return {m: v.float() for m, v in maps.items()}, logits.float()

    def _autocast(self):
        if self.rt.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.rt.amp_dtype)

    def _human_rows(self, model, settings: Settings, epoch: int) -> List[Dict[str, Any]]:
        """Human-map images: the predicted class (their labels are not the model's), `harmonization`."""
        from .metrics import compute_map_metrics

        rows: List[Dict[str, Any]] = []
        for batch, human in self.data.human:
            labels = batch.labels.tolist()
            batch = batch.to(self.device)
            maps, _ = self._attribute(model, batch, settings, target="predicted")
            columns = []
            for method in settings.methods:
                table = compute_map_metrics(maps[method], names=list(settings.human_metrics), boxes=None,
                                            labels=batch.labels, human=human.to(self.device))
                columns += [(method, metric, values) for metric, values in table.items()]
            ids = [f"human:{i}" for i in batch.image_ids]  # never mistaken for an analysed image
            rows += _table_rows(epoch, ids, labels, columns)
        return rows

    # -- the probe set --
    def _load_probe(self, settings: Settings) -> None:
        from .data import collate_samples

        ds = self.data.test
        self.probe_index = find_indices(ds, settings.probe_ids)
        self.probe_batch = collate_samples([ds[i] for i in self.probe_index])
        self.probe_pos = {iid: k for k, iid in enumerate(settings.probe_ids)}

    def _uncovered_probe(self) -> List[int]:
        """Probe positions whose image is not among the analysed ones (--limit, --split train)."""
        analysed = self.n_analysed if self.split == "test" else 0  # analysed = the first n test images
        return [k for k, index in enumerate(self.probe_index) if index >= analysed]

    def _fill_probe(self, model, settings: Settings, probe: Dict[int, tuple], positions: List[int]) -> None:
        if positions:
            maps, logits = self._attribute(model, _subset(self.probe_batch, positions).to(self.device), settings)
            probe.update({k: ({m: v[j] for m, v in maps.items()}, logits[j]) for j, k in enumerate(positions)})

    def _probe_arrays(self, settings: Settings, epoch: int, probe: Dict[int, tuple]) -> Dict[str, np.ndarray]:
        """float16 per-sample max-normalised maps of the probe set, with prediction and confidence."""
        from .attribution import normalize_maps

        missing = [k for k in range(len(self.probe_batch)) if k not in probe]
        if missing:
            raise OverfocusError(f"no maps of probe images {missing[:3]} for epoch {epoch}: delete "
                                 "RUN/analysis/parts and analyse again")
        order = range(len(self.probe_batch))
        logits = torch.stack([probe[k][1] for k in order])
        conf, pred = torch.softmax(logits.float(), 1).max(1)
        arrays = {f"maps_{m}": normalize_maps(torch.stack([probe[k][0][m] for k in order]))[0].cpu().numpy()
                  .astype(np.float16) for m in settings.methods}
        return {**arrays, "pred": pred.cpu().numpy().astype(np.int64), "conf": conf.cpu().numpy().astype(np.float32),
                "epoch": np.asarray(epoch), "image_ids": np.asarray(self.probe_batch.image_ids, dtype=str)}

    def _write_probe_images(self, folder: Path, rewrite: bool) -> None:
        if rewrite:
            store.write_npz(store.probe_images_path(folder), **probe_arrays(self.probe_batch, self.data.classes))


def _skip(epoch: int, reason: str) -> Dict[str, Any]:
    """A skipped epoch: one line on stderr now, an entry of analysis.json `skipped`."""
    print(f"overfocus analyze: skipped epoch {epoch}: {reason}", file=sys.stderr)
    return {"epoch": epoch, "reason": reason}


def _subset(batch, indices: Sequence[int]):
    from .data import Batch

    idx = torch.as_tensor(list(indices), dtype=torch.long)
    return Batch(batch.images[idx], batch.labels[idx], [batch.boxes[i] for i in indices],
                 [batch.image_ids[i] for i in indices])


def _resolve_methods(methods: Sequence[str]) -> Tuple[str, ...]:
    from .attribution import ATTRIBUTIONS

    methods = tuple(dict.fromkeys(m.strip() for m in ([methods] if isinstance(methods, str) else methods) if m.strip()))
    if not methods:
        raise OverfocusError("--methods is empty: name at least one, e.g. --methods grad_cam,sgdrop")
    for m in methods:
        ATTRIBUTIONS.get(m)  # one-line error listing the known methods
    return methods


def _resolve_metrics(names: Optional[Sequence[str]], has_boxes: bool,
                     has_human: bool) -> Tuple[Tuple[str, ...], Tuple[str, ...], bool]:
    """Split metric names into (map metrics, human-map metrics, coverage on?), checking their needs."""
    from .metrics import METRICS

    if names is None:
        specs = [METRICS.get(n) for n in METRICS.names()]
        chosen = [s.name for s in specs if (has_boxes or not s.needs_boxes) and (has_human or not s.needs_human)]
        coverage = True
    else:
        names = [n.strip() for n in ([names] if isinstance(names, str) else names) if n.strip()]
        coverage = any(n in COVERAGE_NAMES for n in names)
        chosen = [n for n in dict.fromkeys(names) if n not in COVERAGE_NAMES and n not in IMAGE_METRICS]
        for n in chosen:
            if n not in METRICS:
                known = ", ".join(METRICS.names() + ["coverage"])
                raise OverfocusError(f"unknown metric {n!r} in --metrics: choose from {known}")
            _check_metric(METRICS.get(n), has_boxes, has_human)
        if has_human and "harmonization" in METRICS and "harmonization" not in chosen:
            chosen.append("harmonization")  # --human asks for it
    human = tuple(n for n in chosen if METRICS.get(n).needs_human)
    return tuple(n for n in chosen if n not in human), human, coverage


def _check_metric(spec, has_boxes: bool, has_human: bool) -> None:
    if spec.needs_boxes and not has_boxes:
        raise OverfocusError(f"metric {spec.name} needs boxes and this data has none: drop it from --metrics")
    if spec.needs_human and not has_human:
        raise OverfocusError(f"metric {spec.name} needs human maps: pass --human SPEC (e.g. osie:PATH)")


# ---- records ----------------------------------------------------------------------------------
def _table_rows(epoch: int, ids: Sequence[str], labels: Sequence[int],
                columns: List[Tuple[str, str, torch.Tensor]]) -> List[Dict[str, Any]]:
    """Rows of one batch from (method, metric, B values) columns, with ONE device-to-host copy."""
    if not columns:
        return []
    device = columns[0][2].device
    values = torch.stack([v.detach().float().reshape(-1).to(device) for *_, v in columns]).cpu().tolist()
    rows = []
    for (method, metric, _), column in zip(columns, values):
        for iid, label, value in zip(ids, labels, column):
            rows.append({"epoch": epoch, "method": method, "image_id": iid, "label": label,
                         "metric": metric, "value": value})
    return rows


def _batch_rows(epoch: int, batch, labels: Sequence[int], maps: Dict[str, torch.Tensor], logits: torch.Tensor,
                settings: Settings) -> List[Dict[str, Any]]:
    """Records of one batch: map metrics per method on the raw maps, then correct and confidence;
    everything stays on the device until the one copy of `_table_rows`."""
    from .metrics import compute_map_metrics

    columns = []
    for method in settings.methods:
        table = compute_map_metrics(maps[method], names=list(settings.map_metrics), boxes=batch.boxes,
                                    labels=batch.labels)
        columns += [(method, metric, values) for metric, values in table.items()]
    conf, pred = torch.softmax(logits.detach().float(), 1).max(1)
    columns += [(MODEL_METHOD, "correct", (pred == batch.labels).float()), (MODEL_METHOD, "confidence", conf)]
    return _table_rows(epoch, batch.image_ids, labels, columns)


def _coverage_image_rows(epoch: int, cov, seen: List[Tuple[str, int]]) -> List[Dict[str, Any]]:
    """Per-image neuron coverage of the images seen, in order."""
    per_image = cov.per_image()
    ids, labels = [s[0] for s in seen], [s[1] for s in seen]
    assert all(len(v) == len(ids) for v in per_image.values()), "one coverage value per analysed image"
    return _table_rows(epoch, ids, labels, [(MODEL_METHOD, k, per_image[k]) for k in COVERAGE_METRICS])


def _cumulative_rows(epoch: int, cumulative: Dict[str, float]) -> List[Dict[str, Any]]:
    """The cumulative coverage of the epoch as `__all__` rows."""
    return [{"epoch": epoch, "method": MODEL_METHOD, "image_id": ALL_IMAGES, "label": -1,
             "metric": f"{name}_cumulative", "value": float(value)} for name, value in cumulative.items()]


def probe_arrays(batch, classes: Sequence[str]) -> Dict[str, np.ndarray]:
    """The probe set as contract C stores it: uint8 images, -1-padded boxes, labels, ids, classes."""
    images = (batch.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    k = max([1] + [len(b) for b in batch.boxes])
    boxes = np.full((len(batch), k, 4), -1.0, np.float32)
    for i, b in enumerate(batch.boxes):
        boxes[i, : len(b)] = b.cpu().numpy()
    return {"images": images, "boxes": boxes, "labels": batch.labels.cpu().numpy().astype(np.int64),
            "image_ids": np.asarray(batch.image_ids, dtype=str), "classes": np.asarray(list(classes), dtype=str)}


# ---- analysis.json ----------------------------------------------------------------------------
def _prepare_folder(folder: Path, settings: Settings, classes: List[str], force: bool) -> Dict[str, Any]:
    """analysis.json of this call: the existing one when the settings agree, else a fresh one.

    Different settings without `force` are an error rather than records of two kinds in one folder;
    with `force`, the earlier files are removed first.
    """
    existing = store.read_analysis_json(folder)
    fresh = _fresh_state(settings, classes)
    if existing is None:
        return fresh
    if _first_mismatch(existing, fresh) is None:
        on_disk = set(store.record_epochs(folder))  # a records file removed by hand means "not done"
        existing["epochs_done"] = sorted(e for e in existing.get("epochs_done", []) if e in on_disk)
        return existing
    if not force:
        _refuse_mismatch(folder, existing, fresh)
    _clear_folder(folder)
    return fresh


def _fresh_state(settings: Settings, classes: List[str]) -> Dict[str, Any]:
    """analysis.json of an analysis with nothing done yet."""
    return {"schema": store.ANALYSIS_SCHEMA, **settings.compared(), "metrics": settings.metrics,
            "latent_layer": settings.latent_layer,
            "coverage_forward": "shared" if settings.coverage_shares_forward else "separate",
            "epochs_done": [], "skipped": [], "classes": list(classes)}


def _refuse_mismatch(folder: Path, existing: Dict[str, Any], fresh: Dict[str, Any]) -> None:
    mismatch = _first_mismatch(existing, fresh)
    if mismatch is not None:
        key, old, new = mismatch
        raise OverfocusError(f"{folder} holds an analysis made with {key}={old!r}, this call asks for "
                             f"{key}={new!r}: pass --force to replace it, or --out DIR to keep both")


def _first_mismatch(existing: Dict[str, Any], fresh: Dict[str, Any]) -> Optional[Tuple[str, Any, Any]]:
    if existing.get("schema") != store.ANALYSIS_SCHEMA:
        return ("schema", existing.get("schema"), store.ANALYSIS_SCHEMA)
    for key in COMPARED_SETTINGS:
        if existing.get(key, SETTING_DEFAULTS.get(key)) != fresh[key]:
            return (key, existing.get(key, SETTING_DEFAULTS.get(key)), fresh[key])
    return None


def _clear_folder(folder: Path) -> None:
    """Remove only the files analyze writes (the folder may hold other things)."""
    for pattern in ("records/epoch_*.csv", "probe/epoch_*.npz", "probe/images.npz", "summary.csv",
                    "analysis.json"):
        for path in folder.glob(pattern):
            path.unlink()
    store.remove_parts(folder)


def _update_state(folder: Path, state: Dict[str, Any], done: set, skipped: List[Dict[str, Any]],
                  computed: List[int]) -> Dict[str, Any]:
    """Record done epochs (after their files are durable) and this call's skipped ones."""
    fixed = set(computed) | {s["epoch"] for s in skipped}
    kept = [s for s in state.get("skipped", []) if s["epoch"] not in fixed and s["epoch"] not in done]
    state = {**state, "epochs_done": sorted(done), "skipped": sorted(kept + skipped, key=lambda s: s["epoch"])}
    store.write_analysis_json(folder, state)
    return state


# ---- summary ----------------------------------------------------------------------------------
def rebuild_summary(folder: Path, epochs: Sequence[int], rebuild: bool = True,
                    show_progress: bool = False) -> List[Dict[str, Any]]:
    """summary.csv from the records, one epoch at a time (memory stays that of one epoch).

    Skipped (and the file kept) when nothing changed since it was written.
    """
    path = folder / "summary.csv"
    if not rebuild and path.is_file():
        rows = store.read_summary(folder.parent, out=folder)
        if sorted({r["epoch"] for r in rows}) == sorted(epochs):
            return rows
    rows = []
    for epoch in progress(sorted(epochs), show_progress, desc="summary"):
        rows += summarize_records(list(store.iter_record_file(store.records_path(folder, epoch))))
    store.write_csv(path, rows, SUMMARY_COLUMNS)
    return rows


def summarize_records(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Summary rows (mean, 95% bootstrap CI, n) per epoch x method x metric of some records.

    Cumulative coverage rows (image `__all__`) are copied with ci = mean; `pointing_game_per_class`
    is added for every method that has pointing_game values (ci = mean: no interval).

    Example:
        >>> recs = [{"epoch": 1, "method": "grad_cam", "image_id": str(i), "label": i % 2,
        ...          "metric": "hit", "value": float(i % 2)} for i in range(10)]
        >>> row = summarize_records(recs)[0]
        >>> row["mean"], row["n"], row["ci_low"] <= 0.5 <= row["ci_high"]
        (0.5, 10, True)
    """
    from .metrics import bootstrap_ci

    groups: Dict[Tuple[int, str, str], List[Tuple[float, int]]] = defaultdict(list)
    overall: Dict[Tuple[int, str, str], float] = {}
    for r in records:
        key = (r["epoch"], r["method"], r["metric"])
        if r["image_id"] == ALL_IMAGES:
            overall[key] = r["value"]
        else:
            groups[key].append((r["value"], r["label"]))
    rows = []
    for key, pairs in groups.items():
        values = np.asarray([p[0] for p in pairs], dtype=np.float64)
        rows.append(_summary_row(key, values, bootstrap_ci(values, n_boot=1000, seed=0)))
        if key[2] == "pointing_game":
            rows.append(_per_class_row(key, values, np.asarray([p[1] for p in pairs])))
    n_images = {k[0]: len(v) for k, v in groups.items() if k[1] == MODEL_METHOD and k[2] == "correct"}
    rows += [_fixed_row(k, v, n_images.get(k[0], 0)) for k, v in overall.items()]
    return sorted(rows, key=lambda r: (r["epoch"], r["method"], r["metric"]))


def _summary_row(key: Tuple[int, str, str], values: np.ndarray, ci: Tuple[float, float]) -> Dict[str, Any]:
    valid = values[~np.isnan(values)]
    mean = float(valid.mean()) if valid.size else math.nan
    return {"epoch": key[0], "method": key[1], "metric": key[2], "mean": mean, "ci_low": float(ci[0]),
            "ci_high": float(ci[1]), "n": int(valid.size)}


def _per_class_row(key: Tuple[int, str, str], hits: np.ndarray, labels: np.ndarray) -> Dict[str, Any]:
    from .metrics import pointing_game_per_class

    keep = ~np.isnan(hits)
    value = float(pointing_game_per_class(torch.as_tensor(hits[keep]), torch.as_tensor(labels[keep])))
    return _fixed_row((key[0], key[1], "pointing_game_per_class"), value, int(keep.sum()))


def _fixed_row(key: Tuple[int, str, str], value: float, n: int) -> Dict[str, Any]:
    return {"epoch": key[0], "method": key[1], "metric": key[2], "mean": value, "ci_low": value,
            "ci_high": value, "n": n}


class _CallableModule(types.ModuleType):
    """`overfocus.analyze` is both this module and the function: importing the submodule
    `overfocus.analyze` rebinds the package attribute to the module, so the module itself must be
    callable for `overfocus.analyze(run_dir)` to work whatever was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> AnalysisResult:
        return analyze(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
