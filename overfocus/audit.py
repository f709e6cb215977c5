"""`overfocus audit`: one checkpoint -> metrics, findings (ok / warning / problem) and CI gates.

The audit evaluates a model on a test split (at most `limit` images, evenly spaced so that a sorted
folder does not yield a single class), computes Grad-CAM and SGDrop maps for the ground-truth class,
the map metrics of docs/metrics (area ratio, hit ratio, pointing game, energy pointing game,
harmonization where human maps are given), the neuron coverage, and turns them into findings with
a level and one sentence each. Thresholds are in THRESHOLDS (documented in docs/audit.md) and can
be overridden. The report files are written by `write_outputs` (JSON here, HTML in
overfocus.render.report).

Example:
    >>> result = audit(AuditOptions("runs/demo"))          # doctest: +SKIP
    >>> [f["message"] for f in result.report["findings"]]   # doctest: +SKIP
    ['accuracy 87% (chance 17%)', 'attention covers 4% of the image on average', ...]
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .analysis.core import NonFiniteModel, check_finite_weights, evaluate_batch
from .analysis.source import evenly_spaced
from .analysis.summary import per_class_pointing, summarize_values
from .attribution.methods import ATTRIBUTIONS, DEFAULT_METHODS, method_info
from .errors import OverfocusError
from .fileio import atomic_write_json
from .loading import LoadedModel, ModelOptions, auto_layer, load_model
from .metrics.coverage import COVERAGE_KEYS
from .metrics.registry import METRICS, NONDEGENERATE, degenerate_as_zero, metric_info, reported_metrics
from .rundir import RunDir
from .registry import did_you_mean

REPORT_SCHEMA = 1
RENAMED = {"hit": "hit_ratio"}  # per-image `hit` averages to the hit ratio


@dataclass(frozen=True)
class Threshold:
    default: float
    doc: str


THRESHOLDS: Dict[str, Threshold] = {
    "chance_factor": Threshold(1.5, "accuracy below chance x this factor is a problem"),
    "accuracy_warning": Threshold(0.5, "accuracy below this is a warning"),
    "area_problem": Threshold(0.03, "mean area ratio below this is a problem (overfocused)"),
    "area_warning": Threshold(0.08, "mean area ratio below this is a warning"),
    "area_diffuse": Threshold(0.6, "mean area ratio above this is a warning (diffuse, uninformative)"),
    "outside_problem": Threshold(0.5, "localisation: share of images with energy pointing game < 0.5 above "
                                      "this, with the peak off the object too, is a problem"),
    "outside_warning": Threshold(0.25, "localisation: share of images with energy pointing game < 0.5 above "
                                       "this is a warning"),
    "pointing_warning": Threshold(0.5, "localisation: pointing game (peak on the object) below this is a warning; "
                                       "with most attention outside the box too, a problem"),
    "degenerate_warning": Threshold(0.1, "share of degenerate maps (all zero or non-finite) above this is a warning"),
    "narrowing_warning": Threshold(0.2, "area ratio (non-degenerate maps) down by more than this share since its "
                                        "peak epoch is a warning (run directories analysed by `overfocus analyze`)"),
    "harmonization_warning": Threshold(0.2, "harmonization score below this is a warning"),
    "latent_coverage_warning": Threshold(0.1, "cumulative latent-layer neuron coverage below this is a warning"),
    "gap_warning": Threshold(0.1, "generalization gap (run directories) above this is a warning"),
    "gap_problem": Threshold(0.25, "generalization gap (run directories) above this is a problem"),
}


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
    target_class: str = "gt"
    device: str = "cpu"
    examples: int = 6
    progress: bool = True
    skip_bad: bool = False  # skip unreadable images with a warning each


@dataclass
class Source:
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


@dataclass
class Example:
    """One audited image kept for the report (the best or worst by the example score)."""

    image: np.ndarray  # H x W x 3 uint8, as the model saw it
    maps: Dict[str, np.ndarray]  # method -> H x W float32 in [0, 1]
    boxes: np.ndarray  # N x 4
    label: int
    pred: int
    conf: float
    image_id: str
    score: float


@dataclass
class AuditResult:
    report: Dict[str, Any]
    best: List[Example]
    worst: List[Example]
    metrics_rows: List[Dict[str, Any]]
    summary_rows: List[Dict[str, Any]]
    classes: List[str]


# ---- inputs -------------------------------------------------------------------------------------------
def resolve_source(target: str | Path) -> Source:
    """A run directory -> its latest checkpoint; a checkpoint inside RUN/checkpoints -> with its run."""
    path = Path(target)
    if path.is_dir():
        from .analysis.runsource import listed_checkpoint

        run = RunDir(path)
        manifest = run.read_manifest()
        foreign = listed_checkpoint(path, manifest)  # the output folder of `analyze FOLDER`
        return Source(foreign or run.checkpoint_path(_last_epoch(run)), run, manifest)
    if not path.is_file():
        raise OverfocusError(f"{path} does not exist: pass a checkpoint file or a run directory")
    run = RunDir(path.resolve().parent.parent)
    if path.resolve().parent.name == "checkpoints" and run.exists():
        return Source(path, run, run.read_manifest())
    return Source(path)


def _last_epoch(run: RunDir) -> int:
    latest = run.latest_epoch()
    epochs = run.checkpoint_epochs()
    if latest is None and not epochs:
        raise OverfocusError(f"run {run.root} has no checkpoint yet: train it first or pass a checkpoint file")
    return latest if latest is not None else epochs[-1]


def resolve_preprocessing(opts: AuditOptions, source: Source) -> Preprocessing:
    """Options win; else the run's recorded preprocessing; else 64 px and ImageNet mean/std (assumed)."""
    from .config import IMAGENET_MEAN, IMAGENET_STD

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
    skip_bad = opts.skip_bad or bool(recorded.get("skip_bad", False))
    return Preprocessing(data, int(values["image_size"]), mean, std, origin, assumed, skip_bad)


