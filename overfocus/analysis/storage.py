"""Reading and writing the analysis folder (`RUN/analysis/`) of `overfocus analyze`.

The layout (documented in docs/analysis.md):
    analysis.json             settings of the analysis, epochs done, epochs skipped, classes
    records/epoch_NNNN.csv    long format: epoch,method,image_id,label,metric,value (one per epoch)
    summary.csv               epoch,method,metric,mean,ci_low,ci_high,n
    probe/images.npz          the probe images as the model sees them (uint8), boxes, labels, ids
    probe/epoch_NNNN.npz      per method `maps_<method>` float16 in [0, 1], `pred`, `conf`, `epoch`
    parts/                    only while a sharded analysis is unfinished (docs/distributed.md):
      epoch_NNNN.rankR-of-W.npz   rank R's probe entries, fired-neuron masks, `meta` (its image span)
      epoch_NNNN.rankR-of-W.csv   rank R's records with a `section` column; written last (= done)

Everything here is plain Python and numpy (no torch, no pandas) so that notebooks and the render
stage can read an analysis cheaply.

Example:
    >>> from overfocus.analysis.storage import read_summary
    >>> rows = read_summary("runs/demo")                      # doctest: +SKIP
    >>> [r["mean"] for r in rows if r["metric"] == "area_ratio" and r["method"] == "grad_cam"]  # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError, option
from ..fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

ANALYSIS_SCHEMA = 1
RECORD_COLUMNS = ("epoch", "method", "image_id", "label", "metric", "value")
SUMMARY_COLUMNS = ("epoch", "method", "metric", "mean", "ci_low", "ci_high", "n")
PART_COLUMNS = ("section", *RECORD_COLUMNS)  # section: where the rows go in the merged file
MODEL_METHOD = "model"  # method name of image-level numbers that do not depend on a map
ALL_IMAGES = "__all__"  # image_id of per-epoch numbers over all images (cumulative coverage)
DEGENERATE = "degenerate"  # per image and method: 1 when the map is all zero or holds NaN/inf


def analysis_dir(run_dir: Path | str, out: Optional[Path | str] = None) -> Path:
    """The analysis folder of a run: `out` when given, else `RUN/analysis`."""
    return Path(out) if out else Path(run_dir) / "analysis"


def records_path(folder: Path, epoch: int) -> Path:
    return Path(folder) / "records" / f"epoch_{epoch:04d}.csv"


def probe_images_path(folder: Path) -> Path:
    return Path(folder) / "probe" / "images.npz"


def small_maps_path(folder: Path, epoch: int) -> Path:
    """The maps of every analysed image at the attribution layer's resolution (float16), for drift."""
    return Path(folder) / "drift" / f"epoch_{epoch:04d}.npz"


def trajectory_path(folder: Path, epoch: int) -> Path:
    """Records comparing an epoch with the previous analysed one (drift, hit / pointing flips)."""
    return Path(folder) / "trajectory" / f"epoch_{epoch:04d}.csv"


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
        data = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise OverfocusError(f"{path} is not valid JSON ({exc.msg}): delete it or pass {option('force')}") from None
    except (UnicodeDecodeError, RecursionError):
        raise OverfocusError(f"{path} is not an analysis.json (not UTF-8 text, or nested too deeply): delete it or "
                             f"pass {option('force')}") from None
    if not isinstance(data, dict):
        raise OverfocusError(f"{path} is not an analysis.json (it holds no object): delete it or pass "
                             f"{option('force')}")
    return data


def write_analysis_json(folder: Path, data: Dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / "analysis.json", data)


FAITHFULNESS_FILE = "faithfulness.json"  # which images the faithfulness and sanity metrics used


def write_faithfulness(folder: Path, data: Dict[str, Any]) -> None:
    atomic_write_json(Path(folder) / FAITHFULNESS_FILE, data)


def read_faithfulness(folder: Path) -> Optional[Dict[str, Any]]:
    """faithfulness.json of an analysis folder, or None."""
    try:
        return json.loads((Path(folder) / FAITHFULNESS_FILE).read_text())
    except (OSError, ValueError):
        return None


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


def _float(text: Optional[str]) -> float:
    return float(text) if text not in ("", None) else math.nan


def _typed_record(row: Dict[str, str]) -> Dict[str, Any]:
    return {"epoch": int(row["epoch"]), "method": row["method"], "image_id": row["image_id"],
            "label": int(row["label"]), "metric": row["metric"], "value": _float(row["value"])}


def iter_record_file(path: Path) -> Iterator[Dict[str, Any]]:
    """Rows of one records file, typed: epoch/label int, value float (NaN where empty)."""
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            yield _typed_record(row)


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
    return parse_summary_file(path)


SUMMARY_COLUMNS = ("epoch", "method", "metric", "mean", "ci_low", "ci_high", "n")


