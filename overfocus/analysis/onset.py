"""Overfocus onset: per run and method, the epoch at which attention was widest and how it
narrowed since, next to the generalization gap.

The measure is the area ratio over the NON-DEGENERATE maps of each epoch (an empty map is not a
narrow one: docs/conventions.md). Per method:

- `peak_epoch`: the epoch of the highest mean area ratio (the first one on a tie), searched only
  among the epochs that say something about the model (`verdicts.search_start`: never epoch 0,
  above chance, mostly non-degenerate maps, from `faithful_from` on where faithfulness is
  measured); `search_from` and `search_reason` say where the search started and why;
- the trend from the peak to the last analysed epoch: `slope` per epoch (least squares over
  the epochs' means) with a 95% bootstrap interval over images (the same images are analysed at
  every epoch, so an image is resampled with all its epochs), and Kendall's tau-b of the mean
  area ratio against the epoch;
- `narrowing`: (peak - last) / peak, the share of the peak's area lost by the last epoch;
- `gap_at_peak`, `gap_at_last`, `gap_growth` (train minus test accuracy, from the run's
  metrics.jsonl; None where the run has no such line);
- `faithful_from`, `faithful_epochs`, `sanity_from` (verdicts.py) and `verdict`, the line
  "narrowing after epoch P on maps faithful from epoch F: yes/no".

Pure numpy; the analysis writes the result to `RUN/analysis/onset.json` (`ONSET_FILE`) and
`overfocus analyze` prints `onset_lines`.

Example:
    >>> values = np.array([[0.2, 0.4], [0.5, 0.7], [0.3, 0.5], [0.2, 0.4]])   # 4 epochs x 2 images
    >>> onset = method_onset([0, 1, 2, 3], values, {0: 0.0, 1: 0.05, 3: 0.25}, n_boot=200)
    >>> onset["peak_epoch"], onset["slope"], onset["kendall_tau"], onset["gap_growth"]
    (1, -0.15, -1.0, 0.2)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from . import storage as store, verdicts
from ..fileio import atomic_write_json, json_safe
from .core import RANDOM_BASELINE
from .trajectory import DRIFT_LEVEL, read_trajectory

ONSET_FILE = "onset.json"
ONSET_SCHEMA = 2  # 2: the search start, faithful_from, sanity_from and the verdict
MEASURE = "area_ratio_nondegenerate"  # what the onset is the peak of
N_BOOT = 1000


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable corrected); NaN for fewer than 2 pairs or a constant.

    Example:
        >>> kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]), round(kendall_tau([1, 2, 3], [1, 1, 2]), 4)
        (-1.0, 0.8165)
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return math.nan
    i, j = np.triu_indices(x.size, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    untied_x, untied_y = np.count_nonzero(dx), np.count_nonzero(dy)
    if untied_x == 0 or untied_y == 0:
        return math.nan
    return float(np.sum(dx * dy) / math.sqrt(untied_x * untied_y))


def slope(x: Sequence[float], y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y against x; y may be ... x len(x) (one slope per row); NaN for fewer
    than 2 points.

    Example:
        >>> float(slope([0, 1, 2], np.array([1.0, 3.0, 5.0])))
        2.0
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return np.full(y.shape[:-1], math.nan)
    centred = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ centred / float(centred @ centred)


def epoch_means(values: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-epoch means of an epochs x images array over its non-NaN entries (NaN where none);
    with `weights` (resamples x images: how often each image is drawn) one row per resample.

    Example:
        >>> epoch_means(np.array([[1.0, np.nan], [2.0, 4.0]])).tolist()
        [1.0, 3.0]
    """
    valid = ~np.isnan(values)
    filled = np.where(valid, values, 0.0)
    rows = np.ones((1, values.shape[1])) if weights is None else weights
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (rows @ filled.T) / (rows @ valid.T.astype(np.float64))
    return means[0] if weights is None else means


def bootstrap_slope(epochs: Sequence[int], values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0,
                    chunk: int = 100) -> tuple:
    """95% percentile interval of the slope of the epoch means, resampling images (columns) with
    all their epochs; (NaN, NaN) for fewer than 2 epochs or images.

    Example:
        >>> lo, hi = bootstrap_slope([0, 1, 2], np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]))
        >>> round(lo, 9), round(hi, 9)
        (1.0, 1.0)
    """
    n_images = values.shape[1]
    if len(epochs) < 2 or n_images < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    slopes = []
    for start in range(0, n_boot, chunk):  # resample weights in chunks: memory chunk x images
        weights = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=min(chunk, n_boot - start))
        slopes.append(slope(epochs, epoch_means(values, weights.astype(np.float64))))
    found = np.concatenate(slopes)
    found = found[~np.isnan(found)]
    if not found.size:
        return math.nan, math.nan
    return float(np.percentile(found, 2.5)), float(np.percentile(found, 97.5))