def model_options(opts: AuditOptions, source: Source) -> ModelOptions:
    """The run's model settings (run.json) fill what the user did not give."""
    if not source.manifest:
        return opts.model
    cfg = source.manifest.get("config", {}).get("model", {})
    m = opts.model
    given = m.model or m.arch
    return ModelOptions(model=m.model or (None if m.arch else cfg.get("name") or None),
                        arch=m.arch or (None if m.model else cfg.get("arch")),
                        layer=m.layer or (None if given else source.manifest.get("gradcam_layer")),
                        num_classes=m.num_classes or source.manifest.get("num_classes"),
                        width=m.width if given else float(cfg.get("width", m.width)),
                        small_input=m.small_input if given else bool(cfg.get("small_input", m.small_input)),
                        batch_norm=m.batch_norm if given else cfg.get("batch_norm"),
                        trust_pickle=m.trust_pickle, strip_prefix=m.strip_prefix)


def open_audit_data(prep: Preprocessing, limit: int, whole_folder: bool = False) -> Tuple[Any, str]:
    """(the images to audit, which split): at most `limit` images evenly spaced (0 = all) over the
    test split, or, with `whole_folder`, over every image of data that has no split of its own
    (a folder of test images: its 20% share would silently leave most of them out)."""
    from .data import open_dataset

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
    from .data import open_dataset

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
            raise OverfocusError(f"{what} {item!r} needs the form name=number, e.g. {what} accuracy=0.8") from None
        if not eq or not name.strip():
            raise OverfocusError(f"{what} {item!r} needs the form name=number, e.g. {what} accuracy=0.8")
    return out


def gate_names(methods: Sequence[str]) -> List[str]:
    """Every metric name a gate may use: model metrics, map metrics (primary method) and method.metric."""
    per_map = reported_metrics("map", "report")
    return reported_metrics("model", "report") + per_map + [f"{m}.{n}" for m in methods for n in per_map]


def check_options(opts: AuditOptions) -> Dict[str, float]:
    """Validate gates and thresholds before any work; return the resolved thresholds."""
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


# ---- the computation ------------------------------------------------------------------------------------
@dataclass
class Context:
    """What every batch needs: model, layers, preprocessing, methods and switches."""

    model: nn.Module
    device: torch.device
    prep: Preprocessing
    methods: Tuple[str, ...]
    layer: Optional[str]
    has_boxes: bool
    target_class: str
    human: Optional[Path]
    score_metric: str
    higher_is_better: bool


class Accumulator:
    """Per-image numbers of all batches plus the best and worst examples."""

    def __init__(self, methods: Sequence[str], keep: int, higher_is_better: bool):
        self.labels: List[int] = []
        self.preds: List[int] = []
        self.conf: List[float] = []
        self.values: Dict[str, Dict[str, List[float]]] = {m: {} for m in methods}
        self.keep, self.higher = keep, higher_is_better
        self.best: List[Example] = []
        self.worst: List[Example] = []
        self.human_found = 0
        self.outputs = 0  # the model's number of outputs (logits per image)

    def add_values(self, method: str, name: str, values: torch.Tensor) -> None:
        self.values[method].setdefault(name, []).extend(values.detach().float().cpu().tolist())

    def offer(self, examples: List[Example]) -> None:
        """Keep the `keep` best and worst examples (NaN scores never compete)."""
        pool = [e for e in examples if not math.isnan(e.score)]
        sign = -1.0 if self.higher else 1.0
        correct = [e for e in pool if e.pred == e.label]  # a "best" example is never a wrong answer
        self.best = sorted(self.best + correct, key=lambda e: sign * e.score)[: self.keep]
        self.worst = sorted(self.worst + pool, key=lambda e: -sign * e.score)[: self.keep]

    def per_image(self, method: str, name: str) -> np.ndarray:
        return np.asarray(self.values[method].get(name, []), dtype=np.float64)


