"""The audit's per-image numbers, kept examples and their summary into report metrics.

`Accumulator` collects every batch's per-image values and the best and worst examples;
`collect_metrics` summarises them through the analysis summary (the one bootstrap and per-class
pointing game shared with `overfocus analyze`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..analysis.summary import per_class_pointing, summarize_values
from ..metrics.coverage import COVERAGE_KEYS
from ..metrics.registry import NONDEGENERATE, degenerate_as_zero
from ..metrics.stats import confusion_matrix, per_class_accuracy

RENAMED = {"hit": "hit_ratio"}  # per-image `hit` averages to the hit ratio


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


def class_summary(labels: Sequence[int], preds: Sequence[int], classes: Sequence[str]) -> Dict[str, Any]:
    """report.json's `classes`: accuracy and images per true class, and the confusion matrix
    (rows: true class, columns: prediction, in the data's class order); `outside` counts the
    predictions of a class the data does not have (a model with more outputs).

    Example:
        >>> s = class_summary([0, 0, 1], [0, 1, 1], ["cat", "dog"])
        >>> s["per_class"][0], s["confusion"], s["outside"]
        ({'class': 'cat', 'images': 2, 'accuracy': 0.5}, [[1, 1], [0, 1]], 0)
    """
    k = len(classes)
    accuracy, images = per_class_accuracy(labels, preds, k)
    confusion = confusion_matrix(labels, preds, k)
    return {"per_class": [{"class": str(name), "images": int(n), "accuracy": None if math.isnan(a) else float(a)}
                          for name, a, n in zip(classes, accuracy, images)],
            "confusion": confusion.tolist(), "outside": int(len(labels) - confusion.sum())}