def parse_summary_file(path: Path) -> List[Dict[str, Any]]:
    """Rows of one summary.csv, typed (empty cells -> NaN); the one parser of that format.

    A file without the expected columns is an OverfocusError telling the user to re-run analyze.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in SUMMARY_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise OverfocusError(f"{path} lacks the columns {', '.join(absent)}: re-run `overfocus analyze`")
        return [{"epoch": int(r["epoch"]), "method": r["method"], "metric": r["metric"],
                 "mean": _float(r["mean"]), "ci_low": _float(r["ci_low"]), "ci_high": _float(r["ci_high"]),
                 "n": int(_float(r["n"] or "0"))} for r in reader]


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
def intact_file(path: Path, size: Optional[int] = None) -> bool:
    r"""True when `path` looks whole: the recorded `size` (when known), a CSV ending with its last
    line's newline, an .npz whose zip directory (at its end) is readable. Cheap: no full read.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.csv"
        >>> _ = p.write_text("a,b\n1,2\n"); intact_file(p), intact_file(p, size=3)
        (True, False)
        >>> _ = p.write_text("a,b\n1,"); intact_file(p)
        False
    """
    path = Path(path)
    try:
        actual = path.stat().st_size
        if size is not None and actual != size:
            return False
        if path.suffix == ".npz":
            return zipfile.is_zipfile(path)
        with open(path, "rb") as fh:
            fh.seek(max(actual - 1, 0))
            return actual > 0 and fh.read(1) == b"\n"
    except OSError:
        return False


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


# ---- parts of a sharded analysis ----------------------------------------------------------------
_PART_NAME = re.compile(r"^epoch_(\d+)\.rank(\d+)-of-(\d+)\.csv$")


def part_paths(folder: Path, epoch: int, rank: int, world: int) -> Tuple[Path, Path]:
    """(records csv, arrays npz) of rank `rank` of `world` for one epoch, under `parts/`."""
    stem = Path(folder) / "parts" / f"epoch_{epoch:04d}.rank{rank}-of-{world}"
    return stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".npz")


def write_part(folder: Path, epoch: int, rank: int, world: int, sections: Dict[str, List[Dict[str, Any]]],
               arrays: Dict[str, np.ndarray], meta: Dict[str, Any]) -> None:
    """Write one rank's part: the npz first, the csv last, so an existing csv means a finished part.

    Example:
        >>> write_part(folder, 3, 0, 2, {"batch": rows}, {}, {"span": [0, 16]})  # doctest: +SKIP
    """
    csv_path, npz_path = part_paths(folder, epoch, rank, world)
    write_npz(npz_path, meta=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
    rows = [{**r, "section": name} for name, part in sections.items() for r in part]
    write_csv(csv_path, rows, PART_COLUMNS, ".9g")


def part_meta(folder: Path, epoch: int, rank: int, world: int) -> Optional[Dict[str, Any]]:
    """The `meta` of a finished part (both files present and readable), else None."""
    csv_path, npz_path = part_paths(folder, epoch, rank, world)
    if not (csv_path.is_file() and npz_path.is_file()):
        return None
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            return json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError):  # unreadable: computed again, never trusted
        return None


def read_part(folder: Path, epoch: int, rank: int, world: int) -> Tuple[Dict[str, List[Dict[str, Any]]],
                                                                        Dict[str, np.ndarray]]:
    """One rank's part: its records grouped by section (in file order) and its arrays."""
    csv_path, npz_path = part_paths(folder, epoch, rank, world)
    sections: Dict[str, List[Dict[str, Any]]] = {}
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            sections.setdefault(row["section"], []).append(_typed_record(row))
    return sections, read_npz(npz_path)


def part_worlds(folder: Path, epoch: int) -> List[int]:
    """World sizes of which at least one finished part of `epoch` is on disk."""
    worlds = set()
    for path in (Path(folder) / "parts").glob(f"epoch_{epoch:04d}.rank*-of-*.csv"):
        match = _PART_NAME.match(path.name)
        if match:
            worlds.add(int(match.group(3)))
    return sorted(worlds)


def remove_parts(folder: Path, epochs: Optional[Iterable[int]] = None) -> None:
    """Delete the parts of `epochs` (default all), leftovers of killed writes included; `[]` deletes
    nothing. The emptied `parts/` folder itself is removed only when no epoch or all epochs are
    named: while ranks still write parts of later epochs, removing it could pull the folder from
    under a rank between its mkdir and its write."""
    parts = Path(folder) / "parts"
    if not parts.is_dir():
        return
    epochs = None if epochs is None else list(epochs)
    names = ["*"] if epochs is None else [f"epoch_{e:04d}.*" for e in epochs]
    for name in names:
        for path in [*parts.glob(name), *parts.glob("." + name + ".tmp")]:
            path.unlink(missing_ok=True)
    if not epochs and not any(parts.iterdir()):
        parts.rmdir()
