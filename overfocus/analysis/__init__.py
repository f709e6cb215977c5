"""The analysis of a run (`overfocus analyze`) and the evaluation core it shares with `audit`.

Modules, one job each:
    settings   RunInfo (from run.json), Settings (checked choices), Runtime, epoch selection
    runsource  where checkpoints come from: a run directory or a folder from any training
    source     the analysed images batch by batch (BatchSource), the probe set, subsets
    core       evaluate_batch: normalise, forward with coverage hooks, attribute, map metrics
    summary    summarize_values / per_class_pointing / summarize_records: bootstrap means
    evaluator  EpochEvaluator: one checkpoint's records, probe maps and coverage
    runner     analyze(): the plan, the loop over checkpoints, parts and merge, analysis.json
    shards     how a sharded analysis splits the batches and merges the parts
    storage    the analysis folder's files, read and written (numpy only, no torch)

Names are imported lazily, so reading an analysis (`storage`) never imports torch.

Example:
    >>> from overfocus.analysis import parse_epochs
    >>> parse_epochs("3,50", range(12))
    ([3], [50])
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "analyze": "runner", "preflight": "runner", "AnalysisResult": "runner",
    "parse_epochs": "settings", "available_epochs": "settings", "make_runtime": "settings",
    "IMAGE_METRICS": "settings", "RunInfo": "settings", "Settings": "settings",
    "evaluate_batch": "core", "summarize_records": "summary", "summarize_values": "summary",
    "per_class_pointing": "summary", "rebuild_summary": "summary",
    "read_records": "storage", "read_summary": "storage", "read_probe": "storage", "to_dataframe": "storage",
    "parse_summary_file": "storage", "FolderOptions": "runsource", "open_source": "runsource",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