def audit_batch(ctx: Context, batch, acc: Accumulator, coverage) -> None:
    """Evaluate the batch (the evaluation `analyze` makes: a no-grad forward with the coverage hooks,
    then the maps and their metrics), record it, and offer the batch's examples."""
    from .data.human import load_maps_by_id

    batch = batch.to(ctx.device)
    methods = ctx.methods if ctx.layer is not None else ()
    human = None
    if ctx.human is not None and methods:
        human, found = load_maps_by_id(ctx.human, batch.image_ids, batch.images.shape[-1])
        human, acc.human_found = human.to(ctx.device), acc.human_found + found
    result = evaluate_batch(ctx.model, batch.images, batch.labels, batch.boxes if ctx.has_boxes else None,
                            mean=ctx.prep.mean, std=ctx.prep.std, methods=methods, layer=ctx.layer,
                            metric_names=METRICS.registered(), target=ctx.target_class, coverage=coverage,
                            shared_forward=False, human=human)
    acc.outputs = int(result.logits.shape[1])
    conf, preds = result.confidence_and_prediction()
    acc.labels += batch.labels.tolist()
    acc.preds += preds.tolist()
    acc.conf += conf.tolist()
    if methods:
        normed = measure_maps(result, acc)
        acc.offer(make_examples(ctx, batch, normed, preds, conf, acc))


def measure_maps(result, acc: Accumulator) -> Dict[str, torch.Tensor]:
    """A batch's map metrics (and the all-zero flags) per method into the accumulator; returns the
    per-sample normalised maps."""
    from .attribution import normalize_maps

    normed_all = {}
    for method, table in result.metrics.items():
        for name, values in table.items():
            acc.add_values(method, name, values)
        acc.add_values(method, "degenerate", result.degenerate[method].float().reshape(-1))
        normed_all[method] = normalize_maps(result.maps[method])[0]
    return normed_all


def make_examples(ctx: Context, batch, normed: Dict[str, torch.Tensor], preds, conf, acc: Accumulator) -> List[Example]:
    """Example candidates of a batch, scored by the primary method's score metric."""
    n, primary = len(batch), ctx.methods[0]
    scores = acc.per_image(primary, ctx.score_metric)[-n:] if ctx.score_metric in acc.values[primary] \
        else np.full(n, np.nan)
    # an all-zero map has no localisation to rank (its score is 0 by convention): the finding reports it
    scores = np.where(acc.per_image(primary, "degenerate")[-n:] > 0, np.nan, scores)
    images = (batch.images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Example(images[i], {m: normed[m][i].float().cpu().numpy() for m in ctx.methods},
                    batch.boxes[i].cpu().numpy().reshape(-1, 4), int(batch.labels[i]), int(preds[i]),
                    float(conf[i]), batch.image_ids[i], float(scores[i])) for i in range(n)]


# ---- aggregation ----------------------------------------------------------------------------------------
def summarize(values: np.ndarray) -> Dict[str, Any]:
    """The report's form of `summarize_values` (mean, 95% bootstrap interval, count of the non-NaN
    values): `value`, and None where there are no values."""
    s = summarize_values(values)
    if s["n"] == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    return {"value": s["mean"], "ci_low": s["ci_low"], "ci_high": s["ci_high"], "n": s["n"]}


def exact(value: Optional[float], n: int) -> Dict[str, Any]:
    """A number without an interval (cumulative coverage, per-class averages)."""
    ok = value is not None and not math.isnan(value)
    return {"value": float(value) if ok else None, "ci_low": None, "ci_high": None, "n": n if ok else 0}


