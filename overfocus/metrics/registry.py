"""The metric registries: each map metric (METRICS) and every other summarised number
(SUMMARY_METRICS) with its metadata: title, unit, range, direction, needs and kind."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

from ..errors import OverfocusError
from ..registry import Registry
from .batch import MapBatch
from . import faithfulness as faith
from . import sanity
from .concentration import entropy, gini
from .harmonization import harmonization
from .localisation import area_ratio, box_iou, energy_pg, hit, pointing_game


Range = Tuple[Optional[float], Optional[float]]  # (lo, hi); None for an open end


@dataclass(frozen=True)
class MetricInfo:
    """What a reader needs to show a metric: title, unit, range, direction, needs and kind.

    `kind` is "map" for per-image map metrics (and the numbers derived from them), "model" for
    model-level numbers (accuracy, confidence, neuron coverage). `appears_in` says which outputs
    hold it: "summary" (summary.csv of analyze) and/or "report" (report.json of audit), or
    "metrics" (a run's metrics.jsonl: accuracies and gap, described here for `select` and the explorer).
    `zero_when_degenerate`: a degenerate map (all zero or non-finite) scores 0 rather than NaN, so
    the metric is aggregated twice (over all images and over non-degenerate ones, as
    `<name>_nondegenerate`; docs/conventions.md).

    The direction is the toolkit's one sense of "better": wider, better placed, more human-like
    attention and a better model. `higher_means` says what a higher value is (the area ratio:
    "wider attention (less overfocused)"); `direction` is the line `overfocus list`, analysis.json,
    report.json and docs/conventions.md show.

    Example:
        >>> METRICS.get("area_ratio").direction
        'higher = wider attention (less overfocused)'
    """

    name: str
    title: str
    unit: str
    range: Range
    higher_is_better: bool
    needs_boxes: bool = False
    needs_human: bool = False
    kind: str = "map"
    # where the number is reported: "summary" (analyze's summary.csv) and/or "report" (audit), or "metrics"
    appears_in: Tuple[str, ...] = ("summary", "report")
    zero_when_degenerate: bool = False
    higher_means: str = ""  # what a higher value is, e.g. "wider attention (less overfocused)"

    @property
    def direction(self) -> str:
        """'higher = <what it means>' and whether that is better or worse in the toolkit's sense."""
        verdict = "better" if self.higher_is_better else "worse"
        return f"higher = {self.higher_means}" if self.higher_means else f"higher is {verdict}"
    # computed from the model and the image, not from the map alone (faithfulness, sanity): on the
    # `--faithfulness-images` subset only (docs/analysis.md)
    needs_model: bool = False

    def info(self) -> Dict[str, Any]:
        """The `metric_info` entry of analysis.json / report.json."""
        return {"title": self.title, "unit": self.unit, "range": list(self.range),
                "higher_is_better": self.higher_is_better, "direction": self.direction,
                "needs_boxes": self.needs_boxes, "needs_human": self.needs_human, "kind": self.kind}


@dataclass(frozen=True)
class MetricSpec(MetricInfo):
    """A per-image map metric: its metadata plus the function computing it.

    `fn(maps, boxes=..., labels=..., human=..., **options) -> float Tensor B` (NaN where undefined);
    for a metric that `needs_model`, `fn(perturbation) -> float Tensor B` with a
    `faithfulness.MapPerturbation` (the model, the images and one method's maps).
    `shares_batch`: fn also accepts a `MapBatch` as `maps`; `compute_map_metrics` then passes one
    MapBatch to all such metrics, so normalisation, boxes and masks are computed once per batch
    (a plugin metric keeps the default False and receives the plain maps tensor).
    """

    fn: Optional[Callable[..., torch.Tensor]] = None
    description: str = ""
    shares_batch: bool = False
    # computed when --metrics is not given; False: only on request (ROAD: its imputation costs
    # about ten times deletion + insertion on a CPU)
    by_default: bool = True


METRICS: Registry = Registry("metric")  # map metrics computed per image
# every other name a summary or a report holds (model-level numbers, numbers derived from map metrics)
SUMMARY_METRICS: Registry = Registry("summary metric")


def register_metric(spec: MetricInfo) -> MetricInfo:
    """Register a map metric (a MetricSpec) in METRICS, any other MetricInfo in SUMMARY_METRICS."""
    (METRICS if isinstance(spec, MetricSpec) else SUMMARY_METRICS).register(spec.name)(spec)
    return spec


_FRACTION = "fraction of images"
_SUMMARY, _REPORT, _BOTH = ("summary",), ("report",), ("summary", "report")
_RUN = ("metrics",)  # metrics.jsonl
NONDEGENERATE = "_nondegenerate"  # suffix of a metric aggregated over the non-degenerate maps only
ALL_MAPS = " (all maps)"  # the title suffix of the aggregate over every map (degenerate ones count 0)
for _spec in [
    MetricSpec("area_ratio", "attribution area ratio (all maps)", "fraction of pixels > 0.5 of max", (0.0, 1.0),
               True, fn=area_ratio, description="fraction of pixels > 0.5 of the map's max (spread)",
               shares_batch=True, zero_when_degenerate=True, higher_means="wider attention (less overfocused)"),
    MetricSpec("box_iou", "box IoU", "IoU", (0.0, 1.0), True, needs_boxes=True, fn=box_iou,
               description="IoU of the thresholded map's box and the gt", shares_batch=True,
               zero_when_degenerate=True, higher_means="the map's box closer to the object's"),
    MetricSpec("hit", "hit (box IoU >= 0.5)", "0/1 per image", (0.0, 1.0), True, needs_boxes=True, fn=hit,
               description="box_iou >= 0.5", shares_batch=True, appears_in=("summary",),  # audit: hit_ratio
               zero_when_degenerate=True, higher_means="more maps on the object"),
    MetricSpec("pointing_game", "pointing game", "0/1 per image", (0.0, 1.0), True, needs_boxes=True,
               fn=pointing_game, description="argmax within 15 px (strictly) of a box", shares_batch=True,
               zero_when_degenerate=True, higher_means="the peak on the object more often"),
    MetricSpec("energy_pg", "energy pointing game", "share of positive attribution in boxes", (0.0, 1.0), True,
               needs_boxes=True, fn=energy_pg, description="share of positive attribution in boxes",
               shares_batch=True, zero_when_degenerate=True, higher_means="more attribution on the object"),
    MetricSpec("harmonization", "harmonization with human maps", "Spearman / ceiling", (-1.0, 1.0), True,
               needs_human=True, fn=harmonization, description="Spearman with the blurred human map / ceiling",
               shares_batch=True, higher_means="closer to where people look"),
    MetricSpec("gini", "Gini coefficient", "Gini (1 = concentrated)", (0.0, 1.0), False, fn=gini,
               description="Gini coefficient of the map (1 = concentrated)", shares_batch=True,
               higher_means="more concentrated attention (more overfocused)"),
    MetricSpec("entropy", "normalised entropy", "entropy / log(H*W) (1 = uniform)", (0.0, 1.0), True, fn=entropy,
               description="entropy of the map / log(H*W) (1 = uniform)", shares_batch=True,
               higher_means="more evenly spread attention (less overfocused)"),
    # faithfulness (metrics/faithfulness.py): the model and the image, on the faithfulness subset
    MetricSpec("deletion", "deletion AUC", "AUC of the class probability", (0.0, 1.0), False, fn=faith.deletion,
               description="probability AUC while the most relevant pixels are replaced by the baseline",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("insertion", "insertion AUC", "AUC of the class probability", (0.0, 1.0), True, fn=faith.insertion,
               description="probability AUC while the most relevant pixels are inserted into the baseline",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("road_morf", "ROAD, most relevant first", "mean change of the class probability", (-1.0, 1.0),
               False, fn=faith.road_morf, description="probability change after imputing the top p% pixels",
               needs_model=True, appears_in=_SUMMARY, by_default=False),
    MetricSpec("road_lerf", "ROAD, least relevant first", "mean change of the class probability", (-1.0, 1.0),
               True, fn=faith.road_lerf, description="probability change after imputing the bottom p% pixels",
               needs_model=True, appears_in=_SUMMARY, by_default=False),
    MetricSpec("road_combined", "ROAD combined (LeRF - MoRF) / 2", "change of the class probability", (-1.0, 1.0),
               True, fn=faith.road_combined, description="(road_lerf - road_morf) / 2", needs_model=True,
               appears_in=_SUMMARY, by_default=False),
    MetricSpec("drop_in_confidence", "drop in confidence", "relative drop of the class probability", (0.0, 1.0),
               False, fn=faith.drop_in_confidence, description="max(0, Y - O) / Y, O: input x map",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("increase_in_confidence", "increase in confidence", "0/1 per image", (0.0, 1.0), True,
               fn=faith.increase_in_confidence, description="O > Y, O: input x map", needs_model=True,
               appears_in=_SUMMARY),
    # sanity checks (metrics/sanity.py): lower = the map depends on the learned weights / the class
    MetricSpec("sanity_init", "Spearman with the epoch-0 map", "Spearman rho", (-1.0, 1.0), False,
               fn=sanity.sanity_init, description="rank correlation with the map under the initial weights",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("sanity_init_ssim", "SSIM with the epoch-0 map", "SSIM", (-1.0, 1.0), False,
               fn=sanity.sanity_init_ssim, description="SSIM with the map under the initial weights",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("sanity_class", "Spearman with another class's map", "Spearman rho", (-1.0, 1.0), False,
               fn=sanity.sanity_class, description="rank correlation with the map of a random other class",
               needs_model=True, appears_in=_SUMMARY),
    MetricSpec("sanity_class_ssim", "SSIM with another class's map", "SSIM", (-1.0, 1.0), False,
               fn=sanity.sanity_class_ssim, description="SSIM with the map of a random other class",
               needs_model=True, appears_in=_SUMMARY),
    # numbers derived from the map metrics (summaries and the audit report)
    MetricInfo("pointing_game_per_class", "pointing game (mean over classes)", "fraction of images",
               (0.0, 1.0), True, needs_boxes=True, zero_when_degenerate=True),
    MetricInfo("hit_ratio", "hit ratio", _FRACTION, (0.0, 1.0), True, needs_boxes=True, appears_in=_REPORT,
               zero_when_degenerate=True),
    MetricInfo("outside_box", "attention mostly outside the box", _FRACTION, (0.0, 1.0), False, needs_boxes=True,
               appears_in=_REPORT),
    # explanation drift (analysis/trajectory.py): against the previous analysed epoch
    MetricInfo("drift", "map drift since the previous analysed epoch", "1 - Spearman rho", (0.0, 2.0), False,
               appears_in=_SUMMARY),
    MetricInfo("hit_flip", "hit outcome flipped since the previous analysed epoch", _FRACTION, (0.0, 1.0), False,
               needs_boxes=True, appears_in=_SUMMARY),
    MetricInfo("pointing_game_flip", "pointing-game outcome flipped since the previous analysed epoch", _FRACTION,
               (0.0, 1.0), False, needs_boxes=True, appears_in=_SUMMARY),
    # per image a 0/1 flag (records), per epoch x method the share (mean) and the count
    MetricInfo("degenerate", "degenerate maps (all zero or non-finite)", _FRACTION, (0.0, 1.0), False,
               higher_means="more empty maps"),
    MetricInfo("degenerate_count", "degenerate maps (all zero or non-finite)", "maps", (0.0, None), False,
               appears_in=_SUMMARY),
    # run-level numbers of metrics.jsonl (one per epoch, no per-image values): for titles and directions
    MetricInfo("test_acc", "test accuracy", "fraction of test images", (0.0, 1.0), True, kind="model",
               appears_in=_RUN),
    MetricInfo("train_acc", "train accuracy (eval mode, fixed subset)", "fraction of train images", (0.0, 1.0),
               True, kind="model", appears_in=_RUN),
    MetricInfo("gap", "generalization gap (train - test accuracy)", "accuracy points / 100", (-1.0, 1.0), False,
               kind="model", appears_in=_RUN),
    # model-level numbers
    MetricInfo("correct", "correct prediction", "0/1 per image", (0.0, 1.0), True, kind="model",
               appears_in=_SUMMARY),
    MetricInfo("accuracy", "accuracy", _FRACTION, (0.0, 1.0), True, kind="model", appears_in=_REPORT),
    MetricInfo("confidence", "confidence", "softmax probability of the prediction", (0.0, 1.0), True,
               kind="model"),
    *[MetricInfo(f"coverage_{where}{suffix}", f"neuron coverage ({where}{title})", "fraction of neurons",
                 (0.0, 1.0), True, kind="model", appears_in=appears)
      for suffix, title, appears in (("", "", _BOTH), ("_cumulative", ", any image", _SUMMARY),
                                     ("_per_image", ", per image", _REPORT))
      for where in ("global", "latent")],
    # unit level: every element of a layer's C x H x W output is a neuron (the seed's Table 4 reading)
    *[MetricInfo(f"unit_coverage_{where}{suffix}", f"unit-level neuron coverage ({where}{title})",
                 "fraction of units", (0.0, 1.0), True, kind="model", appears_in=appears)
      for suffix, title, appears in (("", "", _BOTH), ("_cumulative", ", any image", _SUMMARY),
                                     ("_per_image", ", per image", _REPORT))
      for where in ("global", "latent")],
]:
    register_metric(_spec)


def degenerate_as_zero() -> list:
    """Names (map metrics and derived numbers) that score a degenerate map 0, in registration order:
    those aggregated over the non-degenerate maps too.

    Example:
        >>> degenerate_as_zero()[:3]
        ['area_ratio', 'box_iou', 'hit']
    """
    specs = [registry.get(n) for registry in (METRICS, SUMMARY_METRICS) for n in registry.registered()]
    return [s.name for s in specs if s.zero_when_degenerate]


for _name in degenerate_as_zero():  # their `_nondegenerate` aggregates, where the metric itself appears
    _base = SUMMARY_METRICS.get(_name) if _name in SUMMARY_METRICS else METRICS.get(_name)
    register_metric(MetricInfo(_name + NONDEGENERATE, f"{_base.title.removesuffix(ALL_MAPS)} (non-empty maps)",
                               _base.unit, _base.range, _base.higher_is_better, needs_boxes=_base.needs_boxes,
                               needs_human=_base.needs_human, appears_in=_base.appears_in,
                               higher_means=_base.higher_means))


def reported_metrics(kind: str, where: str) -> list:
    """Names of `kind` ("map"/"model") that `where` ("summary"/"report") holds, map metrics first
    in registration order.

    Example:
        >>> reported_metrics("model", "report")[:2]
        ['accuracy', 'confidence']
    """
    specs = [registry.get(n) for registry in (METRICS, SUMMARY_METRICS) for n in registry.registered()]
    return [s.name for s in specs if s.kind == kind and where in s.appears_in]


def run_metrics() -> list:
    """Names of the run-level numbers of metrics.jsonl the registry describes (accuracies, gap).

    Example:
        >>> run_metrics()
        ['test_acc', 'train_acc', 'gap']
    """
    return [n for n in SUMMARY_METRICS.registered() if "metrics" in SUMMARY_METRICS.get(n).appears_in]


def metric_info(names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """`metric_info` of analysis.json / report.json for metric names; a `method.metric` name of the
    audit is described by its metric; a name no registry knows is an error (register it).

    Example:
        >>> metric_info(["degenerate_count"])["degenerate_count"]["range"]
        [0.0, None]
    """
    out = {}
    for name in names:
        base = name.rsplit(".", 1)[-1]
        registry = METRICS if base in METRICS else SUMMARY_METRICS
        out[name] = registry.get(base).info()
    return out


def compute_map_metrics(maps: torch.Tensor, names: Optional[Sequence[str]] = None, boxes=None, labels=None,
                        human: Optional[torch.Tensor] = None,
                        options: Optional[Mapping[str, dict]] = None) -> Dict[str, torch.Tensor]:
    """Compute several metrics; those whose needs (boxes, human maps) are unmet are skipped.

    Args:
        maps: B x H x W raw non-negative maps, or a MapBatch of them (its normalisation and
            degenerate flags are then shared with the caller).
        names: metric names (default: all registered).
        boxes: list of B tensors N_i x 4 (x0, y0, x1, y1), or None.
        labels: B class indices (passed through), or None.
        human: B x h x w human importance maps, or None.
        options: per-metric keyword options, e.g. {"pointing_game": {"tolerance": 0}}.

    Example:
        >>> out = compute_map_metrics(torch.rand(2, 8, 8), ["area_ratio", "hit"])
        >>> sorted(out)   # no boxes: hit is skipped
        ['area_ratio']
    """
    options = dict(options or {})
    unknown = set(options) - set(METRICS.names())
    if unknown:
        raise OverfocusError(f"options for unknown metrics {sorted(unknown)}: choose from {METRICS.names()}")
    specs = [METRICS.get(name) for name in (names if names is not None else METRICS.names())]
    specs = [s for s in specs if not s.needs_model]  # those need the model: compute_model_metrics
    shared = MapBatch.wrap(maps, boxes)  # one normalisation, one set of boxes and masks for the batch
    maps = shared.maps
    out: Dict[str, torch.Tensor] = {}
    for spec in specs:
        if (spec.needs_boxes and boxes is None) or (spec.needs_human and human is None):
            continue
        opts = options.get(spec.name, {})
        _check_options(spec, opts)
        out[spec.name] = spec.fn(shared if spec.shares_batch else maps, boxes=boxes, labels=labels, human=human,
                                 **opts)
    return out


def model_metric_names() -> list:
    """The registered metrics that need the model and the image (faithfulness), in registration order.

    Example:
        >>> model_metric_names()[:2]
        ['deletion', 'insertion']
    """
    return [n for n in METRICS.registered() if METRICS.get(n).needs_model]


def compute_model_metrics(perturbation: "faith.MapPerturbation", names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The metrics `names` that need the model, for one method's maps (a `MapPerturbation`: metrics
    of one family share its perturbed forwards); names of map-only metrics are ignored."""
    out = {}
    for spec in (METRICS.get(n) for n in names):
        if spec.needs_model:
            value = spec.fn(perturbation)
            if value is not None:  # None: its reference maps are missing (e.g. a run without epoch 0)
                out[spec.name] = value
    return out


def _check_options(spec: MetricSpec, opts: dict) -> None:
    """Reject options the metric does not take (before computing, not by catching TypeError,
    which would also hide a genuine error inside the metric)."""
    problem = _option_problem(spec.fn, tuple(sorted(opts)))
    if problem:
        raise OverfocusError(f"bad options {opts} for metric {spec.name!r}: {problem}")


@functools.lru_cache(maxsize=None)
def _option_problem(fn: Callable, keys: tuple) -> str:
    """Why fn does not take these keyword options ('' when it does); cached: called per batch."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # not introspectable (some C callables): let the call decide
        return ""
    try:
        signature.bind(None, boxes=None, labels=None, human=None, **dict.fromkeys(keys))
    except TypeError as exc:
        return str(exc)
    return ""
