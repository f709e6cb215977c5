"""analysis.json: the settings an analysis folder was made with, the epochs done and skipped, and
the registries' metadata of what it holds (`method_info`, `metric_info`).

Each done epoch also records the identity of the checkpoint it was computed from (`checkpoints`:
size, mtime and the file's sha256): a training that rewrote the file since (a rerun into the same
folder, a Tracker resumed from an earlier epoch) makes the epoch be analysed again, with one line
saying so. Size and mtime are compared first; the hash is read only when they differ, so a file
that was merely touched or copied is not analysed twice.

Two calls writing to one folder must agree on the compared settings; with `force` the earlier
files are removed first (only those analyze writes).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import storage as store
from ..attribution.methods import layer_methods, method_info
from ..errors import OverfocusError, option
from ..fileio import sha256_file
from ..metrics.registry import metric_info, run_metrics
from .settings import COMPARED_SETTINGS, SETTING_DEFAULTS, Settings


def prepare_folder(folder: Path, settings: Settings, classes: List[str], force: bool,
                   checkpoint_of: Optional[Callable[[int], Path]] = None) -> Dict[str, Any]:
    """analysis.json of this call: the existing one when the settings agree, else a fresh one.

    Different settings without `force` are an error rather than records of two kinds in one folder;
    with `force`, the earlier files are removed first. An epoch whose checkpoint (`checkpoint_of`)
    changed since it was analysed is no longer done.
    """
    existing = store.read_analysis_json(folder)
    fresh = fresh_state(settings, classes)
    if existing is None:
        return fresh
    if _first_mismatch(existing, fresh) is None:
        on_disk = set(store.record_epochs(folder))  # a records file removed by hand means "not done"
        damaged = damaged_epochs(folder, existing)  # truncated by a copy or a disk: done again
        for epoch, what in sorted(damaged.items()):
            print(f"overfocus analyze: {what} is damaged (truncated): epoch {epoch} is analysed again",
                  file=sys.stderr)
        changed = changed_checkpoints(existing, checkpoint_of) if checkpoint_of else {}
        for epoch, path in sorted(changed.items()):
            print(f"overfocus analyze: checkpoint {path} changed since epoch {epoch} was analysed (it was "
                  f"rewritten): epoch {epoch} is analysed again", file=sys.stderr)
        existing["epochs_done"] = sorted(e for e in existing.get("epochs_done", [])
                                         if e in on_disk and e not in damaged and e not in changed)
        return {**existing, **describe(settings)}  # an analysis.json of an older version gains the metadata
    if not force:
        refuse_mismatch(folder, existing, fresh)
    _clear_folder(folder)
    return fresh


def fresh_state(settings: Settings, classes: List[str]) -> Dict[str, Any]:
    """analysis.json of an analysis with nothing done yet."""
    return {"schema": store.ANALYSIS_SCHEMA, **settings.compared(), "metrics": settings.metrics,
            **describe(settings),
            "latent_layer": settings.latent_layer,
            "coverage_forward": "shared" if settings.coverage_shares_forward else "separate",
            "epochs_done": [], "skipped": [], "classes": list(classes)}


def refuse_mismatch(folder: Path, existing: Dict[str, Any], fresh: Dict[str, Any]) -> None:
    mismatch = _first_mismatch(existing, fresh)
    if mismatch is not None:
        key, old, new = mismatch
        raise OverfocusError(f"{folder} holds an analysis made with {key}={old!r}, this call asks for "
                             f"{key}={new!r}: pass {option('force')} to replace it, or {option('out', 'DIR')} to keep both")


def _first_mismatch(existing: Dict[str, Any], fresh: Dict[str, Any]) -> Optional[Tuple[str, Any, Any]]:
    if existing.get("schema") != store.ANALYSIS_SCHEMA:
        return ("schema", existing.get("schema"), store.ANALYSIS_SCHEMA)
    for key in COMPARED_SETTINGS:
        if existing.get(key, SETTING_DEFAULTS.get(key)) != fresh[key]:
            return (key, existing.get(key, SETTING_DEFAULTS.get(key)), fresh[key])
    return None


def _clear_folder(folder: Path) -> None:
    """Remove only the files analyze writes (the folder may hold other things)."""
    for pattern in ("records/epoch_*.csv", "probe/epoch_*.npz", "probe/images.npz", "summary.csv",
                    "onset.json", "analysis.json", "faithfulness.json", "drift/epoch_*.npz",
                    "trajectory/epoch_*.csv", "trajectory/index.json"):
        for path in folder.glob(pattern):
            path.unlink()
    store.remove_parts(folder)


def damaged_epochs(folder: Path, state: Dict[str, Any]) -> Dict[int, str]:
    """Done epochs whose records or probe file is not whole -> the damaged file (see `file_sizes`)."""
    sizes = state.get("file_sizes", {})
    damaged = {}
    for epoch in state.get("epochs_done", []):
        records_size, probe_size = sizes.get(str(epoch), (None, None))
        records, probe = store.records_path(folder, epoch), store.probe_epoch_path(folder, epoch)
        if records.is_file() and not store.intact_file(records, records_size):
            damaged[epoch] = str(records)
        elif (probe_size is not None or probe.is_file()) and not store.intact_file(probe, probe_size):
            damaged[epoch] = str(probe)
    return damaged


def checkpoint_identity(path: Path) -> Optional[Dict[str, Any]]:
    """What identifies a checkpoint file: size, mtime (ns) and sha256; None when it is gone.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "epoch_0001.pt"; _ = p.write_bytes(b"weights")
        >>> sorted(checkpoint_identity(p)), checkpoint_identity(p)["size"]
        (['mtime_ns', 'sha256', 'size'], 7)
    """
    try:
        stat = Path(path).stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_file(path)}
    except OSError:
        return None


def changed_checkpoints(state: Dict[str, Any], checkpoint_of: Callable[[int], Path]) -> Dict[int, Path]:
    """Done epochs whose checkpoint is not the file they were computed from -> its path.

    Size and mtime first; the hash only when one differs (an identical file that was touched keeps
    its epoch, and its new mtime is noted in `state`). An epoch recorded without an identity (an
    analysis.json of an older version) or whose file is gone keeps its records.
    """
    recorded = state.get("checkpoints", {})
    changed = {}
    for epoch in state.get("epochs_done", []):
        ident, path = recorded.get(str(epoch)), Path(checkpoint_of(epoch))
        try:
            stat = path.stat()
        except OSError:
            continue
        if not ident or (stat.st_size, stat.st_mtime_ns) == (ident.get("size"), ident.get("mtime_ns")):
            continue
        if stat.st_size == ident.get("size") and sha256_file(path) == ident.get("sha256"):
            ident["mtime_ns"] = stat.st_mtime_ns
            continue
        changed[epoch] = path
    return changed


def _file_sizes(folder: Path, epoch: int) -> List[Optional[int]]:
    """[records bytes, probe bytes] of an epoch just written: how a later call tells a truncated file."""
    paths = store.records_path(folder, epoch), store.probe_epoch_path(folder, epoch)
    return [p.stat().st_size if p.is_file() else None for p in paths]


def update_state(folder: Path, state: Dict[str, Any], done: set, skipped: List[Dict[str, Any]],
                  computed: List[int], identities: Optional[Dict[int, Optional[Dict[str, Any]]]] = None
                  ) -> Dict[str, Any]:
    """Record done epochs (after their files are durable, with their sizes and the identity of the
    checkpoint each was computed from) and this call's skipped ones."""
    fixed = set(computed) | {s["epoch"] for s in skipped}
    kept = [s for s in state.get("skipped", []) if s["epoch"] not in fixed and s["epoch"] not in done]
    sizes = {k: v for k, v in state.get("file_sizes", {}).items() if int(k) in done}
    sizes.update({str(e): _file_sizes(folder, e) for e in computed if e in done})
    checkpoints = {k: v for k, v in state.get("checkpoints", {}).items() if int(k) in done and int(k) not in fixed}
    checkpoints.update({str(e): v for e, v in (identities or {}).items() if e in done and v})
    state = {**state, "epochs_done": sorted(done), "skipped": sorted(kept + skipped, key=lambda s: s["epoch"]),
             "file_sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
             "checkpoints": dict(sorted(checkpoints.items(), key=lambda kv: int(kv[0])))}
    store.write_analysis_json(folder, state)
    return state



def describe(settings: Settings) -> Dict[str, Any]:
    """The registries' metadata of what this analysis holds: `method_info` and `metric_info` (the
    summary's metrics and the run's accuracies and gap that render plots beside them), how the
    layer's output was read (`layer_reshape`: a token grid's reshape, or none) and which methods'
    maps are made at that layer (`layer_methods`: the figures name the layer beside them)."""
    return {"method_info": method_info(settings.recorded_methods),
            "metric_info": metric_info([*settings.summary_metrics(), *run_metrics()]),
            "layer_reshape": settings.layer_reshape, "layer_methods": layer_methods(settings.recorded_methods)}