def collect_metrics(acc: Accumulator, coverage, methods: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """All headline numbers: model metrics by name, map metrics as `method.metric`."""
    labels, preds = np.asarray(acc.labels), np.asarray(acc.preds)
    out = {"accuracy": summarize((labels == preds).astype(np.float64)),
           "confidence": summarize(np.asarray(acc.conf, dtype=np.float64))}
    out.update(coverage_metrics(coverage, len(labels)))
    for method in methods:
        for name, entry in method_metrics(acc, method, labels).items():
            out[f"{method}.{name}"] = entry
    return out


def coverage_metrics(coverage, n: int) -> Dict[str, Dict[str, Any]]:
    if coverage is None:
        return {}
    cumulative = coverage.cumulative()
    per_image = coverage.per_image()
    out = {}
    for key in COVERAGE_KEYS:  # channel level and unit level
        out[key] = exact(cumulative.get(key), n)
        out[f"{key}_per_image"] = summarize(per_image[key].detach().cpu().double().numpy())
    return out


def method_metrics(acc: Accumulator, method: str, labels: np.ndarray) -> Dict[str, Dict[str, Any]]:
    """A method's report entries: each metric over all images and, for those scoring a degenerate
    map 0, over the non-degenerate maps only (`<name>_nondegenerate`), as analyze's summary."""
    out = {}
    kept = acc.per_image(method, "degenerate") == 0
    for name in acc.values[method]:
        values = acc.per_image(method, name)
        out[RENAMED.get(name, name)] = summarize(values)
        if name in degenerate_as_zero():
            out[RENAMED.get(name, name) + NONDEGENERATE] = summarize(values[kept])
    if "pointing_game" in acc.values[method]:
        hits = acc.per_image(method, "pointing_game")
        out["pointing_game_per_class"] = exact(*per_class_pointing(hits, labels))
        out["pointing_game_per_class" + NONDEGENERATE] = exact(*per_class_pointing(hits[kept], labels[kept]))
    if "energy_pg" in acc.values[method]:
        # an all-zero map has energy 0 by convention; it points nowhere, so it is not counted as "outside"
        energy = acc.per_image(method, "energy_pg")
        skip = np.isnan(energy) | (acc.per_image(method, "degenerate") > 0)
        out["outside_box"] = summarize(np.where(skip, np.nan, (energy < 0.5).astype(np.float64)))
    return out


# ---- findings -------------------------------------------------------------------------------------------
LEVELS = ("problem", "warning", "ok")


def pct(value: float) -> str:
    """A share as a percentage, with one decimal below 10% so that 0.4% does not read as 0%.

    Example:
        >>> pct(0.004), pct(0.61), pct(0.0)
        ('0.4%', '61%', '0%')
    """
    return f"{value * 100:.1f}%" if 0 < abs(value) < 0.1 else f"{value * 100:.0f}%"


def finding(fid: str, level: str, message: str, metric: Optional[str] = None,
            value: Optional[float] = None) -> Dict[str, Any]:
    assert level in LEVELS
    return {"id": fid, "level": level, "message": message, "metric": metric, "value": value}


def graded(value: float, problem: bool, warning: bool) -> str:
    return "problem" if problem else "warning" if warning else "ok"


def value_of(metrics: Dict[str, Dict[str, Any]], name: str, primary: str = DEFAULT_METHODS[0]) -> Optional[float]:
    """A metric's value; a bare map metric name (`area_ratio`) means the primary method's."""
    entry = metrics.get(name) if name in metrics or "." in name else metrics.get(f"{primary}.{name}")
    return (entry or {}).get("value")


def accuracy_finding(metrics, t, n_classes: int) -> List[Dict[str, Any]]:
    acc = value_of(metrics, "accuracy")
    chance = 1.0 / max(n_classes, 1)
    if acc is None:
        return []
    level = graded(acc, acc < chance * t["chance_factor"], acc < t["accuracy_warning"])
    text = {"problem": f"accuracy {pct(acc)} is near chance ({pct(chance)})",
            "warning": f"accuracy {pct(acc)} is low (chance {pct(chance)})",
            "ok": f"accuracy {pct(acc)} (chance {pct(chance)})"}[level]
    return [finding("accuracy", level, text, "accuracy", acc)]


def area_finding(metrics, t, title: str) -> List[Dict[str, Any]]:
    area = value_of(metrics, "area_ratio")
    if area is None:
        return []
    level = graded(area, area < t["area_problem"], area < t["area_warning"] or area > t["area_diffuse"])
    text = f"{title} attention covers {pct(area)} of the image on average"
    if level != "ok":
        text += " (diffuse: it marks most of the image)" if area > t["area_diffuse"] else " (overfocused)"
    return [finding("area_ratio", level, text, "area_ratio", area)]


def box_findings(metrics, t, title: str) -> List[Dict[str, Any]]:
    """ONE localisation finding from the box metrics, with its rule stated, so that no two sentences
    can contradict each other (a peak on the object with the map wider than the box is both).

    problem: the peak is off the object (pointing game < pointing_warning) AND most attention lies
    outside the box in more than outside_problem of the images; warning: either one of the two
    (or outside_box above outside_warning); ok otherwise. The hit ratio is reported, not graded:
    a map wider or tighter than the box misses IoU >= 0.5 while pointing at the object.
    """
    pg, outside, hit = (value_of(metrics, name) for name in ("pointing_game", "outside_box", "hit_ratio"))
    if pg is None and outside is None:
        return []
    peak_off = pg is not None and pg < t["pointing_warning"]
    mass_out = outside is not None and outside > t["outside_problem"]
    level = graded(0.0, peak_off and mass_out, peak_off or mass_out or (outside or 0.0) > t["outside_warning"])
    parts = []
    if pg is not None:
        parts.append(f"peak on the object in {pct(pg)} of images")
    if outside is not None:
        parts.append(f"most attention outside the box in {pct(outside)}")
    if hit is not None:
        parts.append(f"main region matches the box (IoU >= 0.5) in {pct(hit)}")
    rule = (f"problem: peak on the object < {pct(t['pointing_warning'])} and mostly outside > "
            f"{pct(t['outside_problem'])}; warning: either, or mostly outside > {pct(t['outside_warning'])}")
    metric, value = ("pointing_game", pg) if pg is not None else ("outside_box", outside)
    return [finding("localisation", level, f"{title} localisation: {', '.join(parts)} ({rule})", metric, value)]


def map_quality_findings(metrics, t, title: str, layer: Optional[str]) -> List[Dict[str, Any]]:
    out = []
    dead = value_of(metrics, "degenerate")
    if dead is not None and dead > t["degenerate_warning"]:
        out.append(finding("degenerate", "warning", f"{title} is empty (all zero or non-finite) for {pct(dead)} of "
                           f"images (no positive evidence at layer {layer}); the thresholded metrics count them as "
                           "0, their `_nondegenerate` variants leave them out; try another --layer",
                           "degenerate", dead))
    harm = value_of(metrics, "harmonization")
    if harm is not None:
        level = graded(harm, False, harm < t["harmonization_warning"])
        out.append(finding("harmonization", level, f"{title} agrees {'weakly ' if level != 'ok' else ''}with "
                           f"the human maps (harmonization {harm:.2f})", "harmonization", harm))
    return out


def coverage_finding(metrics, t) -> List[Dict[str, Any]]:
    cov = value_of(metrics, "coverage_latent")
    if cov is None:
        return []
    level = graded(cov, False, cov < t["latent_coverage_warning"])
    text = f"{'only ' if level != 'ok' else ''}{pct(cov)} of the latent layer's neurons fire for any audited image"
    return [finding("coverage_latent", level, text, "coverage_latent", cov)]


def gap_finding(row: Optional[Dict[str, Any]], t) -> List[Dict[str, Any]]:
    gap = (row or {}).get("gap")
    if gap is None:
        return []
    level = graded(gap, gap > t["gap_problem"], gap > t["gap_warning"])
    text = (f"generalization gap {gap * 100:.1f} points at epoch {row.get('epoch')} (train accuracy "
            f"{pct(row.get('train_acc', 0.0))}, test {pct(row.get('test_acc', 0.0))})")
    return [finding("gap", level, text, "gap", gap)]


def onset_finding(onset: Optional[Dict[str, Any]], method: str, t) -> List[Dict[str, Any]]:
    """The run's overfocus onset (RUN/analysis/onset.json of `overfocus analyze`) as a finding:
    how much the area ratio (non-degenerate maps) lost since its peak epoch, and the gap meanwhile."""
    o = ((onset or {}).get("methods") or {}).get(method)
    if not o or o.get("narrowing") is None:
        return []
    if o["last_epoch"] == o["peak_epoch"]:
        return [finding("onset", "ok", f"attention is widest at the last analysed epoch ({o['last_epoch']}): "
                        "no narrowing yet", "narrowing", 0.0)]
    text = f"attention narrowed by {pct(o['narrowing'])} since epoch {o['peak_epoch']}"
    growth = o.get("gap_growth")
    if growth is not None:
        text += f" while the gap {'grew' if growth >= 0 else 'shrank'} by {abs(growth) * 100:.1f} points"
    text += (f" (area ratio of non-degenerate maps {o['peak_area']:.3f} -> {o['last_area']:.3f} "
             f"at epoch {o['last_epoch']})")
    level = "warning" if o["narrowing"] > t["narrowing_warning"] else "ok"
    return [finding("onset", level, text, "narrowing", o["narrowing"])]


def make_findings(metrics, thresholds, facts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every finding, problems first; `facts` carries what is not a metric (classes, notes, ...)."""
    title = ATTRIBUTIONS.get(facts["method"]).title if facts["method"] in ATTRIBUTIONS else facts["method"]
    prefix = facts["method"] + "."
    metrics = {**metrics, **{k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}}
    found = accuracy_finding(metrics, thresholds, facts["n_classes"])
    found += area_finding(metrics, thresholds, title) + box_findings(metrics, thresholds, title)
    found += map_quality_findings(metrics, thresholds, title, facts.get("layer"))
    found += coverage_finding(metrics, thresholds) + gap_finding(facts.get("history_row"), thresholds)
    found += onset_finding(facts.get("onset"), facts["method"], thresholds)
    found += [finding(f"note_{i}", "warning", text) for i, text in enumerate(facts.get("warnings", []))]
    return sorted(found, key=lambda f: LEVELS.index(f["level"]))


def evaluate_gates(gates: Sequence[Tuple[str, float]], metrics, primary: str) -> List[Dict[str, Any]]:
    """Each `--fail-under name=min` as {metric, min, value, passed}; an uncomputed metric is bad input."""
    out = []
    for name, minimum in gates:
        value = value_of(metrics, name, primary)
        if value is None:
            raise OverfocusError(f"--fail-under {name}: this metric was not computed for this audit "
                                 "(it needs boxes, human maps or attention maps that this input lacks)")
        out.append({"metric": name, "min": minimum, "value": value, "passed": bool(value >= minimum)})
    return out


# ---- the audit ------------------------------------------------------------------------------------------
def audit(opts: AuditOptions) -> AuditResult:
    """Audit one checkpoint (or a run's last one) on the test split; see the module docstring.

    Example:
        >>> result = audit(AuditOptions("runs/demo", limit=64))                 # doctest: +SKIP
        >>> result.report["metrics"]["accuracy"]["value"]                       # doctest: +SKIP
        0.84
    """
    from .attribution import attribution_mode
    from .device import resolve_device

    thresholds = check_options(opts)
    source = resolve_source(opts.target)
    prep = resolve_preprocessing(opts, source)
    loaded = load_model(source.checkpoint, model_options(opts, source))
    with diverged_is_bad_input(source.checkpoint):  # a diverged model would read as extreme overfocusing
        check_finite_weights(loaded.model)
    # a run is audited on its own test split; data given by --data on all of it when it has no split
    dataset, split = open_audit_data(prep, opts.limit, whole_folder=opts.data is not None)
    device = resolve_device(opts.device)
    model = loaded.model.to(device).eval()
    check_input_size(model, dataset, prep, device)
    layer, latent = resolve_layers(loaded, model, dataset, prep, device)
    ctx = make_context(opts, model, device, prep, layer, dataset)
    coverage = make_coverage(model, latent, loaded.notes)
    acc = Accumulator(opts.methods, opts.examples, ctx.higher_is_better)
    start = time.perf_counter()
    with attribution_mode(model), diverged_is_bad_input(source.checkpoint):  # parameters frozen, restored after
        run_batches(ctx, dataset, acc, coverage, opts)
    metrics = collect_metrics(acc, coverage, opts.methods if layer else ())
    facts = {**make_facts(opts, source, prep, loaded, dataset, acc, layer, model), "split": split}
    report = build_report(opts, source, prep, loaded, dataset, layer, latent, thresholds, metrics, facts, acc)
    report["seconds"] = round(time.perf_counter() - start, 3)
    best, worst = split_examples(acc)
    metrics_rows, summary_rows = read_history(source)
    return AuditResult(report, best, worst, metrics_rows, summary_rows, list(dataset.classes))


def first_image(dataset) -> torch.Tensor:
    """The first image that reads (under --skip-bad an unreadable one is None)."""
    for i in range(len(dataset)):
        sample = dataset[i]
        if sample is not None:
            return sample["image"]
    raise OverfocusError("none of the images to audit could be read: check the data (see the warnings above)")


def check_input_size(model: nn.Module, dataset, prep: Preprocessing, device: torch.device) -> None:
    """One forward pass on one image; a model built for another input size fails here with one line.

    A fixed-size classifier (a Linear after a Flatten) raises a shape error deep inside the model;
    that is the user's --image-size, not a bug and not a failed gate.
    """
    from .data import normalize

    sample = normalize(first_image(dataset).unsqueeze(0).to(device), prep.mean, prep.std)
    try:
        with torch.no_grad():
            model(sample)
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not any(word in detail for word in ("shape", "size", "dimension", "mat1")):
            raise
        raise OverfocusError(f"the model does not accept {prep.image_size} px images ({detail}): pass the size "
                             "it was trained at with --image-size N") from None


@contextmanager
def diverged_is_bad_input(checkpoint: Path):
    """A model with NaN/inf weights or logits: one line naming the checkpoint (exit 2), no report."""
    try:
        yield
    except NonFiniteModel as exc:
        raise OverfocusError(f"cannot audit {checkpoint}: {exc}") from None


def resolve_layers(loaded: LoadedModel, model: nn.Module, dataset, prep: Preprocessing,
                   device: torch.device) -> Tuple[Optional[str], Optional[str]]:
    """(attribution layer, latent layer): declared, given, or picked from a forward pass."""
    from .data import normalize
    from .models import get_module

    if not loaded.hookable:
        return None, None
    layer = loaded.layer
    if not layer:
        sample = normalize(first_image(dataset).unsqueeze(0).to(device), prep.mean, prep.std)
        layer = auto_layer(model, sample)
        loaded.notes.append(f"attention layer picked automatically: {layer} (pass --layer to choose another)")
    get_module(model, layer)
    latent = loaded.latent_layer or layer
    get_module(model, latent)
    return layer, latent


def make_context(opts: AuditOptions, model, device, prep, layer, dataset) -> Context:
    has_boxes = bool(getattr(dataset, "has_boxes", False))
    # energy_pg ranks localisation where boxes exist; otherwise the area ratio ranks spread.
    # For both, a lower value is the worse attention map (outside the object / overfocused).
    score = "energy_pg" if has_boxes else "area_ratio"
    return Context(model, device, prep, tuple(opts.methods), layer, has_boxes, opts.target_class,
                   human_root(opts.human), score, True)


def make_coverage(model: nn.Module, latent: Optional[str], notes: List[str]):
    """A NeuronCoverage on the model, or None (with a note) where it has no activation modules."""
    from .metrics import NeuronCoverage

    if not latent:
        return None
    coverage = NeuronCoverage(model, latent_layer=latent, threshold=0.0)
    try:
        with coverage:  # hooks are only placed here: a model with functional ReLUs only has none
            pass
    except OverfocusError as exc:
        notes.append(f"neuron coverage skipped: {exc}")
        return None
    return coverage


def run_batches(ctx: Context, dataset, acc: Accumulator, coverage, opts: AuditOptions) -> None:
    from .data import collate_samples
    from .progress import progress

    loader = torch.utils.data.DataLoader(dataset, batch_size=opts.batch_size, shuffle=False,
                                         collate_fn=collate_samples)
    for batch in progress(loader, opts.progress, desc="audit"):
        audit_batch(ctx, batch, acc, coverage)


def split_examples(acc: Accumulator) -> Tuple[List[Example], List[Example]]:
    """Best and worst examples without overlap: at most half of the scored images each."""
    ids = {e.image_id for e in acc.best} | {e.image_id for e in acc.worst}
    k = min(acc.keep, max(1, len(ids) // 2)) if ids else 0
    best = acc.best[:k]
    taken = {e.image_id for e in best}
    return best, [e for e in acc.worst if e.image_id not in taken][:k]


def make_facts(opts, source, prep, loaded, dataset, acc, layer, model) -> Dict[str, Any]:
    """What findings need besides metrics: classes, layer, history row, and warnings to show."""
    warnings = list(loaded.notes)
    if prep.assumed:
        flags = " and ".join(f"--{name.replace('_', '-')}" for name in prep.assumed)
        warnings.append(f"preprocessing was not fully given: assumed {prep.image_size} px, mean {list(prep.mean)}, "
                        f"std {list(prep.std)}; pass {flags} as the model was trained, or every number may be wrong")
    if not getattr(dataset, "has_boxes", False) and layer:
        warnings.append("localisation was not checked: the data has no object boxes")
    outputs = acc.outputs
    if outputs and outputs != len(dataset.classes):
        warnings.append(f"the model has {outputs} outputs but the data has {len(dataset.classes)} classes: "
                        "accuracy compares class indices")
    if opts.human and acc.human_found == 0:
        warnings.append(f"no human map in {opts.human} matched an image id: name them <image_id>.npy or .png")
    return {"method": opts.methods[0], "n_classes": len(dataset.classes), "layer": layer, "warnings": warnings,
            "history_row": history_row(source, loaded.epoch), "onset": run_onset(source)}


def run_onset(source: Source) -> Optional[Dict[str, Any]]:
    """The onset.json that `overfocus analyze` wrote for the audited run, or None."""
    from .analysis.onset import read_onset

    return read_onset(source.run.analysis) if source.run is not None else None


def history_row(source: Source, epoch: Optional[int]) -> Optional[Dict[str, Any]]:
    """The run's metrics.jsonl line of the audited epoch (the last line when unknown)."""
    if source.run is None:
        return None
    rows = source.run.read_metrics()
    match = [r for r in rows if r.get("epoch") == epoch]
    return (match or rows or [None])[-1]


def build_report(opts, source, prep, loaded, dataset, layer, latent, thresholds, metrics, facts, acc) -> Dict[str, Any]:
    """The JSON-ready report (NaN never appears: missing numbers are null)."""
    from .versions import software_versions

    findings = make_findings(metrics, thresholds, facts)
    gates = evaluate_gates(opts.gates, metrics, opts.methods[0])
    inputs = {"checkpoint": str(source.checkpoint), "sha256": loaded.sha256, "kind": loaded.kind,
              "model": loaded.description, "epoch": loaded.epoch, "outputs": acc.outputs,
              "run_dir": str(source.run.root) if source.run else None, "data": prep.data, "split": facts["split"],
              "images": len(acc.labels), "split_size": len(getattr(dataset, "dataset", dataset)),
              "limit": opts.limit, "classes": list(dataset.classes),
              "has_boxes": bool(getattr(dataset, "has_boxes", False)), "layer": layer, "latent_layer": latent,
              "methods": list(opts.methods) if layer else [], "target": opts.target_class, "human": opts.human}
    return clean_json({
        "schema": REPORT_SCHEMA, "tool": "overfocus audit", "created": datetime.now(timezone.utc).isoformat(),
        "passed": all(g["passed"] for g in gates), "inputs": inputs,
        "preprocessing": {"image_size": prep.image_size, "mean": list(prep.mean), "std": list(prep.std),
                          "source": prep.source, "assumed": prep.assumed},
        "versions": software_versions(), "thresholds": thresholds, "metrics": metrics, "findings": findings,
        "gates": gates, "examples": examples_summary(acc, facts["method"]),
        "method_info": method_info(inputs["methods"]), "metric_info": metric_info(list(metrics)), "history": {
            "epoch": (facts.get("history_row") or {}).get("epoch"), "row": facts.get("history_row")}})


def examples_summary(acc: Accumulator, method: str) -> Dict[str, Any]:
    best, worst = split_examples(acc)
    brief = lambda e: {"image_id": e.image_id, "label": e.label, "pred": e.pred, "score": e.score}  # noqa: E731
    unranked = int(np.nansum(acc.per_image(method, "degenerate"))) if method in acc.values else 0
    return {"method": method, "unranked_all_zero": unranked, "best": [brief(e) for e in best],
            "worst": [brief(e) for e in worst]}


def clean_json(obj: Any) -> Any:
    """Recursively make `obj` strict JSON: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def read_history(source: Source) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """The run's metrics.jsonl rows and, when analysed, its summary.csv rows (numbers parsed)."""
    if source.run is None:
        return [], []
    from .analysis.storage import parse_summary_file

    summary = source.run.analysis / "summary.csv"
    return source.run.read_metrics(), parse_summary_file(summary) if summary.is_file() else []


def default_out(target: str | Path) -> Path:
    """RUN/audit for a run directory, else `<checkpoint dir>/audit-<stem>`."""
    path = Path(target)
    return path / "audit" if path.is_dir() else path.parent / f"audit-{path.stem}"


def write_outputs(result: AuditResult, out: Path) -> Tuple[Path, Path]:
    """Write report.json and the self-contained report.html into `out`; return both paths."""
    from .render.report import write_report_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", result.report)
    return out / "report.json", write_report_html(result, out / "report.html")


def summary_lines(report: Dict[str, Any]) -> List[str]:
    """Human-readable console summary: one line per finding and per gate."""
    inputs = report["inputs"]
    where = ("all images (the data has no train/test split of its own)" if inputs["split"] == "all"
             else f"the {inputs['split']} split")
    lines = [f"audit of {inputs['checkpoint']} (sha256 {inputs['sha256'][:12]}...) on {inputs['images']} images "
             f"of {where}, {inputs.get('split_size', inputs['images'])} in all (--limit {inputs['limit']}), of "
             f"{inputs['data']}"]
    lines += [f"  [{f['level']}] {f['message']}" for f in report["findings"]]
    for g in report["gates"]:
        verdict = "passed" if g["passed"] else "FAILED"
        lines.append(f"  gate {g['metric']} >= {g['min']:g}: {verdict} ({g['value']:.4g})")
    return lines
