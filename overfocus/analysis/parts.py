"""The parts protocol of a sharded analysis (torchrun ranks, `--shard R/W`).

Each process analyses its share of a checkpoint's batches (`shards.batch_span`) and writes it as
a part (`storage.write_part`), with what it was made from (`meta`: settings, spans, the
checkpoint's size and mtime), so a finished part is reused by a later call only when all of it
matches. Rank 0 merges a complete set of parts (any world size) into the records, probe and
small-map files a one-process run writes (`shards.merge_sections`, the coverage masks' union).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import storage as store
from ..errors import OverfocusError
from .core import NonFiniteModel
from .evaluator import AnalysisData, EpochEvaluator, cumulative_rows
from .runsource import RunSource
from .settings import Settings
from .shards import (batch_span, coverage_masks, cumulative_coverage, mask_arrays, masks_from_arrays, merge_sections,
                     probe_entries, probe_part_arrays, union_masks)

WriteEpoch = Callable[[Path, int, List[Dict[str, Any]], Dict[str, Any], Dict[str, Any]], None]


class EpochParts:
    """Writes, reuses and merges the parts of one analysis (see the module docstring)."""

    def __init__(self, source: RunSource, settings: Settings, data: AnalysisData, evaluator: EpochEvaluator,
                 batch_size: int, write_epoch: WriteEpoch):
        self.source, self.info, self.settings, self.data = source, source.info, settings, data
        self.evaluator, self.batch_size, self.write_epoch = evaluator, batch_size, write_epoch
        self.reused: List[int] = []  # epochs whose finished part this process reused

    def meta(self, epoch: int, rank: int, world: int) -> Dict[str, Any]:
        """What a part was made from; a part on disk is reused only when all of it matches."""
        ckpt = self.source.checkpoint(epoch)
        stat = ckpt.stat() if ckpt.is_file() else None
        n, n_human = self.data.n_analysed, self.data.n_human
        n_faithful = len(self.data.faithful_ids)
        return {"settings": self.settings.compared(), "batch_size": self.batch_size, "n": n,
                "n_human": n_human, "span": list(batch_span(n, self.batch_size, rank, world)),
                "human_span": list(batch_span(n_human, self.batch_size, rank, world)),
                "faithful_span": list(batch_span(n_faithful, self.batch_size, rank, world)),
                "checkpoint": [stat.st_size, stat.st_mtime_ns] if stat else None}

    def write(self, folder: Path, epoch: int, rank: int, world: int) -> Optional[str]:
        """This rank's share of one checkpoint, written as a part (or a finished one reused)."""
        meta = self.meta(epoch, rank, world)
        if store.part_meta(folder, epoch, rank, world) == meta:
            self.reused.append(epoch)
            return None
        try:
            self.evaluator.load(self.source, epoch)
        except OverfocusError as exc:
            return str(exc)
        # probe images outside the analysed ones are rank 0's job (one process computes them too)
        try:
            out = self.evaluator.evaluate(epoch, probe_positions=self.data.uncovered_probe() if rank == 0 else [])
        except NonFiniteModel as exc:
            return str(exc)
        size = self.info.image_size
        arrays = probe_part_arrays(out.probe, self.settings.methods, (size, size), self.info.num_classes)
        if out.cov is not None:
            arrays.update(mask_arrays(*coverage_masks(out.cov)))
        arrays.update({f"small_{k}": v for k, v in out.small_arrays().items()})
        store.write_part(folder, epoch, rank, world, out.sections, arrays, meta)
        return None

    def complete_world(self, folder: Path, epoch: int) -> Optional[int]:
        """World size of a complete, up-to-date set of parts of `epoch` on disk (any world size)."""
        for world in store.part_worlds(folder, epoch):
            if all(store.part_meta(folder, epoch, r, world) == self.meta(epoch, r, world)
                   for r in range(world)):
                return world
        return None

    def merge(self, folder: Path, epoch: int, world: int) -> Optional[str]:
        """Rank 0: the parts of one epoch -> the records and probe files of a one-process run."""
        parts = [store.read_part(folder, epoch, r, world) for r in range(world)]
        cumulative: List[Dict[str, Any]] = []
        settings = self.settings
        if settings.coverage:
            masks = [masks_from_arrays(arrays) for _, arrays in parts]
            latent_key = next((key for _, key in masks if key), "")
            totals = cumulative_coverage(union_masks(m for m, _ in masks), latent_key)
            cumulative = cumulative_rows(epoch, totals)
        probe: Dict[int, tuple] = {}
        for _, arrays in parts:
            probe.update(probe_entries(arrays, settings.methods))
        rows = merge_sections([sections for sections, _ in parts], cumulative)
        small = {k[len("small_"):]: np.concatenate([arrays[k] for _, arrays in parts if k in arrays])
                 for k in sorted({k for _, arrays in parts for k in arrays if k.startswith("small_")})}
        self.write_epoch(folder, epoch, rows, self.evaluator.probe_arrays(epoch, probe), small)
        store.remove_parts(folder, [epoch])
        return None

    def report_reused(self, part: Tuple[int, int]) -> None:
        if self.reused:
            rank, world = part
            print(f"overfocus analyze: rank {rank} of {world} reused its finished parts of epochs "
                  f"{sorted(self.reused)}", file=sys.stderr)