def method_onset(epochs: Sequence[int], values: np.ndarray, gaps: Dict[int, float], n_boot: int = N_BOOT,
                 seed: int = 0, eligible: Optional[Sequence[int]] = None) -> Optional[Dict[str, Any]]:
    """The onset of one method from its epochs x images area ratios (NaN: degenerate map or no
    value); None when no epoch has a non-degenerate map (or none of the `eligible` epochs, where
    the peak may sit: None = any). See the module docstring."""
    epochs = np.asarray(epochs, dtype=np.int64)
    means = epoch_means(np.asarray(values, dtype=np.float64))
    measured = ~np.isnan(means)
    if not measured.any():
        return None
    epochs, means, values = epochs[measured], means[measured], np.asarray(values)[measured]
    allowed = np.ones(len(epochs), bool) if eligible is None else np.isin(epochs, np.asarray(list(eligible)))
    if not allowed.any():
        return None
    at = int(np.argmax(np.where(allowed, means, -np.inf)))  # the first maximum: the earliest widest attention
    after = slice(at, None)
    peak, last = float(means[at]), float(means[-1])
    lo, hi = bootstrap_slope(epochs[after], values[after], n_boot, seed)
    gap_peak, gap_last = gaps.get(int(epochs[at])), gaps.get(int(epochs[-1]))
    return {"peak_epoch": int(epochs[at]), "peak_area": peak, "last_epoch": int(epochs[-1]), "last_area": last,
            "narrowing": (peak - last) / peak if peak > 0 else math.nan,
            "slope": _round(float(slope(epochs[after], means[after]))), "slope_ci": [lo, hi],
            "kendall_tau": kendall_tau(epochs[after], means[after]), "epochs_after_peak": int(len(epochs) - at),
            "gap_at_peak": gap_peak, "gap_at_last": gap_last,
            "gap_growth": _round(gap_last - gap_peak) if gap_peak is not None and gap_last is not None else None}


def _round(value: float) -> float:
    """Rounded to 12 significant digits: a slope of exact data reads -0.15, not -0.15000000000000002."""
    return float(f"{value:.12g}") if math.isfinite(value) else value


# ---- collecting the area ratios from the records ---------------------------------------------------
class OnsetCollector:
    """Per method, the non-degenerate area ratio of every image at every epoch, gathered from the
    records one epoch at a time (`add` is the per-epoch callback of `summary.rebuild_summary`)."""

    FAITHFULNESS = ("deletion", "insertion")  # what faithful_from compares with the random baseline

    def __init__(self):
        self.by_epoch: Dict[int, Dict[str, Dict[str, float]]] = {}  # epoch -> method -> image_id -> value
        self.accuracy: Dict[int, tuple] = {}  # epoch -> (correct, n, majority-class rate)
        self.degenerate: Dict[int, Dict[str, float]] = {}  # epoch -> method -> share of degenerate maps
        # epoch -> method -> metric -> image_id -> value (faithfulness and sanity_init)
        self.faithful: Dict[int, Dict[str, Dict[str, Dict[str, float]]]] = {}

    def add(self, epoch: int, records: List[Dict[str, Any]]) -> None:
        area: Dict[str, Dict[str, float]] = {}
        dead: Dict[str, Dict[str, float]] = {}
        correct: List[float] = []
        labels: List[int] = []
        faithful: Dict[str, Dict[str, Dict[str, float]]] = {}
        for r in records:
            if r["metric"] == "area_ratio":
                area.setdefault(r["method"], {})[r["image_id"]] = r["value"]
            elif r["metric"] == store.DEGENERATE:
                dead.setdefault(r["method"], {})[r["image_id"]] = r["value"]
            elif r["metric"] == "correct" and r["method"] == store.MODEL_METHOD:
                correct.append(r["value"])
                labels.append(r["label"])
            elif r["metric"] in (*self.FAITHFULNESS, "sanity_init", "drift"):
                faithful.setdefault(r["method"], {}).setdefault(r["metric"], {})[r["image_id"]] = r["value"]
        self.by_epoch[epoch] = {m: {iid: (math.nan if dead.get(m, {}).get(iid, 0.0) > 0 else v)
                                    for iid, v in values.items()} for m, values in area.items()}
        if correct:
            counts = np.bincount(np.asarray(labels, dtype=np.int64).clip(min=0))
            self.accuracy[epoch] = (int(np.nansum(correct)), len(correct), float(counts.max() / counts.sum()))
        self.degenerate[epoch] = {m: float(np.mean([v > 0 for v in flags.values()])) for m, flags in dead.items()
                                  if flags}
        self.faithful[epoch] = faithful

    def arrays(self) -> Dict[str, tuple]:
        """method -> (epochs, epochs x images array, NaN where degenerate or absent)."""
        epochs = sorted(self.by_epoch)
        out = {}
        for method in sorted({m for e in epochs for m in self.by_epoch[e]}):
            ids = sorted({iid for e in epochs for iid in self.by_epoch[e].get(method, {})})
            table = np.array([[self.by_epoch[e].get(method, {}).get(iid, math.nan) for iid in ids] for e in epochs],
                             dtype=np.float64).reshape(len(epochs), len(ids))
            out[method] = (epochs, table)
        return out


