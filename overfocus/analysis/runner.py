"""`overfocus analyze`: a run's checkpoints x images -> per-image records, a summary, probe maps.

For every selected checkpoint, every analysed image (the test split by default) gets, per
attribution method, the map metrics of specs/METRICS.md computed on the raw map, plus the
image-level numbers of the model (correct, confidence, neuron coverage). A fixed probe set (the
run's `probe_ids`) keeps its float16 maps for rendering. The output format is documented in
docs/analysis.md and `overfocus.analysis.storage`, which also reads it back.

The analysis is incremental: an epoch is done when its records file exists and analysis.json
lists it, and a later call computes only what is missing. A corrupt checkpoint is reported and
skipped; the others complete. This module is the plan (what to do), the loop over checkpoints
and analysis.json; one checkpoint's work is `evaluator.EpochEvaluator`, the parts of a sharded
analysis and their merge `parts.EpochParts`.

Example (in a notebook):
    >>> import overfocus
    >>> rows = overfocus.analyze("runs/demo", epochs="0:10:2")                    # doctest: +SKIP
    >>> rows.computed                                                             # doctest: +SKIP
    [0, 2, 4, 6, 8, 10]
    >>> [(r["epoch"], round(r["mean"], 3)) for r in rows
    ...  if r["method"] == "grad_cam" and r["metric"] == "area_ratio"]            # doctest: +SKIP
    [(0, 0.412), (2, 0.231), ...]
    >>> from overfocus.analysis import read_records, to_dataframe                 # doctest: +SKIP
    >>> df = to_dataframe(read_records("runs/demo"))  # per image, with pandas  # doctest: +SKIP
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from . import storage as store
from ..attribution import attribution_mode
from ..attribution.methods import DEFAULT_METHODS
from ..checkpoint.folder import scan_folder
from ..data import collate_samples, normalize, open_dataset
from ..data.human import open_human_dataset
from ..data.subset import Subset
from ..device import resolve_device
from ..distributed import broadcast_object, gather_objects
from ..errors import OverfocusError, option
from ..fileio import atomic_write_json, clean_stale_temps, json_safe
from ..metrics.faithfulness import FaithfulnessOptions
from ..models import get_module
from ..models.build import ModelOptions
from ..models.layers import layer_side, small_layer_note
from ..models.tokens import layer_layout
from ..progress import epoch_line, progress
from ..runs.manifest import RunInfo
from ..runs.rundir import RunDir
from .cascade import CASCADE_FILE, cascade, randomisable_layers
from .core import NonFiniteModel, check_finite_weights
from .evaluator import AnalysisData, EpochEvaluator
from .lock import AnalysisLock
from .onset import OnsetCollector, update_onset
from .parts import EpochParts
from .runsource import FolderOptions, RunSource, open_source
from .settings import (FAITHFULNESS_IMAGES, Runtime, Settings, make_runtime, resolve_method_args, resolve_methods,
                       resolve_metrics, resolve_model_metrics, select_epochs)
from .shards import batch_span, parse_shard
from .source import BatchSource, evenly_spaced, extend_probe_ids, find_indices, probe_arrays
from .state import checkpoint_identity, fresh_state, prepare_folder, refuse_mismatch, update_state
from .summary import rebuild_summary
from .trajectory import update_trajectory


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
            show_progress: bool = True, folder: Optional[FolderOptions] = None,
            skip_bad: Optional[bool] = None,
            method_args: Optional[Mapping[str, Mapping[str, Any]]] = None, trust_recipe: bool = False,
            arch: Optional[str] = None, faithfulness_images: int = FAITHFULNESS_IMAGES,
            faithfulness_steps: int = 16, faithfulness_baseline: str = "blur", sanity: str = "") -> AnalysisResult:
    """Analyse the checkpoints of a run: records per image, summary per epoch, probe-set maps.

    The run is a run directory of `overfocus train`, or any folder of checkpoint files named by
    epoch (a foreign run: `folder` says how to read it, `data` is required; the analysis goes to
    `out`/analysis, default FOLDER/overfocus/analysis, beside run.json and the measured
    train/test accuracy in metrics.jsonl).

    Under torchrun (WORLD_SIZE > 1) every rank takes its share of every epoch's batches and rank 0
    merges the ranks' parts into the files a one-process call writes (docs/distributed.md).

    Args:
        run_dir: a run directory written by `overfocus train`, or a folder of checkpoint files.
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
        out: analysis folder (default RUN/analysis); for a folder of checkpoints the folder that
            receives run.json, metrics.jsonl and analysis/ (default FOLDER/overfocus).
        shard: "R/W" or (R, W): compute only share R of W (no torch.distributed, e.g. one task of
            a job array) into `analysis/parts/`; a later call without `shard` merges complete sets.
        show_progress: progress bars on a terminal, and (for a folder) the lines naming the chosen
            layer and the files without an epoch.
        folder: for a folder of checkpoints: the model (`--model`/`--arch`, ...), preprocessing,
            epoch pattern and accuracy log (`FolderOptions`).
        skip_bad: skip unreadable images with a warning each (None: as the run was trained,
            run.json's `data.skip_bad`).
        method_args: per method, its arguments (`--method-args`), e.g. {"score_cam": {"batch_size":
            32}, "captum:Occlusion": {"sliding_window_shapes": [3, 8, 8]}}; kept in analysis.json.
        trust_recipe, arch: a run whose run.json records its model as an import path
            (`module:Factory`, a tracked run) is rebuilt only when `arch` names that same path or
            `trust_recipe` is True: a file never chooses code to run (`models.build.allow_recorded_arch`).
        faithfulness_images: the faithfulness and sanity metrics (`MetricSpec.needs_model`) are
            computed on this many images evenly spaced over the analysed ones (0: none), the
            random baseline beside them; their ids go to `faithfulness.json`.
        faithfulness_steps: K of deletion / insertion (default 16).
        faithfulness_baseline: what deletion / insertion put in place of removed pixels: `blur`
            (default) or `mean`.
        sanity: "cascade": also run the cascading randomisation test on the last analysed epoch
            (on the faithfulness images; `sanity_cascade.json`).

    Returns:
        AnalysisResult: the summary rows; `.computed` lists the epochs this call computed (with
        `shard`: the epochs whose part it wrote, and no rows).

    Example:
        >>> rows = analyze("runs/demo", epochs="0:10:5", methods=["grad_cam"])      # doctest: +SKIP
        >>> sorted({r["metric"] for r in rows})                                    # doctest: +SKIP
        ['area_ratio', 'box_iou', 'confidence', 'correct', 'coverage_global', ...]
    """
    runtime = make_runtime(device, amp, channels_last, shard)
    source = open_source(run_dir, data, folder, out, layer, show=show_progress and runtime.dist.is_main,
                         recipe=ModelOptions(arch=arch, trust_recipe=trust_recipe))
    info = source.info
    selection = select_epochs(epochs, source.epochs(), source.root)
    runner = prepare(source, runtime, Choices(data or info.data_spec, split, limit,
                                              info.batch_size if batch_size is None else batch_size,
                                              human, methods, metrics, target, layer, probe,
                                              info.skip_bad if skip_bad is None else skip_bad,
                                              method_args or {}, faithfulness_images, faithfulness_steps,
                                              faithfulness_baseline, sanity or ""), show_progress)
    return runner.execute(selection, source.analysis_folder(out), force)


def preflight(run_dir: Path | str, epochs: Optional[Iterable[int] | str] = None, device: str = "auto",
              nproc: int = 1, shard: Optional[str] = None, epoch_pattern: Optional[str] = None,
              epoch_offset: Optional[int] = None) -> None:
    """The cheap checks of an analyze call, made before launching `nproc` processes for it.

    Example:
        >>> preflight("runs/demo", "0:10", device="cpu", nproc=2)                 # doctest: +SKIP
    """
    run = RunDir(run_dir)
    if run.exists():
        RunInfo.from_manifest(run.read_manifest())
        available = open_source(run_dir).epochs()
    else:
        available = scan_folder(run_dir, epoch_pattern, epoch_offset).epochs
    select_epochs(epochs, available, run_dir)
    dev = resolve_device(device)
    if shard is not None and nproc > 1:
        raise OverfocusError("--shard and --nproc exclude each other: --nproc splits the work itself")
    parse_shard(shard)
    if dev.type == "cuda" and device in ("auto", "cuda") and nproc > torch.cuda.device_count():  # a GPU per rank
        raise OverfocusError(f"--nproc {nproc} on CUDA needs {nproc} GPUs, {torch.cuda.device_count()} "
                                 "are visible: lower --nproc or use --device cpu")



# ---- preparing a call -------------------------------------------------------------------------
@dataclass(frozen=True)
class Choices:
    """The user's choices of one analyze call, before they are checked."""

    data_spec: str
    split: str
    limit: int
    batch_size: int
    human: Optional[str]
    methods: Sequence[str]
    metrics: Optional[Sequence[str]]
    target: str
    layer: Optional[str]
    probe: Optional[int]
    skip_bad: bool = False
    method_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    faithfulness_images: int = FAITHFULNESS_IMAGES
    faithfulness_steps: int = 16
    faithfulness_baseline: str = "blur"
    sanity: str = ""  # "cascade": the cascading randomisation test on the last analysed epoch


def prepare(source: RunSource, runtime: Runtime, choices: Choices, show_progress: bool) -> "Runner":
    """Open the data, check the choices against the registries and the data, build the model:
    everything the Runner and its EpochEvaluator receive in their constructors."""
    c, info = choices, source.info
    if c.split not in ("test", "train"):
        raise OverfocusError(f"--split {c.split!r}: use test or train")
    if c.limit < 0:
        raise OverfocusError(f"--limit {c.limit}: use 0 (all images) or more")
    if c.batch_size < 1:
        raise OverfocusError(f"--batch-size {c.batch_size}: use 1 or more (default: the run's batch size)")
    ds = open_dataset(c.data_spec, c.split, info.image_size, skip_bad=c.skip_bad)
    test = ds if c.split == "test" else open_dataset(c.data_spec, "test", info.image_size, skip_bad=c.skip_bad)
    analysed = evenly_spaced(ds, c.limit)  # a class-sorted split must not yield one class
    human_ds = open_human_dataset(c.human, info.image_size) if c.human else None
    methods = resolve_methods(c.methods)
    method_args = resolve_method_args(methods, c.method_args)
    if c.target not in ("gt", "predicted"):
        raise OverfocusError(f"--target {c.target!r}: use gt or predicted")
    layer = c.layer or info.gradcam_layer
    model = place_model(source.build_model(), layer, runtime.device, runtime.channels_last)
    check_layer_size(model, layer, info.image_size, runtime.device, bool(c.layer) or source.layer_given,
                     show_progress and runtime.dist.is_main)
    has_boxes = bool(getattr(ds, "has_boxes", False))
    map_m, human_m, coverage = resolve_metrics(c.metrics, has_boxes, bool(c.human))
    probe_ids = extend_probe_ids(test, info.probe_ids, c.probe)
    model_m = resolve_model_metrics(c.metrics)
    faithful = faithful_subset(analysed, c.faithfulness_images if model_m else 0)
    settings = Settings(methods, map_m, human_m, coverage, layer, info.latent_layer, c.target, c.data_spec,
                        c.split, c.limit, probe_ids, c.human or "", info.image_size, runtime.precision,
                        method_args, faithfulness_images=len(faithful) if faithful is not None else 0,
                        faithfulness_metrics=model_m if faithful is not None else (),
                        faithfulness_steps=c.faithfulness_steps, faithfulness_baseline=c.faithfulness_baseline,
                        layer_reshape=layer_reshape(model, layer, info.image_size, runtime.device),
                        image_choice="evenly" if len(analysed) < len(ds) else "")
    FaithfulnessOptions(steps=c.faithfulness_steps, baseline=c.faithfulness_baseline)  # refuses bad values now
    probe_index = find_indices(test, settings.probe_ids)
    sources = _Sources(runtime, c.batch_size, info.num_workers)
    data = AnalysisData(sources.of(analysed), test, list(ds.classes), has_boxes, c.split, len(analysed),
                        collate_samples([test[i] for i in probe_index]), tuple(probe_index),
                        sources.of(human_ds) if human_ds is not None else None,
                        len(human_ds) if human_ds is not None else 0,
                        sources.of(faithful) if faithful is not None else None,
                        subset_ids(faithful) if faithful is not None else (),
                        tuple(analysed.indices) if analysed is not ds else None)
    show = show_progress and runtime.dist.is_main
    init = (lambda: initial_model(source, model)) if settings.faithful_metrics else None
    evaluator = EpochEvaluator(model, settings, info, runtime, data, show, init_model=init)
    runner = Runner(source, runtime, settings, data, evaluator, c.batch_size, show)
    if c.sanity == "cascade":
        if faithful is None:
            raise OverfocusError("--sanity cascade runs on the faithfulness images: pass --faithfulness-images N "
                                 "(N > 0) and keep a faithfulness metric in --metrics")
        runner.cascade_images = BatchSource(faithful, c.batch_size, info.num_workers,
                                            pin=runtime.device.type == "cuda")
    elif c.sanity not in ("", "none"):
        raise OverfocusError(f"--sanity {c.sanity!r}: use cascade (the cascading randomisation test on the last "
                             "analysed epoch) or leave it out")
    return runner


def faithful_subset(analysed, n: int):
    """The faithfulness images: `n` evenly spaced over the analysed ones (None for n = 0)."""
    if n < 0:
        raise OverfocusError(f"--faithfulness-images {n}: use 0 (no faithfulness metrics) or more")
    if n == 0 or len(analysed) == 0:
        return None
    chosen = evenly_spaced(analysed, n)
    return chosen if isinstance(chosen, Subset) else Subset(chosen, range(len(chosen)))


def subset_ids(subset) -> Tuple[str, ...]:
    """The image ids of a Subset, read cheaply (no image decoded)."""
    return tuple(subset.image_id(i) for i in range(len(subset)))


def initial_model(source: RunSource, model: torch.nn.Module) -> Optional[torch.nn.Module]:
    """A second model holding the run's epoch-0 (initial) weights, for `sanity_init`: a copy of the
    call's model (a run source may hand out one model object only); None (and the metric not
    computed) when the run has no epoch 0 or it cannot be loaded."""
    import copy


    if 0 not in source.epochs():
        return None
    initial = copy.deepcopy(model)
    try:
        source.load_into(initial, 0)
        check_finite_weights(initial)
    except OverfocusError as exc:
        print(f"overfocus analyze: sanity_init not computed: epoch 0 does not load ({exc})", file=sys.stderr)
        return None
    return initial.eval()


def place_model(model: torch.nn.Module, layer: str, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The one model object of a call (checkpoints are loaded into it) on its device; the layer is checked."""
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    get_module(model, layer)
    return model


def layer_reshape(model: torch.nn.Module, layer: str, image_size: int, device: torch.device) -> str:
    """How the layer's output becomes a map (`models.tokens`), for analysis.json and the CLI's line;
    "" where the layer gives no map (the layer methods then say why)."""
    try:
        return layer_layout(model, layer, torch.zeros(1, 3, image_size, image_size, device=device)).describe()
    except OverfocusError:
        return ""


def check_layer_size(model: torch.nn.Module, layer: str, image_size: int, device: torch.device, explicit: bool,
                     show: bool) -> None:
    """A layer below 4 x 4 at this image size gives near-constant maps: one line on stderr naming a
    larger layer; a 1 x 1 layer (every map constant) is refused unless the caller named it."""
    images = torch.zeros(1, 3, image_size, image_size, device=device)
    note = small_layer_note(model, layer, images)
    if note is None:
        return
    h, w = layer_side(model, layer, images)
    if h * w == 1 and not explicit:
        raise OverfocusError(f"{note} (or {option('layer', repr(layer))} to analyse it anyway)")
    if show:
        print(f"overfocus analyze: warning: {note}", file=sys.stderr)


@dataclass(frozen=True)
class _Sources:
    """BatchSources of this process: all of a dataset, or its part's contiguous share of the batches."""

    runtime: Runtime
    batch_size: int
    num_workers: int

    def of(self, dataset) -> BatchSource:
        if self.runtime.part is not None:
            span = batch_span(len(dataset), self.batch_size, *self.runtime.part)
            dataset = Subset(dataset, range(*span))
        return BatchSource(dataset, self.batch_size, self.num_workers, pin=self.runtime.device.type == "cuda")


@dataclass
class Plan:
    """What rank 0 decided before the loop (the same on every rank) and what the loop did."""

    state: Dict[str, Any]
    done: set
    todo: List[int]
    ready: Dict[int, int]  # epoch -> world size of a complete set of parts already on disk
    skipped: List[Dict[str, Any]]
    computed: List[int] = field(default_factory=list)
    identities: Dict[int, Any] = field(default_factory=dict)  # epoch -> its checkpoint, as it was read

    def record(self, folder: Path, epoch: int, reason: Optional[str]) -> None:
        """Note an epoch's outcome in analysis.json (after its files are durable)."""
        if reason:
            self.skipped.append(_skip(epoch, reason))
        else:
            self.computed.append(epoch)
            self.done.add(epoch)
        self.state = update_state(folder, self.state, self.done, self.skipped, self.computed, self.identities)



class Runner:
    """One analyze call: the plan, the loop over checkpoints (the parts of a sharded one: parts.py), analysis.json."""

    def __init__(self, source: RunSource, runtime: Runtime, settings: Settings, data: AnalysisData,
                 evaluator: EpochEvaluator, batch_size: int, show_progress: bool):
        self.source, self.info, self.rt, self.settings, self.data = source, source.info, runtime, settings, data
        self.evaluator, self.batch_size, self.show = evaluator, batch_size, show_progress
        self.written_rows: List[Dict[str, Any]] = []
        self.cascade_images: Optional[BatchSource] = None  # set by prepare for --sanity cascade
        self.parts = EpochParts(source, settings, data, evaluator, batch_size, self._write_epoch)

    # -- the loop --
    def execute(self, selection: Tuple[List[int], List[int]], folder: Path, force: bool) -> AnalysisResult:
        """Analyse the selected epochs into `folder`; the result every rank returns.

        Rank 0 holds the folder's lock for its whole job (the other ranks act on its plan only);
        --shard processes hold it shared (see `lock.py`)."""
        lock = AnalysisLock(folder, shared=self.rt.shard is not None)
        try:
            if self.rt.shard is not None:
                lock.acquire()
                return self._execute_shard(selection, folder, force)
            plan = self._on_main(lambda: self._plan(selection, folder, force, lock))
            for epoch in progress(plan.todo, self.show, desc="checkpoints"):
                if self.rt.dist.is_main:  # before it is read: a file rewritten meanwhile is found next time
                    plan.identities[epoch] = checkpoint_identity(self.source.checkpoint(epoch))
                reason = self._epoch(folder, epoch, plan)
                if self.rt.dist.is_main:
                    plan.record(folder, epoch, reason)
                    if self.show and not reason:  # one plain line per checkpoint in a log
                        epoch_line(epoch, prefix="analyze", **headline_means(self.written_rows, self.settings))
            if self.rt.part is not None:
                self.parts.report_reused(self.rt.part)
            return self._on_main(lambda: self._finish(selection[0], folder, force, plan))
        finally:
            lock.release()

    def _plan(self, selection: Tuple[List[int], List[int]], folder: Path, force: bool, lock: AnalysisLock) -> Plan:
        """Rank 0: the lock, analysis.json, the probe images, stale parts removed, the epochs to do."""
        lock.acquire()  # before anything in the folder is read: a running call may be changing it
        selected, missing = selection
        self.source.begin(force)  # a foreign folder's run.json first: it refuses another model
        clean_stale_temps(folder, recursive=True)  # what a killed analyze left (the lock is ours)
        clean_stale_temps(self.source.out_root)
        state = prepare_folder(folder, self.settings, self.data.classes, force, self.source.checkpoint)
        known = set(self.source.epochs())  # forget skips of epochs the run does not have
        state["skipped"] = [s for s in state.get("skipped", []) if s["epoch"] in known]
        done = set(state["epochs_done"]) if not force else set(state["epochs_done"]) - set(selected)
        store.remove_parts(folder, done | (set(selected) if force else set()))  # parts of old work
        self._write_probe_images(folder, rewrite=force or not store.intact_file(store.probe_images_path(folder)))
        self._write_faithfulness_ids(folder)
        skipped = [_skip(e, f"no checkpoint {self.source.checkpoint(e)}") for e in missing]
        todo = [e for e in selected if e not in done]
        ready = {e: w for e in todo if (w := self.parts.complete_world(folder, e))}
        return Plan(state, done, todo, ready, skipped)

    def _finish(self, selected: List[int], folder: Path, force: bool, plan: Plan) -> AnalysisResult:
        """Rank 0: the final analysis.json and summary.csv, and the result every rank returns."""
        state = update_state(folder, plan.state, plan.done, plan.skipped, plan.computed, plan.identities)
        store.remove_parts(folder, [])  # every rank is done: an emptied parts/ folder goes
        self._fill_history(state["epochs_done"])
        collector = OnsetCollector()
        moved = update_trajectory(folder, state["epochs_done"], plan.computed)  # drift, flips
        rows = rebuild_summary(folder, state["epochs_done"], bool(plan.computed) or force or moved, self.show,
                               collector.add)
        update_onset(folder, state["epochs_done"], run_gaps(RunDir(self.source.out_root)), collector)
        if self.cascade_images is not None and state["epochs_done"]:
            self._cascade(folder, max(state["epochs_done"]))
        if plan.todo and not plan.computed and not (set(state["epochs_done"]) & set(selected)):
            raise OverfocusError(f"none of the selected checkpoints of {self.source.root} could be analysed "
                                 f"({plan.skipped[0]['reason']}); see {folder / 'analysis.json'}")
        return AnalysisResult(rows, plan.computed, state["skipped"], state["epochs_done"], folder)

    def _cascade(self, folder: Path, epoch: int) -> None:
        """Rank 0: the cascading randomisation test of `epoch` (cascade.py) -> sanity_cascade.json."""
        model = self.evaluator.load(self.source, epoch)
        s, info = self.settings, self.info
        batches = []
        for batch, _ in self.cascade_images:
            batch = batch.to(self.rt.device)
            targets = batch.labels
            if s.target == "predicted":
                with torch.no_grad():
                    targets = model(normalize(batch.images, info.mean, info.std)).argmax(1)
            batches.append((batch.images, targets))
        steps = len(randomisable_layers(model))
        bar = progress(range(steps), self.show, desc=f"cascading randomisation (epoch {epoch})")
        ticks = iter(bar)
        with attribution_mode(model):
            curve = cascade(model, self.evaluator.initial_model(), batches, methods=s.methods, layer=s.layer,
                            mean=info.mean, std=info.std, method_args=s.method_args,
                            on_step=lambda _: next(ticks, None))
        atomic_write_json(folder / CASCADE_FILE, {"epoch": epoch, "images": sum(len(b[0]) for b in batches),
                                                  **json_safe(curve)})

    def _fill_history(self, epochs: List[int]) -> None:
        """Rank 0: the train/test accuracy of analysed checkpoints that the run does not record
        itself (a foreign folder without its training's log); nothing for our runs."""
        model = self.evaluator.model
        for epoch in progress(self.source.history_missing(epochs), self.show, desc="train/test accuracy"):
            try:
                self.source.load_into(model, epoch)
            except OverfocusError:
                continue  # reported when the epoch was skipped
            self.source.record_history(epoch, model, self.rt.device)

    def _epoch(self, folder: Path, epoch: int, plan: Plan) -> Optional[str]:
        """One epoch on every rank; the reason it was skipped (meaningful on rank 0), or None."""
        main = self.rt.dist.is_main
        if epoch in plan.ready:  # a complete set of parts is on disk: only the merge is left
            return self.parts.merge(folder, epoch, plan.ready[epoch]) if main else None
        if self.rt.part is None:
            return self._one_epoch(folder, epoch)
        rank, world = self.rt.part
        reasons = gather_objects(self.parts.write(folder, epoch, rank, world), self.rt.dist)
        if not main:
            return None  # on to the next epoch while rank 0 merges this one
        failed = next((r for r in reasons if r), None)
        if failed:
            store.remove_parts(folder, [epoch])
            return failed
        return self.parts.merge(folder, epoch, world)

    def _execute_shard(self, selection: Tuple[List[int], List[int]], folder: Path, force: bool) -> AnalysisResult:
        """--shard R/W: this share's parts of the epochs not done yet; no shared file is written."""
        if force:
            raise OverfocusError(f"{option('shard', 'R/W')} cannot be combined with {option('force')}: recompute "
                                 f"without {option('shard', 'R/W')}, or give the shards a fresh {option('out', 'DIR')}")
        existing = store.read_analysis_json(folder)
        if existing is not None:
            refuse_mismatch(folder, existing, fresh_state(self.settings, self.data.classes))
        done = set(existing.get("epochs_done", [])) & set(store.record_epochs(folder)) if existing else set()
        selected, missing = selection
        skipped = [_skip(e, f"no checkpoint {self.source.checkpoint(e)}") for e in missing]
        computed = []
        for epoch in progress([e for e in selected if e not in done], self.show, desc="checkpoints"):
            reason = self.parts.write(folder, epoch, *self.rt.shard)
            (skipped.append(_skip(epoch, reason)) if reason else computed.append(epoch))
        self.parts.report_reused(self.rt.part)
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
    def _one_epoch(self, folder: Path, epoch: int) -> Optional[str]:
        """Analyse one checkpoint and write its files; the reason it was skipped, or None."""
        try:
            self.evaluator.load(self.source, epoch)
        except OverfocusError as exc:
            return str(exc)
        try:
            out = self.evaluator.evaluate(epoch, probe_positions=None)
        except NonFiniteModel as exc:  # diverged: skipped like a corrupt checkpoint, never measured
            return str(exc)
        self._write_epoch(folder, epoch, out.rows(), self.evaluator.probe_arrays(epoch, out.probe), out.small_arrays())
        store.remove_parts(folder, [epoch])  # an unfinished sharded attempt at it is obsolete now
        return None

    def _write_epoch(self, folder: Path, epoch: int, rows: List[Dict[str, Any]], probe: Dict[str, Any],
                     small: Dict[str, Any]) -> None:
        self.written_rows = rows  # for this epoch's progress line
        store.write_npz(store.probe_epoch_path(folder, epoch), **probe)
        store.write_npz(store.small_maps_path(folder, epoch), **small)
        store.write_csv(store.records_path(folder, epoch), rows, store.RECORD_COLUMNS, ".9g")  # last: "done"

    def _write_faithfulness_ids(self, folder: Path) -> None:
        """faithfulness.json: which images the faithfulness and sanity metrics were computed on."""
        s = self.settings
        if not s.faithful_metrics:
            return
        content = {"images": len(self.data.faithful_ids), "image_ids": list(self.data.faithful_ids),
                   "metrics": list(s.faithful_metrics), "steps": s.faithfulness_steps,
                   "baseline": s.faithfulness_baseline, "split": s.split,
                   "chosen": "evenly spaced over the analysed images"}
        if store.read_faithfulness(folder) != content:  # a second call with the same settings writes nothing
            store.write_faithfulness(folder, content)

    # -- the probe set --
    def _write_probe_images(self, folder: Path, rewrite: bool) -> None:
        if rewrite:
            store.write_npz(store.probe_images_path(folder), **probe_arrays(self.data.probe_batch, self.data.classes))


HEADLINE_METRICS = ("area_ratio", "hit", "pointing_game", "energy_pg")


def headline_means(rows: List[Dict[str, Any]], settings: Settings) -> Dict[str, float]:
    """Accuracy and the main map metrics of the first method, averaged over one epoch's records
    (NaN left out): what analyze's per-epoch line shows.

    Example:
        >>> from types import SimpleNamespace
        >>> rows = [{"method": "model", "metric": "correct", "image_id": "a", "value": 1.0},
        ...         {"method": "grad_cam", "metric": "area_ratio", "image_id": "a", "value": 0.25}]
        >>> headline_means(rows, SimpleNamespace(methods=("grad_cam",)))
        {'accuracy': 1.0, 'grad_cam.area_ratio': 0.25}
    """
    wanted = {(store.MODEL_METHOD, "correct"): "accuracy"}
    wanted.update({(settings.methods[0], m): f"{settings.methods[0]}.{m}" for m in HEADLINE_METRICS})
    sums: Dict[str, List[float]] = {}
    for r in rows:
        name = wanted.get((r["method"], r["metric"]))
        if name and r["image_id"] != store.ALL_IMAGES and r["value"] == r["value"]:
            sums.setdefault(name, []).append(float(r["value"]))
    return {name: sum(v) / len(v) for name in wanted.values() if (v := sums.get(name))}


def run_gaps(run: RunDir) -> Dict[int, float]:
    """epoch -> generalization gap of the run's metrics.jsonl (empty without one)."""
    return {int(r["epoch"]): float(r["gap"]) for r in run.read_metrics()
            if isinstance(r.get("epoch"), int) and isinstance(r.get("gap"), (int, float))}


def _skip(epoch: int, reason: str) -> Dict[str, Any]:
    """A skipped epoch: one line on stderr now, an entry of analysis.json `skipped`."""
    print(f"overfocus analyze: skipped epoch {epoch}: {reason}", file=sys.stderr)
    return {"epoch": epoch, "reason": reason}
