"""Train and test accuracy per epoch from a training's own log (`overfocus analyze FOLDER
--metrics-file FILE`): a Lightning CSVLogger `metrics.csv`, any CSV, or JSON lines, each with an
epoch column. Rows are merged per epoch (Lightning writes train and validation numbers on separate
rows; the last non-empty value of an epoch wins). Percentages (values above 1) become fractions.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = path.write_text("epoch,step,train_acc,val_acc\\n0,4,0.5,\\n0,4,,0.25\\n1,8,0.75,0.5\\n")
    >>> read_history(path)
    {0: {'epoch': 0, 'train_acc': 0.5, 'test_acc': 0.25, 'gap': 0.25}, 1: {'epoch': 1, 'train_acc': 0.75, 'test_acc': 0.5, 'gap': 0.25}}
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from ..errors import OverfocusError

TRAIN_COLUMNS = ("train_acc", "train_accuracy", "train/acc", "train_acc_epoch", "acc_train", "accuracy")
TEST_COLUMNS = ("test_acc", "val_acc", "test_accuracy", "val_accuracy", "test/acc", "val/acc", "val_acc_epoch",
                "acc_test", "acc_val")


@dataclass(frozen=True)
class HistoryColumns:
    """Column names of a training log; None = the first of the usual names present."""

    epoch: str = "epoch"
    train_acc: Optional[str] = None
    test_acc: Optional[str] = None


def read_history(path: Path | str, columns: HistoryColumns = HistoryColumns()) -> Dict[int, Dict[str, Any]]:
    """{epoch: {epoch, train_acc, test_acc, gap}} of a CSV or JSON-lines training log."""
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"--metrics-file {path} does not exist: pass the training's metrics.csv or .jsonl")
    rows = _read_rows(path)
    names = {key for row in rows for key in row}
    if columns.epoch not in names:
        raise OverfocusError(f"--metrics-file {path} has no column {columns.epoch!r} (columns: "
                             f"{', '.join(sorted(names)[:12])}): name it with --epoch-column")
    train = _pick(columns.train_acc, TRAIN_COLUMNS, names, path, "--train-acc-column")
    test = _pick(columns.test_acc, TEST_COLUMNS, names, path, "--test-acc-column")
    merged: Dict[int, Dict[str, float]] = {}
    for row in rows:
        epoch = _number(row.get(columns.epoch))
        if epoch is None:
            continue
        entry = merged.setdefault(int(epoch), {})
        for key, column in (("train_acc", train), ("test_acc", test)):
            value = _number(row.get(column))
            if value is not None:
                entry[key] = value
    scale = 100.0 if any(v > 1.0 for e in merged.values() for v in e.values()) else 1.0
    out = {}
    for epoch, entry in sorted(merged.items()):
        if "train_acc" in entry and "test_acc" in entry:
            tr, te = entry["train_acc"] / scale, entry["test_acc"] / scale
            out[epoch] = {"epoch": epoch, "train_acc": tr, "test_acc": te, "gap": tr - te}
    return out


def _read_rows(path: Path) -> List[Dict[str, Any]]:
    text = path.read_text()
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise OverfocusError(f"--metrics-file {path} is not JSON lines (line {exc.lineno}: {exc.msg})") from None
    return list(csv.DictReader(text.splitlines()))


def _pick(given: Optional[str], usual: Iterable[str], names: set, path: Path, option: str) -> str:
    if given:
        if given not in names:
            raise OverfocusError(f"--metrics-file {path} has no column {given!r}: check {option}")
        return given
    found = next((c for c in usual if c in names), None)
    if found is None:
        raise OverfocusError(f"--metrics-file {path}: none of the columns {', '.join(sorted(names)[:12])} is a "
                             f"known accuracy name: name it with {option}")
    return found


def _number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
