"""Choosing a checkpoint on attention as well as accuracy: the Pareto-optimal epochs of a run.

Every analysed epoch is a point whose coordinates are per-epoch objectives: the run's own
numbers of metrics.jsonl (`test_acc`, `gap`, ...) and the summary's means of the analysis
(`energy_pg_nondegenerate`, `area_ratio_nondegenerate`, ... of one attribution method, or of
the model). Which way is better comes from the metric registry (`higher_is_better`), never from
a table here. An epoch is on the front when no other epoch is at least as good on every
objective and better on one. The knee (`pick="knee"`) is the front's epoch closest to the ideal
point once each objective is scaled to [0, 1] over the front (1 = the front's best value).

Intervals: the summary's 95% bootstrap interval over images; for an accuracy of metrics.jsonl
the 95% Wilson interval over the run's test (or train) set size from run.json.

Example:
    >>> pareto_front({0: (0.2, 0.5), 1: (0.6, 0.4), 2: (0.5, 0.3), 3: (0.6, 0.45)}, (True, True))
    [0, 3]
    >>> knee_epoch({1: (1.0, 0.0), 2: (0.5, 0.9), 3: (0.0, 1.0)}, (True, True))
    2
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import OverfocusError
from ..fileio import atomic_write_json
from ..metrics.registry import METRICS, SUMMARY_METRICS
from ..registry import did_you_mean
from ..runs.rundir import RunDir
from .storage import read_summary

DEFAULT_OBJECTIVES = ("test_acc", "energy_pg_nondegenerate", "area_ratio_nondegenerate")
SELECT_FILE = "select.json"
SELECT_SCHEMA = 1
PICKS = ("knee",)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Objective:
    """One coordinate of the front: a metric name, where it is read, and its direction."""

    name: str
    title: str
    higher_is_better: bool
    source: str  # "metrics" (metrics.jsonl) or "summary" (summary.csv)


def objective(name: str) -> Objective:
    """The registry's description of an objective; an unknown name is one line with a suggestion.

    Example:
        >>> objective("energy_pg_nondegenerate").higher_is_better, objective("gap").higher_is_better
        (True, False)
    """
    for registry in (METRICS, SUMMARY_METRICS):
        if name in registry:
            spec = registry.get(name)
            return Objective(name, spec.title, spec.higher_is_better,
                             "metrics" if "metrics" in spec.appears_in else "summary")
    known = [*METRICS.names(), *SUMMARY_METRICS.names()]
    raise OverfocusError(f"unknown objective {name!r}{did_you_mean(name, known)}: use metric names of "
                         "`overfocus list` or the run's metrics.jsonl, e.g. --objectives "
                         + ",".join(DEFAULT_OBJECTIVES))


def wilson(p: float, n: int) -> Tuple[float, float]:
    """95% Wilson score interval of a proportion `p` measured on `n` items.

    Example:
        >>> [round(v, 3) for v in wilson(0.5, 100)]
        [0.404, 0.596]
    """
    if not n or not math.isfinite(p):
        return (math.nan, math.nan)
    z2 = Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (centre - half, centre + half)


def dominates(a: Sequence[float], b: Sequence[float], higher: Sequence[bool]) -> bool:
    """True when `a` is at least as good as `b` everywhere and better somewhere.

    Example:
        >>> dominates((1, 1), (1, 0), (True, True)), dominates((1, 0), (0, 1), (True, True))
        (True, False)
    """
    better = [x > y if h else x < y for x, y, h in zip(a, b, higher)]
    worse = [x < y if h else x > y for x, y, h in zip(a, b, higher)]
    return any(better) and not any(worse)


def pareto_front(points: Mapping[int, Sequence[float]], higher: Sequence[bool]) -> List[int]:
    """The epochs no other epoch dominates, sorted (points with a NaN coordinate are left out)."""
    finite = {e: p for e, p in points.items() if all(math.isfinite(v) for v in p)}
    return sorted(e for e, p in finite.items() if not any(dominates(q, p, higher) for q in finite.values()))


def knee_epoch(front: Mapping[int, Sequence[float]], higher: Sequence[bool]) -> Optional[int]:
    """The front's epoch nearest the ideal point, each objective scaled to [0, 1] over the front
    (1 = best); the earliest epoch on a tie."""
    if not front:
        return None
    columns = list(zip(*front.values()))
    lows, highs = [min(c) for c in columns], [max(c) for c in columns]

    def scaled(v: float, k: int) -> float:
        span = highs[k] - lows[k]
        s = 1.0 if span == 0 else (v - lows[k]) / span
        return s if higher[k] else 1.0 - s

    def distance(e: int) -> float:
        return math.sqrt(sum((1.0 - scaled(v, k)) ** 2 for k, v in enumerate(front[e])))

    return min(sorted(front), key=distance)


# ---- a run's values -------------------------------------------------------------------------------
def _summary_cells(summary: Sequence[Mapping], name: str, method: str) -> Dict[int, Tuple[float, float, float]]:
    rows = [r for r in summary if r["metric"] == name and r["method"] in (method, "model")]
    rows.sort(key=lambda r: r["method"] != method)  # the method's own row before a `model` row
    out: Dict[int, Tuple[float, float, float]] = {}
    for r in rows:
        out.setdefault(int(r["epoch"]), (float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])))
    return out


def _metrics_cells(rows: Sequence[Mapping], name: str, sizes: Mapping[str, int]) -> Dict[int, Tuple[float, ...]]:
    out = {}
    n = sizes.get(name.split("_", 1)[0])  # test_acc -> the test set size, train_acc -> the train subset's
    for r in rows:
        value = r.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = wilson(float(value), n) if name.endswith("_acc") and n else (math.nan, math.nan)
            out[int(r["epoch"])] = (float(value), lo, hi)
    return out


def _set_sizes(run_dir: Path) -> Dict[str, int]:
    """Test and train-subset sizes from run.json (for the intervals of the accuracies)."""
    try:
        manifest = json.loads((run_dir / "run.json").read_text())
        test_n = (manifest.get("dataset") or {}).get("test_size")
        train_n = ((manifest.get("config") or {}).get("data") or {}).get("train_subset") or test_n  # 0: as test
    except (OSError, ValueError, AttributeError):
        return {}
    sizes = {"test": test_n, "train": train_n}
    return {k: int(v) for k, v in sizes.items() if isinstance(v, int) and v > 0}


def objective_table(run_dir: Path, summary: Sequence[Mapping], metrics: Sequence[Mapping],
                    objectives: Sequence[Objective], method: str) -> Dict[int, List[Tuple[float, float, float]]]:
    """Per epoch (analysed and in metrics.jsonl as needed), (mean, ci_low, ci_high) per objective."""
    sizes = _set_sizes(run_dir)
    cells = []
    for o in objectives:
        got = _summary_cells(summary, o.name, method) if o.source == "summary" else _metrics_cells(metrics, o.name, sizes)
        if not got:
            where = "metrics.jsonl" if o.source == "metrics" else f"analysis/summary.csv (method {method})"
            raise OverfocusError(f"objective {o.name!r} is not in {run_dir / where}: choose objectives the run "
                                 "has (e.g. re-run `overfocus analyze` with the metric), or another --method")
        cells.append(got)
    epochs = sorted(set.intersection(*(set(c) for c in cells)))
    return {e: [c[e] for c in cells] for e in epochs}


def select_run(run_dir: Path | str, objectives: Sequence[str] = DEFAULT_OBJECTIVES, method: Optional[str] = None,
               pick: Optional[str] = None) -> Dict[str, Any]:
    """The Pareto-optimal epochs of an analysed run: what select.json holds.

    Example:
        >>> result = select_run("runs/demo", pick="knee")          # doctest: +SKIP
        >>> result["front"][0]["epoch"], result["pick"]["epoch"]   # doctest: +SKIP
        (3, 7)
    """
    run_dir = Path(run_dir)
    if pick is not None and pick not in PICKS:
        raise OverfocusError(f"--pick {pick!r} is not known: use --pick knee")
    objs = [objective(n) for n in dict.fromkeys(objectives)]
    if not objs:
        raise OverfocusError("--objectives is empty: name at least one, e.g. --objectives test_acc,energy_pg")
    meta_path = run_dir / "analysis" / "analysis.json"
    summary_path = run_dir / "analysis" / "summary.csv"
    if not meta_path.is_file() or not summary_path.is_file():
        raise OverfocusError(f"{run_dir} has no analysis ({summary_path} is missing): run "
                             f"`overfocus analyze {run_dir}` first")
    methods = list(json.loads(meta_path.read_text()).get("methods") or [])
    if method is None:
        method = methods[0] if methods else "model"
    elif method not in methods:
        raise OverfocusError(f"method {method!r} was not analysed in {run_dir}{did_you_mean(method, methods)}: "
                             f"choose from {', '.join(methods)}")
    table = objective_table(run_dir, read_summary(run_dir), RunDir(run_dir).read_metrics(), objs, method)
    higher = [o.higher_is_better for o in objs]
    front = pareto_front({e: [c[0] for c in cells] for e, cells in table.items()}, higher)
    result: Dict[str, Any] = {
        "schema": SELECT_SCHEMA, "run": str(run_dir), "method": method,
        "objectives": [{"name": o.name, "title": o.title, "higher_is_better": o.higher_is_better,
                        "source": o.source} for o in objs],
        "epochs_considered": sorted(table),
        "front": [{"epoch": e, "values": {o.name: _cell(c) for o, c in zip(objs, table[e])}} for e in front]}
    if pick == "knee":
        knee = knee_epoch({e: [c[0] for c in table[e]] for e in front}, higher)
        result["pick"] = {"rule": "knee", "epoch": knee}
    return result


def _cell(cell: Tuple[float, float, float]) -> Dict[str, Optional[float]]:
    mean, lo, hi = cell
    return {"mean": _num(mean), "ci_low": _num(lo), "ci_high": _num(hi)}


def _num(v: float) -> Optional[float]:
    return float(v) if math.isfinite(v) else None


def write_select(result: Mapping[str, Any], path: Path | str) -> Path:
    """select.json, written atomically."""
    atomic_write_json(Path(path), dict(result))
    return Path(path)


def read_select(run_dir: Path | str) -> Optional[Dict[str, Any]]:
    """RUN/analysis/select.json, or None when absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / "analysis" / SELECT_FILE).read_text())
    except (OSError, ValueError):
        return None


def select_table(result: Mapping[str, Any]) -> List[str]:
    """The printed table: one line per front epoch, mean [95% interval] per objective, the pick marked.

    Example:
        >>> r = {"objectives": [{"name": "test_acc"}], "front": [{"epoch": 2, "values": {"test_acc":
        ...      {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}}}], "pick": {"rule": "knee", "epoch": 2}}
        >>> select_table(r)[1].split()
        ['2', '0.500', '[0.400,', '0.600]', 'knee']
    """
    names = [o["name"] for o in result["objectives"]]
    width = max(24, *(len(n) + 2 for n in names))
    lines = ["epoch  " + "".join(n.ljust(width) for n in names)]
    picked = (result.get("pick") or {}).get("epoch")
    for row in result["front"]:
        cells = []
        for n in names:
            c = row["values"][n]
            text = "n/a" if c["mean"] is None else f"{c['mean']:.3f}"
            if c["ci_low"] is not None and c["ci_high"] is not None:
                text += f" [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
            cells.append(text.ljust(width))
        lines.append(f"{row['epoch']:<7d}" + "".join(cells) + ("knee" if row["epoch"] == picked else "").rstrip())
    return [line.rstrip() for line in lines]
