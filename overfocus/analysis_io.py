"""Reading and writing the analysis folder (`RUN/analysis/`) of `overfocus analyze`.

The layout (documented in docs/analysis.md):
    analysis.json             settings of the analysis, epochs done, epochs skipped, classes
    records/epoch_NNNN.csv    long format: epoch,method,image_id,label,metric,value (one per epoch)
    summary.csv               epoch,method,metric,mean,ci_low,ci_high,n
    probe/images.npz          the probe images as the model sees them (uint8), boxes, labels, ids
    probe/epoch_NNNN.npz      per method `maps_<method>` float16 in [0, 1], `pred`, `conf`, `epoch`

Everything here is plain Python and numpy (no torch, no pandas) so that notebooks and the render
stage can read an analysis cheaply.

Example:
    >>> from overfocus.analysis_io import read_summary
    >>> rows = read_summary("runs/demo")                      # doctest: +SKIP
    >>> [r["mean"] for r in rows if r["metric"] == "area_ratio" and r["method"] == "grad_cam"]  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from .errors import OverfocusError
from .rundir import atomic_write_bytes, atomic_write_json, atomic_write_text

ANALYSIS_SCHEMA = 1
RECORD_COLUMNS = ("epoch", "method", "image_id", "label", "metric", "value")
SUMMARY_COLUMNS = ("epoch", "method", "metric", "mean", "ci_low", "ci_high", "n")
MODEL_METHOD = "model"  # method name of image-level numbers that do not depend on a map
ALL_IMAGES = "__all__"  # image_id of per-epoch numbers over all images (cumulative coverage)


def analysis_dir(run_dir: Path | str, out: Optional[Path | str] = None) -> Path:
    """The analysis folder of a run: `out` when given, else `RUN/analysis`."""
    return Path(out) if out else Path(run_dir) / "analysis"


def records_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / "records" / f"epoch_{epoch:04d}.csv"


def probe_images_path(folder: Path) -> Path:
    return Path(folder) / "probe" / "images.npz"


def probe_epoch_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / "probe" / f"epoch_{epoch:04d}.npz"


def record_epochs(folder: Path) -> List[int]:
    """Epochs that have a records file, sorted."""
    out = []
    for p in (Path(folder) / "records").glob("epoch_*.csv"):
        try:
            out.append(int(p.stem.removeprefix("epoch_")))
        except ValueError:
            continue
    return sorted(out)


# ---- analysis.json ------------------------------------------------------------------------------
def read_analysis_json(folder: Path) -> Optional[Dict[str, Any]]:
    """analysis.json as a dict, or None when there is none yet."""
    path = Path(folder) / "analysis.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise OverfocusError(f"{path} is not valid JSON ({exc.msg}): delete it or pass --force") from None


def write_analysis_json(folder: Path, data: Dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / "analysis.json", data)


# ---- CSV tables ---------------------------------------------------------------------------------
def _cell(value: Any, float_format: str) -> str:
    """CSV text of one value: NaN/None as empty, floats in `float_format` ("" = repr, exact)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else (format(value, float_format) if float_format else repr(value))
    return str(value)


def format_csv(rows: Iterable[Dict[str, Any]], columns: Sequence[str], float_format: str = "") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c], float_format) for c in columns])
    return buffer.getvalue()


def write_csv(path: Path, rows: Iterable[Dict[str, Any]], columns: Sequence[str], float_format: str = "") -> None:
    """Write rows (dicts) as a CSV atomically; records use ".9g" (float32 values round-trip exactly)."""
    atomic_write_text(Path(path), format_csv(rows, columns, float_format))


def _float(text: str) -> float:
    return float(text) if text != "" else math.nan


def iter_record_file(path: Path) -> Iterator[Dict[str, Any]]:
    """Rows of one records file, typed: epoch/label int, value float (NaN where empty)."""
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            yield {"epoch": int(row["epoch"]), "method": row["method"], "image_id": row["image_id"],
                   "label": int(row["label"]), "metric": row["metric"], "value": _float(row["value"])}


