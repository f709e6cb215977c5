"""Which images of a split a run uses: the fixed train subset its train accuracy is measured on, and
THE probe set (the images whose maps every epoch keeps), chosen the same way by `overfocus train`,
the Tracker and the analysis of a checkpoint folder: evenly spaced, round-robin by class, and only
images that read (a file skipped under --skip-bad is replaced by the next readable one).

Example:
    >>> fixed_subset_indices(10, 3, seed=0) == fixed_subset_indices(10, 3, seed=0)
    True
    >>> probe_indices(100, 4)
    [0, 25, 50, 75]
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from .base import dataset_labels, image_id_at, is_readable


PROBE_SIZE = 16  # probe images of a run (their maps are kept for the videos)


def fixed_subset_indices(n_total: int, n_pick: int, seed: int) -> List[int]:
    """Indices of the fixed train subset evaluated each epoch (chosen once per run, sorted)."""
    g = torch.Generator().manual_seed(seed + 7919)
    return sorted(torch.randperm(n_total, generator=g)[: min(n_pick, n_total)].tolist())


def probe_indices(n_test: int, size: int, labels: Optional[Sequence[int]] = None) -> List[int]:
    """Evenly spaced test indices (real test splits are often sorted by class, so the first `size`
    images would all show one class), ordered round-robin by class where the labels are known, so
    that the first probe images (a filmstrip's rows, a video's first panels) show different classes.

    Example:
        >>> probe_indices(100, 4)
        [0, 25, 50, 75]
        >>> probe_indices(8, 4, labels=[0, 0, 0, 0, 1, 1, 1, 1])  # sorted by class: 0, 2 | 4, 6
        [0, 4, 2, 6]
    """
    size = min(size, n_test)
    picks = [i * n_test // size for i in range(size)]
    if labels is None:
        return picks
    by_class: dict = {}
    for i in picks:
        by_class.setdefault(labels[i], []).append(i)
    queues = [by_class[c] for c in sorted(by_class, key=lambda c: by_class[c][0])]
    return [q[k] for k in range(max(map(len, queues))) for q in queues if k < len(q)]


def readable_probe_indices(test, size: int = PROBE_SIZE) -> List[int]:
    """`probe_indices`, each unreadable image (skipped under --skip-bad) replaced by the next readable
    one, so that a bad file never becomes a probe image.

    Example:
        >>> from overfocus.data import open_dataset
        >>> readable_probe_indices(open_dataset("builtin?test=8", "test", 32), 4)
        [0, 4, 6, 2]
    """
    n, chosen = len(test), []
    for start in probe_indices(n, size, dataset_labels(test)):
        index = next((i for i in range(start, n) if i not in chosen and is_readable(test, i)), None)
        if index is not None:
            chosen.append(index)
    return chosen


def probe_ids(test, size: int = PROBE_SIZE) -> Tuple[str, ...]:
    """The image ids of THE probe set of a test split (`readable_probe_indices`): what run.json records
    as `probe_ids`, for `overfocus train`, the Tracker and `analyze FOLDER` alike.

    Example:
        >>> from overfocus.data import open_dataset
        >>> len(probe_ids(open_dataset("builtin?test=40", "test", 32)))
        16
    """
    return tuple(image_id_at(test, i) for i in readable_probe_indices(test, size))
