"""The metric registry: each map metric with its direction and what it needs."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence

import torch

from ..errors import OverfocusError
from ..registry import Registry
from .batch import MapBatch
from .concentration import entropy, gini
from .harmonization import harmonization
from .localisation import area_ratio, box_iou, energy_pg, hit, pointing_game


@dataclass(frozen=True)
class MetricSpec:
    """A per-image map metric.

    `fn(maps, boxes=..., labels=..., human=..., **options) -> float Tensor B` (NaN where undefined).
    `shares_batch`: fn also accepts a `MapBatch` as `maps`; `compute_map_metrics` then passes one
    MapBatch to all such metrics, so normalisation, boxes and masks are computed once per batch
    (a plugin metric keeps the default False and receives the plain maps tensor).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    higher_is_better: bool
    needs_boxes: bool = False
    needs_human: bool = False
    description: str = ""
    shares_batch: bool = False


METRICS: Registry = Registry("metric")

for _spec in [
    MetricSpec("area_ratio", area_ratio, True, description="fraction of pixels > 0.5 of the map's max (spread)",
               shares_batch=True),
    MetricSpec("box_iou", box_iou, True, needs_boxes=True, description="IoU of the thresholded map's box and the gt",
               shares_batch=True),
    MetricSpec("hit", hit, True, needs_boxes=True, description="box_iou >= 0.5", shares_batch=True),
    MetricSpec("pointing_game", pointing_game, True, needs_boxes=True, description="argmax within 15 px of a box",
               shares_batch=True),
    MetricSpec("energy_pg", energy_pg, True, needs_boxes=True, description="share of positive attribution in boxes",
               shares_batch=True),
    MetricSpec("harmonization", harmonization, True, needs_human=True,
               description="Spearman with the blurred human map / ceiling", shares_batch=True),
    MetricSpec("gini", gini, False, description="Gini coefficient of the map (1 = concentrated)", shares_batch=True),
    MetricSpec("entropy", entropy, True, description="entropy of the map / log(H*W) (1 = uniform)",
               shares_batch=True),
]:
    METRICS.register(_spec.name)(_spec)


def compute_map_metrics(maps: torch.Tensor, names: Optional[Sequence[str]] = None, boxes=None, labels=None,
                        human: Optional[torch.Tensor] = None,
                        options: Optional[Mapping[str, dict]] = None) -> Dict[str, torch.Tensor]:
    """Compute several metrics; those whose needs (boxes, human maps) are unmet are skipped.

    Args:
        maps: B x H x W raw non-negative maps.
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
    shared = MapBatch(maps, boxes)  # one normalisation, one set of boxes and masks for the batch
    out: Dict[str, torch.Tensor] = {}
    for spec in specs:
        if (spec.needs_boxes and boxes is None) or (spec.needs_human and human is None):
            continue
        opts = options.get(spec.name, {})
        _check_options(spec, opts)
        out[spec.name] = spec.fn(shared if spec.shares_batch else maps, boxes=boxes, labels=labels, human=human,
                                 **opts)
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