def compute_onset(collector: OnsetCollector, gaps: Dict[int, float]) -> Dict[str, Any]:
    """onset.json's content: the measure, the epochs and, per method, its onset among the epochs
    that say something about the model, faithful_from, sanity_from and the verdict."""
    chance = {e: verdicts.above_chance(*acc) for e, acc in collector.accuracy.items()} if collector.accuracy else None
    methods = {}
    for method, (epochs, table) in collector.arrays().items():
        facts = method_facts(collector, method)
        start = verdicts.search_start(epochs, chance, {e: collector.degenerate.get(e, {}).get(method, 0.0)
                                                       for e in epochs},
                                      facts["faithful_from"], facts["faithfulness_measured"])
        onset = method_onset(epochs, table, gaps, eligible=start["epochs"]) if start["epochs"] else None
        entry = {**(onset or {"peak_epoch": None}), "search_from": start["search_from"],
                 "search_reason": start["reason"], **facts}
        entry["verdict"] = verdicts.verdict_line(method, entry)
        methods[method] = entry
    return {"schema": ONSET_SCHEMA, "measure": MEASURE, "epochs": sorted(collector.by_epoch),
            "above_chance": {str(e): ok for e, ok in sorted((chance or {}).items())},
            "methods": methods}


def method_facts(collector: OnsetCollector, method: str) -> Dict[str, Any]:
    """faithful_from (against the random baseline), the epochs it rests on, and sanity_from."""
    epochs = sorted(collector.faithful)
    ids = sorted({iid for e in epochs for iid in collector.faithful[e].get(RANDOM_BASELINE, {}).get("deletion", {})})

    def aligned(who: str) -> Dict[str, Dict[int, np.ndarray]]:
        return {m: {e: np.array([collector.faithful[e][who][m].get(i, math.nan) for i in ids])
                    for e in epochs if m in collector.faithful[e].get(who, {})} for m in OnsetCollector.FAITHFULNESS}

    beats = verdicts.faithful_epochs(epochs, aligned(method), aligned(RANDOM_BASELINE)) \
        if method != RANDOM_BASELINE else {}
    measured = sorted(beats)
    medians = {e: float(np.nanmedian(list(v.values()))) for e in epochs
               if (v := collector.faithful[e].get(method, {}).get("sanity_init")) and
               not np.isnan(list(v.values())).all()}
    drift = {e: float(np.nanmedian(list(v.values()))) for e in epochs
             if (v := collector.faithful[e].get(method, {}).get("drift")) and not np.isnan(list(v.values())).all()}
    drift_epochs = sorted(drift)
    return {"faithfulness_measured": bool(measured),
            "drift_median": {str(e): drift[e] for e in drift_epochs},
            "stabilisation_epoch": verdicts.first_from(drift_epochs, [drift[e] <= DRIFT_LEVEL for e in drift_epochs])
            if drift_epochs else None, "drift_level": DRIFT_LEVEL,
            "faithful_from": verdicts.first_from(measured, [beats[e] for e in measured]) if measured else None,
            "faithful_epochs": {str(e): beats[e] for e in measured},
            "sanity_init_median": {str(e): medians[e] for e in sorted(medians)},
            "sanity_from": verdicts.sanity_from(medians) if medians else None,
            "sanity_level": verdicts.SANITY_LEVEL}


