"""Reading finished runs for the recipes' table and figure scripts (standard library only).

These scripts read only the files that `overfocus train` and `overfocus analyze` wrote
(`run.json`, `metrics.jsonl`, `<analysis>/summary.csv`), so they run on any machine that has the
run folders, without torch and without the overfocus package.

Runs are grouped by the name of the folder that holds them: `runs/table/sgdrop/seed0` and
`runs/table/sgdrop/seed1` are two seeds of group `sgdrop`.

Example:
    >>> groups = group_runs(["runs/t/vanilla/seed0", "runs/t/sgdrop/seed0", "runs/t/vanilla/seed1"])
    >>> {k: len(v) for k, v in groups.items()}
    {'vanilla': 2, 'sgdrop': 1}
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

Summary = Dict[Tuple[int, str, str], float]  # (epoch, method, metric) -> mean


class RunsError(Exception):
    """A run folder lacks a file the scripts need; the message says which and how to make it."""


def group_runs(paths: Sequence[str]) -> Dict[str, List[Path]]:
    """Group run folders by their parent folder's name, in order of first appearance."""
    groups: Dict[str, List[Path]] = {}
    for p in paths:
        path = Path(p)
        # abspath, not resolve(): a symlinked run keeps the group of the folder it is linked into
        groups.setdefault(Path(os.path.abspath(path)).parent.name, []).append(path)
    return groups


def read_manifest(run: Path) -> dict:
    """run.json of a run (written by `overfocus train`)."""
    path = run / "run.json"
    if not path.is_file():
        raise RunsError(f"{run} is not a run folder ({path} is missing): pass folders made by `overfocus train`")
    return json.loads(path.read_text())


def read_metrics(run: Path) -> Dict[int, dict]:
    """metrics.jsonl of a run, keyed by epoch (the last line of an epoch wins, as after a resume)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise RunsError(f"{path} is missing: train the run with `overfocus train`")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {int(r["epoch"]): r for r in rows}


def read_summary(folder: Path) -> Summary:
    """summary.csv of an analysis folder as {(epoch, method, metric): mean}; empty means are skipped."""
    path = folder / "summary.csv"
    if not path.is_file():
        raise RunsError(f"{path} is missing: run `overfocus analyze {folder.parent}` first")
    out: Summary = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["mean"] not in ("", "nan"):
                out[(int(row["epoch"]), row["method"], row["metric"])] = float(row["mean"])
    return out


def summary_epochs(summary: Summary, method: str) -> List[int]:
    """The epochs for which `method` has at least one metric, sorted."""
    return sorted({e for e, m, _ in summary if m == method})


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value).

    Example:
        >>> mean_std([1.0, 2.0, 3.0])
        (2.0, 1.0)
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    write_atomically(path, text.encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Bytes to a temporary file in the target folder, renamed into place (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


def pick_epoch(summary: Summary, method: str, wanted: Optional[int], where: Path) -> int:
    """`wanted`, or the last epoch analysed for `method`; an unanalysed epoch is an error."""
    epochs = summary_epochs(summary, method)
    if not epochs:
        raise RunsError(f"{where}/summary.csv has no rows for method {method!r}: analyze with --methods {method}")
    if wanted is None:
        return epochs[-1]
    if wanted not in epochs:
        raise RunsError(f"epoch {wanted} is not analysed in {where} (analysed: {epochs[0]}..{epochs[-1]})")
    return wanted