def read_records(run_dir: Path | str, epochs: Optional[Iterable[int]] = None,
                 out: Optional[Path | str] = None) -> List[Dict[str, Any]]:
    """All per-image records of an analysed run (long format), in epoch order.

    Args:
        run_dir: the run directory.
        epochs: only these epochs (default: every analysed epoch).
        out: the analysis folder when it is not `RUN/analysis`.

    Returns:
        list of dicts with keys epoch, method, image_id, label, metric, value (NaN = undefined).

    Example:
        >>> rows = read_records("runs/demo", epochs=[0, 10])              # doctest: +SKIP
        >>> {r["metric"] for r in rows}                                     # doctest: +SKIP
        {'area_ratio', 'box_iou', 'hit', 'pointing_game', 'correct', ...}
    """
    folder = _existing_analysis(run_dir, out)
    wanted = set(epochs) if epochs is not None else None
    rows: List[Dict[str, Any]] = []
    for epoch in record_epochs(folder):
        if wanted is None or epoch in wanted:
            rows.extend(iter_record_file(records_path(folder, epoch)))
    return rows


def read_summary(run_dir: Path | str, out: Optional[Path | str] = None) -> List[Dict[str, Any]]:
    """summary.csv as a list of dicts (epoch and n int; mean, ci_low, ci_high float).

    Example:
        >>> rows = read_summary("runs/demo")                                       # doctest: +SKIP
        >>> [(r["epoch"], r["mean"]) for r in rows if r["metric"] == "hit"]         # doctest: +SKIP
    """
    path = _existing_analysis(run_dir, out) / "summary.csv"
    if not path.is_file():
        raise OverfocusError(f"{path} does not exist: run `overfocus analyze {run_dir}` first")
    with open(path, newline="") as fh:
        return [{"epoch": int(r["epoch"]), "method": r["method"], "metric": r["metric"],
                 "mean": _float(r["mean"]), "ci_low": _float(r["ci_low"]), "ci_high": _float(r["ci_high"]),
                 "n": int(r["n"])} for r in csv.DictReader(fh)]


def _existing_analysis(run_dir: Path | str, out: Optional[Path | str]) -> Path:
    folder = analysis_dir(run_dir, out)
    if not (folder / "analysis.json").is_file():
        raise OverfocusError(f"{folder} holds no analysis (no analysis.json): run "
                             f"`overfocus analyze {run_dir}` first")
    return folder


def to_dataframe(rows: List[Dict[str, Any]]):
    """The rows as a pandas DataFrame, for those who have pandas (it is not a dependency).

    Example:
        >>> df = to_dataframe(read_summary("runs/demo"))                 # doctest: +SKIP
        >>> df.pivot_table(index="epoch", columns="method", values="mean")  # doctest: +SKIP
    """
    try:
        import pandas as pd
    except ImportError:
        raise OverfocusError("to_dataframe needs pandas (pip install pandas); the rows are plain "
                             "dicts and work without it") from None
    return pd.DataFrame(rows)


# ---- probe npz files ----------------------------------------------------------------------------
def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_npz(path: Path) -> Dict[str, np.ndarray]:
    """All arrays of an npz file (no pickles allowed)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def read_probe(run_dir: Path | str, epoch: Optional[int] = None,
               out: Optional[Path | str] = None) -> Dict[str, np.ndarray]:
    """The probe images (`images`, `boxes`, `labels`, `image_ids`, `classes`), plus one epoch's
    `maps_<method>`, `pred`, `conf` and `epoch` when `epoch` is given.

    Example:
        >>> probe = read_probe("runs/demo", epoch=5)                       # doctest: +SKIP
        >>> probe["images"].shape, probe["maps_grad_cam"].dtype             # doctest: +SKIP
        ((16, 64, 64, 3), dtype('float16'))
    """
    folder = _existing_analysis(run_dir, out)
    data = read_npz(probe_images_path(folder))
    if epoch is not None:
        path = probe_epoch_path(folder, epoch)
        if not path.is_file():
            raise OverfocusError(f"epoch {epoch} has no probe maps in {folder}: analyse it first "
                                 f"(`overfocus analyze {run_dir} --epochs {epoch}`)")
        data.update(read_npz(path))
    return data
