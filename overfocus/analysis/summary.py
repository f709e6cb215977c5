"""The one summary of per-image numbers, shared by `analyze` (summary.csv) and `audit` (report):
mean with a 95% bootstrap interval, the per-class pointing game, the cumulative coverage rows,
and the degenerate maps: per epoch x method their share (`degenerate`) and count
(`degenerate_count`), and every metric that scores a degenerate map 0 aggregated a second time
over the non-degenerate maps only (`<metric>_nondegenerate`, docs/conventions.md).

Example:
    >>> summarize_values(np.array([1.0, 0.0, np.nan, 1.0]))["n"]
    3
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..metrics import bootstrap_ci, pointing_game_per_class
from ..metrics.registry import NONDEGENERATE, degenerate_as_zero
from ..progress import progress
from . import storage as store
from .storage import ALL_IMAGES, DEGENERATE, MODEL_METHOD, SUMMARY_COLUMNS
from .trajectory import read_trajectory

N_BOOT = 1000


def summarize_values(values: np.ndarray) -> Dict[str, Any]:
    """Mean, 95% bootstrap interval (seed 0) and count of the non-NaN values; mean and interval
    are NaN when there are none.

    Example:
        >>> s = summarize_values(np.array([0.0, 1.0] * 5))
        >>> s["mean"], s["n"], s["ci_low"] <= 0.5 <= s["ci_high"]
        (0.5, 10, True)
    """
    values = np.asarray(values, dtype=np.float64)
    valid = values[~np.isnan(values)]
    lo, hi = bootstrap_ci(valid, n_boot=N_BOOT, seed=0)
    return {"mean": float(valid.mean()) if valid.size else math.nan, "ci_low": float(lo), "ci_high": float(hi),
            "n": int(valid.size)}


def per_class_pointing(hits: np.ndarray, labels: np.ndarray) -> Tuple[float, int]:
    """(pointing game averaged over classes, images counted); NaN hits (no box) are left out.

    Example:
        >>> per_class_pointing(np.array([1.0, 0.0, 1.0, np.nan]), np.array([0, 0, 1, 1]))
        (0.75, 3)
    """
    hits, labels = np.asarray(hits, dtype=np.float64), np.asarray(labels)
    keep = ~np.isnan(hits)
    if not keep.any():
        return math.nan, 0
    return float(pointing_game_per_class(torch.as_tensor(hits[keep]), torch.as_tensor(labels[keep]))), int(keep.sum())


# ---- summary ----------------------------------------------------------------------------------
def rebuild_summary(folder: Path, epochs: Sequence[int], rebuild: bool = True, show_progress: bool = False,
                    on_epoch: Optional[Callable[[int, List[Dict[str, Any]]], None]] = None) -> List[Dict[str, Any]]:
    """summary.csv from the records, one epoch at a time (memory stays that of one epoch).

    Skipped (and the file kept) when nothing changed since it was written. `on_epoch(epoch,
    records)` sees each epoch's records when they are read (e.g. `onset.OnsetCollector.add`).
    """
    path = folder / "summary.csv"
    if not rebuild and path.is_file():
        rows = store.read_summary(folder.parent, out=folder)
        if sorted({r["epoch"] for r in rows}) == sorted(epochs):
            return rows
    rows = []
    for epoch in progress(sorted(epochs), show_progress, desc="summary"):
        records = list(store.iter_record_file(store.records_path(folder, epoch)))
        records += read_trajectory(folder, epoch)  # drift and flips against the previous analysed epoch
        if on_epoch is not None:
            on_epoch(epoch, records)
        rows += summarize_records(records)
    store.write_csv(path, rows, SUMMARY_COLUMNS)
    return rows


def derived_metrics(map_metrics: Sequence[str]) -> List[str]:
    """Summary names derived from the records of these map metrics: the per-class pointing game,
    the degenerate count and the `_nondegenerate` aggregates.

    Example:
        >>> derived_metrics(["area_ratio", "pointing_game", "gini"])  # doctest: +NORMALIZE_WHITESPACE
        ['pointing_game_per_class', 'degenerate_count', 'area_ratio_nondegenerate',
         'pointing_game_nondegenerate', 'pointing_game_per_class_nondegenerate']
    """
    per_class = ["pointing_game_per_class"] if "pointing_game" in map_metrics else []
    twice = [m for m in [*map_metrics, *per_class] if m in degenerate_as_zero()]
    return [*per_class, "degenerate_count", *[m + NONDEGENERATE for m in twice]]


def summarize_records(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Summary rows (mean, 95% bootstrap CI, n) per epoch x method x metric of some records.

    Cumulative coverage rows (image `__all__`) are copied with ci = mean; `pointing_game_per_class`
    is added for every method that has pointing_game values (ci = mean: no interval). Where the
    records flag degenerate maps: `degenerate_count` (mean = the count, n = the maps) next to the
    share `degenerate`, and `<metric>_nondegenerate` for every metric scoring a degenerate map 0
    (`registry.degenerate_as_zero`), over the images whose map is not degenerate.

    Example:
        >>> recs = [{"epoch": 1, "method": "grad_cam", "image_id": str(i), "label": i % 2,
        ...          "metric": "hit", "value": float(i % 2)} for i in range(10)]
        >>> row = summarize_records(recs)[0]
        >>> row["mean"], row["n"], row["ci_low"] <= 0.5 <= row["ci_high"]
        (0.5, 10, True)
    """
    groups: Dict[Tuple[int, str, str], List[Tuple[float, int, str]]] = defaultdict(list)
    overall: Dict[Tuple[int, str, str], float] = {}
    for r in records:
        key = (r["epoch"], r["method"], r["metric"])
        if r["image_id"] == ALL_IMAGES:
            overall[key] = r["value"]
        else:
            groups[key].append((r["value"], r["label"], r["image_id"]))
    flags = {(k[0], k[1]): {iid: v > 0 for v, _, iid in pairs} for k, pairs in groups.items() if k[2] == DEGENERATE}
    twice = set(degenerate_as_zero())
    rows = []
    for key, pairs in groups.items():
        values = np.asarray([p[0] for p in pairs], dtype=np.float64)
        labels = np.asarray([p[1] for p in pairs])
        rows.append({"epoch": key[0], "method": key[1], "metric": key[2], **summarize_values(values)})
        if key[2] == "pointing_game":
            rows.append(_per_class_row(key, values, labels))
        if key[2] == DEGENERATE:
            rows.append(_fixed_row((*key[:2], "degenerate_count"), float(np.nansum(values)), int(values.size)))
        dead = flags.get(key[:2])
        if key[2] in twice and dead is not None:
            # an image without a flag (e.g. a human-map image) is not a map of this set: left out
            kept = np.asarray([dead.get(p[2]) is False for p in pairs])
            rows += _nondegenerate_rows(key, values[kept], labels[kept])
    n_images = {k[0]: len(v) for k, v in groups.items() if k[1] == MODEL_METHOD and k[2] == "correct"}
    rows += [_fixed_row(k, v, n_images.get(k[0], 0)) for k, v in overall.items()]
    return sorted(rows, key=lambda r: (r["epoch"], r["method"], r["metric"]))


def _nondegenerate_rows(key: Tuple[int, str, str], values: np.ndarray, labels: np.ndarray) -> List[Dict[str, Any]]:
    """The `_nondegenerate` rows of one metric from the values of the non-degenerate maps."""
    name = key[2] + NONDEGENERATE
    rows = [{"epoch": key[0], "method": key[1], "metric": name, **summarize_values(values)}]
    if key[2] == "pointing_game":
        rows.append(_per_class_row((key[0], key[1], name), values, labels, "pointing_game_per_class" + NONDEGENERATE))
    return rows


def _per_class_row(key: Tuple[int, str, str], hits: np.ndarray, labels: np.ndarray,
                   name: str = "pointing_game_per_class") -> Dict[str, Any]:
    value, n = per_class_pointing(hits, labels)
    return _fixed_row((key[0], key[1], name), value, n)


def _fixed_row(key: Tuple[int, str, str], value: float, n: int) -> Dict[str, Any]:
    return {"epoch": key[0], "method": key[1], "metric": key[2], "mean": value, "ci_low": value,
            "ci_high": value, "n": n}
