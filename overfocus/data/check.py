"""`overfocus data check SPEC`: every image and annotation of a dataset read once, before training.

Opening a split reads its annotations (the loaders name what is wrong in them); then every sample
is read, decoded and resized in parallel threads, exactly as training reads it, and checked for
consistency (a label inside the classes, finite boxes inside the image). What fails is listed;
nothing is skipped silently.

Example:
    >>> report = check_dataset("builtin?train=8&test=4", image_size=32, jobs=2, show_progress=False)
    >>> report.checked, report.problems
    ({'train': 8, 'test': 4}, [])
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from . import open_dataset
from ..errors import OverfocusError
from ..progress import progress
from .imagefile import SKIP_HINT


@dataclass
class Problem:
    split: str
    entry: str  # the file or image id
    reason: str

    def line(self) -> str:
        return f"{self.split}: {self.entry}: {self.reason}"


@dataclass
class CheckReport:
    spec: str
    checked: Dict[str, int] = field(default_factory=dict)  # split -> samples read
    problems: List[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(spec: str, image_size: int = 64, jobs: Optional[int] = None,
                  show_progress: bool = True) -> CheckReport:
    """Read every sample of the train and test splits of `spec` once (in `jobs` threads)."""
    report = CheckReport(spec)
    for split in ("train", "test"):
        try:
            dataset = open_dataset(spec, split, image_size)
        except OverfocusError as exc:  # the annotations themselves: the loader's one line
            report.problems.append(Problem(split, spec, str(exc)))
            continue
        report.checked[split] = len(dataset)
        report.problems += check_samples(dataset, split, jobs, show_progress)
    if not report.checked:  # neither split opens: the spec itself is wrong (kind, path), not a file in it
        raise OverfocusError(report.problems[0].reason)
    return report


def check_samples(dataset, split: str, jobs: Optional[int], show_progress: bool) -> List[Problem]:
    """The problems of every sample of one split, in index order."""
    workers = max(1, jobs or min(16, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # decoding (PIL, numpy) releases the GIL
        found = list(progress(pool.map(lambda i: sample_problem(dataset, i), range(len(dataset))), show_progress,
                              total=len(dataset), desc=f"check {split}"))
    return [Problem(split, entry, reason) for entry, reason in filter(None, found)]


def sample_problem(dataset, index: int):
    """(entry, reason) when sample `index` does not read or is inconsistent, else None."""
    entry = _entry(dataset, index)
    try:
        sample = dataset[index]
    except OverfocusError as exc:
        return entry, _reason(str(exc))
    except (OSError, ValueError) as exc:  # a loader's own parse of a record
        return entry, f"{type(exc).__name__}: {exc}"
    if sample is None:
        return entry, "unreadable (skipped)"
    label, boxes = int(sample["label"]), sample["boxes"]
    if not 0 <= label < len(dataset.classes):
        return entry, f"label {label} is outside the {len(dataset.classes)} classes"
    size = sample["image"].shape[-1]
    if boxes.numel():
        if not bool(torch.isfinite(boxes).all()):
            return entry, "a box holds a non-finite coordinate"
        if bool(((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any()):
            return entry, f"a box has no area after resizing to {size} px ({boxes.tolist()[0]})"
    return None


def _entry(dataset, index: int) -> str:
    records = getattr(dataset, "records", None)
    return str(records[index][0]) if records is not None else str(getattr(dataset, "image_id", str)(index))


def _reason(message: str) -> str:
    return message.replace(f"; {SKIP_HINT}", "").replace(f": {SKIP_HINT}", "").replace(SKIP_HINT, "").strip()