def update_onset(folder: Path, epochs: Sequence[int], gaps: Dict[int, float],
                 collector: Optional[OnsetCollector] = None,
                 read_epoch: Optional[Callable[[int], List[Dict[str, Any]]]] = None) -> Optional[Dict[str, Any]]:
    """Write `folder/onset.json` (atomically) from the collected epochs; when nothing was collected
    (the summary was up to date) an existing file is kept and a missing one is made from the
    records. Returns the onset, or None without analysed epochs."""
    path = Path(folder) / ONSET_FILE
    collector = collector or OnsetCollector()
    if not collector.by_epoch:
        existing = read_onset(folder) if path.is_file() else None
        if existing is not None and existing.get("schema") == ONSET_SCHEMA:
            return existing
        read_epoch = read_epoch or (lambda e: list(store.iter_record_file(store.records_path(folder, e)))
                                    + read_trajectory(folder, e))
        for epoch in epochs:
            collector.add(epoch, read_epoch(epoch))
    if not collector.by_epoch:
        return None
    onset = compute_onset(collector, gaps)
    atomic_write_json(path, json_safe(onset))
    return onset


def read_onset(folder: Path | str) -> Optional[Dict[str, Any]]:
    """onset.json of an analysis folder, or None when there is none (or it is unreadable)."""
    import json

    path = Path(folder) / ONSET_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---- words ------------------------------------------------------------------------------------------
def onset_lines(onset: Optional[Dict[str, Any]]) -> List[str]:
    """The closing lines of `overfocus analyze`: one per method.

    Example:
        >>> o = {"peak_epoch": 3, "peak_area": 0.4, "last_epoch": 9, "last_area": 0.3, "narrowing": 0.25,
        ...      "slope": -0.0167, "slope_ci": [-0.02, -0.01], "kendall_tau": -0.9, "gap_at_peak": 0.05,
        ...      "gap_at_last": 0.2, "gap_growth": 0.15}
        >>> onset_lines({"methods": {"grad_cam": o}})[1].split("; ")  # doctest: +NORMALIZE_WHITESPACE
        ['  grad_cam: widest at epoch 3 (area ratio 0.400), 0.300 at epoch 9 (-25%)',
         'slope -0.0167/epoch [95% CI -0.02, -0.01], Kendall tau -0.90', 'gap 5.0 -> 20.0 points']
    """
    methods = (onset or {}).get("methods") or {}
    if not methods:
        return []
    lines = ["overfocus onset (area ratio over non-degenerate maps):"]
    for method, o in sorted(methods.items()):
        if o.get("peak_epoch") is None:
            lines.append(f"  {method}: no onset: {o.get('search_reason', 'no non-degenerate maps')}")
            continue
        text = f"  {method}: widest at epoch {o['peak_epoch']} (area ratio {o['peak_area']:.3f})"
        if o["last_epoch"] == o["peak_epoch"]:
            text += ", the last analysed epoch: no narrowing yet"
        else:
            lo, hi = (_num(v, ".3g") for v in (o.get("slope_ci") or [None, None]))
            text += (f", {o['last_area']:.3f} at epoch {o['last_epoch']} ({-_or_nan(o['narrowing']) * 100:+.0f}%); "
                     f"slope {_num(o['slope'], '.3g')}/epoch [95% CI {lo}, {hi}], "
                     f"Kendall tau {_num(o['kendall_tau'], '.2f')}")
        if o.get("gap_at_peak") is not None and o.get("gap_at_last") is not None:
            text += f"; gap {o['gap_at_peak'] * 100:.1f} -> {o['gap_at_last'] * 100:.1f} points"
        lines.append(text)
        if o.get("search_from") is not None:
            lines.append(f"    peak searched from epoch {o['search_from']}: {o.get('search_reason', '')}")
    verdict = [o["verdict"] for _, o in sorted(methods.items()) if o.get("verdict")]
    if verdict:
        lines.append("is the narrowing real? (maps faithful = beat the random baseline on deletion and insertion)")
        lines += [f"  {v}" for v in verdict]
    return lines


def _num(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _or_nan(value: Optional[float]) -> float:
    return math.nan if value is None else value
