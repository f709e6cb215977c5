"""Explanation drift along training: how much each image's map changes from one analysed epoch to
the next, and whose localisation outcome flips.

Per image and method, with `prev` the previous ANALYSED epoch (epoch - 1 when every epoch is
analysed; records of the first analysed epoch have none):

- `drift` = 1 - Spearman rho of its map at the epoch with its map at `prev`, both at the
  attribution layer's resolution (the small maps of `drift/epoch_NNNN.npz`, so memory stays small
  on large test sets); 0 = the same pixel ranking, 1 = unrelated, 2 = reversed; NaN where either
  map is constant;
- `hit_flip` / `pointing_game_flip`: 1 when its hit (box IoU >= 0.5) / pointing-game outcome
  differs from `prev`'s (data with boxes only).

They are records like the others (`trajectory/epoch_NNNN.csv`, summarised into summary.csv: the
flip share is their mean); `trajectory/index.json` says which `prev` each file compares with, so
a file is made again when the analysed epochs change. The stabilisation epoch of a method (in
onset.json, `stabilisation_epoch`) is the first epoch from which the median drift stays at or
below `DRIFT_LEVEL` = 0.1 (Spearman >= 0.9) at every later analysed epoch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from ..fileio import atomic_write_json
from ..metrics.sanity import map_spearman
from . import storage as store

DRIFT_LEVEL = 0.1
FLIPPED = {"hit": "hit_flip", "pointing_game": "pointing_game_flip"}
INDEX = "index.json"


def drift_rows(epoch: int, small: Dict[str, np.ndarray], small_prev: Dict[str, np.ndarray],
               labels: Dict[str, int]) -> List[Dict[str, Any]]:
    """`drift` records of one epoch from its small maps and the previous epoch's (matched by image id).

    Example:
        >>> a = {"image_ids": np.array(["x", "y"]), "maps_grad_cam": np.random.rand(2, 4, 4)}
        >>> rows = drift_rows(3, a, a, {"x": 0, "y": 1})
        >>> [(r["image_id"], r["metric"], round(r["value"], 6)) for r in rows]
        [('x', 'drift', 0.0), ('y', 'drift', 0.0)]
    """
    ids = [str(i) for i in small.get("image_ids", [])]
    before = {str(i): k for k, i in enumerate(small_prev.get("image_ids", []))}
    both = [(k, before[i]) for k, i in enumerate(ids) if i in before]
    rows: List[Dict[str, Any]] = []
    if not both:
        return rows
    now_idx, prev_idx = (list(t) for t in zip(*both))
    for key in sorted(k for k in small if k.startswith("maps_") and k in small_prev):
        method = key[len("maps_"):]
        a = torch.from_numpy(np.asarray(small[key], dtype=np.float32)[now_idx])
        b = torch.from_numpy(np.asarray(small_prev[key], dtype=np.float32)[prev_idx])
        drift = (1.0 - map_spearman(a, b)).tolist()
        rows += [{"epoch": epoch, "method": method, "image_id": ids[k], "label": labels.get(ids[k], -1),
                  "metric": "drift", "value": v} for k, v in zip(now_idx, drift)]
    return rows


def flip_rows(epoch: int, records: List[Dict[str, Any]], records_prev: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """`hit_flip` / `pointing_game_flip` records: 1 where the outcome differs from the previous epoch's.

    Example:
        >>> now = [{"epoch": 2, "method": "m", "image_id": "a", "label": 0, "metric": "hit", "value": 1.0}]
        >>> then = [{"epoch": 1, "method": "m", "image_id": "a", "label": 0, "metric": "hit", "value": 0.0}]
        >>> [(r["metric"], r["value"]) for r in flip_rows(2, now, then)]
        [('hit_flip', 1.0)]
    """
    def outcomes(rows):
        return {(r["method"], r["image_id"], r["metric"]): r for r in rows
                if r["metric"] in FLIPPED and r["image_id"] != store.ALL_IMAGES and r["value"] == r["value"]}

    now, then = outcomes(records), outcomes(records_prev)
    return [{"epoch": epoch, "method": key[0], "image_id": key[1], "label": r["label"], "metric": FLIPPED[key[2]],
             "value": float((r["value"] > 0.5) != (then[key]["value"] > 0.5))}
            for key, r in now.items() if key in then]


def update_trajectory(folder: Path, epochs: Sequence[int], changed: Sequence[int]) -> bool:
    """Write `trajectory/epoch_NNNN.csv` of every analysed epoch that has a previous one, where its
    pair of epochs is new or one of them was (re)computed (`changed`); remove files of epochs no
    longer analysed. True when any file changed (the summary must be rebuilt)."""
    folder = Path(folder)
    index_path = folder / "trajectory" / INDEX
    try:
        index = {int(k): int(v) for k, v in json.loads(index_path.read_text()).items()}
    except (OSError, ValueError):
        index = {}
    epochs, changed = sorted(epochs), set(changed)
    wanted = {e: p for p, e in zip(epochs, epochs[1:])}
    touched = False
    for epoch in [e for e in index if e not in wanted]:
        store.trajectory_path(folder, epoch).unlink(missing_ok=True)
        touched = True
    for epoch, prev in wanted.items():
        path = store.trajectory_path(folder, epoch)
        if index.get(epoch) == prev and path.is_file() and not ({epoch, prev} & changed):
            continue
        rows = epoch_rows(folder, epoch, prev)
        if rows is None:
            continue
        store.write_csv(path, rows, store.RECORD_COLUMNS, ".9g")
        index[epoch] = prev
        touched = True
    kept = {e: p for e, p in index.items() if e in wanted}
    if touched or kept != index:  # a call with nothing new writes nothing
        atomic_write_json(index_path, {str(e): p for e, p in sorted(kept.items())})
    return touched


def epoch_rows(folder: Path, epoch: int, prev: int):
    """The trajectory records of `epoch` against `prev`; None when a small-maps file is missing
    (an analysis made before drift existed: its epochs have none until analysed again)."""
    paths = store.small_maps_path(folder, epoch), store.small_maps_path(folder, prev)
    records = list(store.iter_record_file(store.records_path(folder, epoch)))
    records_prev = list(store.iter_record_file(store.records_path(folder, prev)))
    rows = flip_rows(epoch, records, records_prev)
    if all(p.is_file() for p in paths):
        labels = {r["image_id"]: r["label"] for r in records if r["metric"] == "correct"}
        rows = drift_rows(epoch, store.read_npz(paths[0]), store.read_npz(paths[1]), labels) + rows
    elif not rows:
        return None
    return rows


def read_trajectory(folder: Path, epoch: int) -> List[Dict[str, Any]]:
    """The trajectory records of an epoch ([] when there are none)."""
    path = store.trajectory_path(folder, epoch)
    return list(store.iter_record_file(path)) if path.is_file() else []
