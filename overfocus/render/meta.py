"""Titles, units and ranges of methods and metrics, read from what analyze/audit wrote.

analysis.json and report.json carry `method_info` and `metric_info` (see docs/rendering.md). Render
keeps no table of names of its own: for an older folder without these keys, a name is shown with
its underscores replaced by spaces, without unit or range.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Tuple


@dataclass(frozen=True)
class MetricLabel:
    """How to label one metric: title, unit, value range (None = open end) and kind ('map' or 'model')."""

    title: str
    unit: str = ""
    range: Tuple[Optional[float], Optional[float]] = (None, None)
    kind: str = ""

    @property
    def axis_label(self) -> str:
        return self.unit or "value"


def plain_name(name: str) -> str:
    """The fallback display name: underscores replaced by spaces.

    Example:
        >>> plain_name("coverage_latent_cumulative")
        'coverage latent cumulative'
    """
    return str(name).replace("_", " ")


def method_title(meta: Mapping[str, Any], method: str) -> str:
    """Display title of an attribution method from `meta["method_info"]`, else its plain name.

    Example:
        >>> method_title({"method_info": {"grad_cam": {"title": "Grad-CAM"}}}, "grad_cam")
        'Grad-CAM'
        >>> method_title({}, "input_x_gradient")
        'input x gradient'
    """
    entry = (meta.get("method_info") or {}).get(method) or {}
    return str(entry.get("title") or plain_name(method))


def _bound(value: Any) -> Optional[float]:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def metric_info(meta: Mapping[str, Any], metric: str) -> MetricLabel:
    """Title, unit, range and kind of a metric from `meta["metric_info"]`, else the plain name, no range.

    Example:
        >>> m = {"metric_info": {"hit": {"title": "hit ratio", "unit": "fraction", "range": [0.0, 1.0]}}}
        >>> metric_info(m, "hit").range, metric_info({}, "hit").title
        ((0.0, 1.0), 'hit')
    """
    entry = (meta.get("metric_info") or {}).get(metric) or {}
    bounds = entry.get("range") or [None, None]
    lo, hi = (_bound(bounds[0]), _bound(bounds[1])) if len(bounds) == 2 else (None, None)
    return MetricLabel(str(entry.get("title") or plain_name(metric)), str(entry.get("unit") or ""), (lo, hi),
                      str(entry.get("kind") or ""))


def order_metrics(meta: Mapping[str, Any], names: Iterable[str]) -> List[str]:
    """`names` in the order of `meta["metric_info"]` (the registry's order), the others after, sorted.

    Example:
        >>> order_metrics({"metric_info": {"b": {}, "a": {}}}, ["a", "z", "b"])
        ['b', 'a', 'z']
    """
    names = list(dict.fromkeys(names))
    known = [m for m in (meta.get("metric_info") or {}) if m in names]
    return known + sorted(m for m in names if m not in known)


def merged_info(metas: Iterable[Mapping[str, Any]]) -> dict:
    """One metadata mapping from several runs' (for compare): the first run that describes a name wins.

    Example:
        >>> merged_info([{}, {"method_info": {"a": {"title": "A"}}}])["method_info"]
        {'a': {'title': 'A'}}
    """
    out: dict = {"method_info": {}, "metric_info": {}}
    for meta in metas:
        for key in out:
            for name, entry in (meta.get(key) or {}).items():
                out[key].setdefault(name, entry)
    return out
