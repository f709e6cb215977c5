"""Sharded analysis: how the (checkpoint, image) work of `overfocus analyze` is split over ranks,
what each rank writes (a *part*), and how the parts merge into the files of a one-process run.

The split: for EVERY epoch, rank R of W takes the R-th contiguous run of the epoch's batches
(`batch_span`; batch sizes as in a one-process run, so every batch holds the same images and the
per-image numbers are those of one process). Every rank therefore loads every checkpoint (cheap)
and keeps only its own images in memory, so work is balanced to within one batch and memory per
rank does not grow with W or with the number of epochs.

A part (`analysis_io.write_part`) holds the rank's records in three sections, which the merge
joins section by section in rank order, reproducing a one-process file row for row: `batch` (map
metrics, correct, confidence; batch by batch), `coverage` (per-image coverage, metric by metric
over all images) and `human` (harmonization of the human-map images, split by batches too). Cumulative neuron
coverage is NOT a mean of per-rank fractions: every rank stores its boolean "fired for some
input" mask per layer, and the merge takes their union (`union_masks`, `cumulative_coverage`).

Example:
    >>> batch_span(24, 16, rank=0, world=2), batch_span(24, 16, rank=1, world=2)
    ((0, 16), (16, 24))
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..distributed import split_evenly
from ..errors import OverfocusError
from ..metrics.coverage import coverage_from_masks

SECTIONS = ("batch", "coverage", "human", "faithfulness")  # order of the rows in a merged records file


def batch_span(n_items: int, batch_size: int, rank: int, world: int) -> Tuple[int, int]:
    """[start, stop) item range of `rank`'s contiguous share of the batches (empty: start == stop).

    Example:
        >>> [batch_span(5, 2, r, 3) for r in range(3)]
        [(0, 2), (2, 4), (4, 5)]
        >>> batch_span(3, 4, 1, 2)
        (3, 3)
    """
    batches = split_evenly(list(range(math.ceil(n_items / batch_size))), world, rank)
    if not batches:
        return n_items, n_items
    return batches[0] * batch_size, min((batches[-1] + 1) * batch_size, n_items)


def parse_shard(text: str | Sequence[int] | None) -> Optional[Tuple[int, int]]:
    """`R/W` (0-based rank R of W shards) as (R, W); None stays None.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    if text is None:
        return None
    try:
        rank, world = (int(p) for p in (text.split("/") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise OverfocusError(f"--shard {text!r}: use R/W, e.g. 0/4 for the first of 4 shards") from None
    if world < 1 or not 0 <= rank < world:
        raise OverfocusError(f"--shard {text!r}: R must be in 0..W-1 (shards are numbered from 0)")
    return rank, world


# ---- neuron coverage across ranks -------------------------------------------------------------
def coverage_masks(cov) -> Tuple[Dict[str, np.ndarray], str]:
    """The per-layer "fired for some input" masks of a NeuronCoverage and its latent layer key."""
    masks, latent_key = cov.fired_masks()
    return {key: mask.detach().cpu().numpy().astype(bool) for key, mask in masks.items()}, latent_key


def union_masks(parts: Iterable[Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Layer-wise OR of several ranks' fired masks (a layer missing from a rank adds nothing).

    Example:
        >>> union_masks([{"a": np.array([1, 0, 0], bool)}, {"a": np.array([0, 0, 1], bool)}])["a"]
        array([ True, False,  True])
    """
    out: Dict[str, np.ndarray] = {}
    for masks in parts:
        for key, mask in masks.items():
            out[key] = out[key] | mask if key in out else mask.copy()
    return out


def cumulative_coverage(masks: Dict[str, np.ndarray], latent_key: str) -> Dict[str, float]:
    """Cumulative coverage from fired masks: NeuronCoverage.cumulative()'s definition
    (`metrics.coverage.coverage_from_masks`: channel and unit level, all layers and the latent one).

    Example:
        >>> cov = cumulative_coverage({"a#0": np.array([1, 0], bool), "b#0": np.array([1, 1], bool)}, "b#0")
        >>> cov["coverage_global"], cov["coverage_latent"]
        (0.75, 1.0)
    """
    return coverage_from_masks(masks, latent_key)


def mask_arrays(masks: Dict[str, np.ndarray], latent_key: str) -> Dict[str, np.ndarray]:
    """Fired masks as npz members: `fired_keys`, `fired_<i>`, `latent_key`."""
    keys = list(masks)
    out = {f"fired_{i}": masks[k] for i, k in enumerate(keys)}
    return {**out, "fired_keys": np.asarray(keys, dtype=str), "latent_key": np.asarray(latent_key)}


def masks_from_arrays(arrays: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], str]:
    """Inverse of `mask_arrays` (empty when the part has no coverage)."""
    if "fired_keys" not in arrays:
        return {}, ""
    masks = {str(k): arrays[f"fired_{i}"].astype(bool) for i, k in enumerate(arrays["fired_keys"])}
    return masks, str(arrays["latent_key"])


# ---- probe entries ----------------------------------------------------------------------------
def probe_part_arrays(entries: Dict[int, Tuple[Dict[str, Any], Any]], methods: Sequence[str],
                      map_shape: Tuple[int, int], num_classes: int) -> Dict[str, np.ndarray]:
    """Raw (float32, not normalised) probe maps and logits a rank met, by probe position."""
    import torch

    keys = sorted(entries)
    out = {"probe_pos": np.asarray(keys, dtype=np.int64)}
    if not keys:
        out["probe_logits"] = np.zeros((0, num_classes), np.float32)
        return {**out, **{f"probe_maps_{m}": np.zeros((0, *map_shape), np.float32) for m in methods}}
    out["probe_logits"] = torch.stack([entries[k][1] for k in keys]).float().cpu().numpy()
    for m in methods:
        out[f"probe_maps_{m}"] = torch.stack([entries[k][0][m] for k in keys]).float().cpu().numpy()
    return out


def probe_entries(arrays: Dict[str, np.ndarray], methods: Sequence[str]) -> Dict[int, Tuple[Dict[str, Any], Any]]:
    """Inverse of `probe_part_arrays`: position -> ({method: map}, logits) as CPU tensors."""
    import torch

    out = {}
    for j, k in enumerate(arrays["probe_pos"].tolist()):
        maps = {m: torch.from_numpy(arrays[f"probe_maps_{m}"][j]) for m in methods}
        out[int(k)] = (maps, torch.from_numpy(arrays["probe_logits"][j]))
    return out


# ---- the merge --------------------------------------------------------------------------------
def merge_sections(parts: Sequence[Dict[str, List[Dict[str, Any]]]],
                   cumulative_rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Records of one epoch in one-process order: each section over the ranks in rank order, the
    cumulative-coverage rows after the per-image coverage (where one process writes them)."""
    unknown = {name for part in parts for name in part} - set(SECTIONS)
    if unknown:
        raise OverfocusError(f"a part holds unknown sections {sorted(unknown)}: delete RUN/analysis/parts "
                             "and analyse again")
    rows: List[Dict[str, Any]] = []
    for name in SECTIONS:
        section = [row for part in parts for row in part.get(name, [])]
        if name == "coverage":  # one process writes it metric by metric over all images
            rows += _metric_major(section) + cumulative_rows
        else:  # batch by batch: the ranks' contiguous shares follow each other
            rows += section
    return rows


def _metric_major(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows grouped by metric (in order of first appearance), keeping their order within a metric."""
    order: Dict[str, int] = {}
    for row in rows:
        order.setdefault(row["metric"], len(order))
    return sorted(rows, key=lambda row: order[row["metric"]])
