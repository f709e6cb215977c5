"""Eval-mode accuracy of a model over a split, and which images a run measures it on.

Shared by the training engine (metrics.jsonl of `overfocus train`) and the analysis of a folder of
foreign checkpoints (the gap of a run trained elsewhere), so both measure the generalization gap
the same way: eval mode, the whole test split, a fixed train subset of the test split's size.

Example:
    >>> fixed_subset_indices(10, 3, seed=0) == fixed_subset_indices(10, 3, seed=0)
    True
    >>> probe_indices(100, 4)
    [0, 25, 50, 75]
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import collate_samples, normalize

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


def make_loader(dataset, batch_size: int, num_workers: int, batch_sampler=None) -> torch.utils.data.DataLoader:
    """In-order loader (evaluation), or one driven by a batch sampler (training).

    Each loader gets its own generator: a DataLoader without one draws its worker seed from the
    global torch RNG, which would make dropout masks depend on how often data was loaded.
    """
    own_rng = torch.Generator().manual_seed(0)
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                           collate_fn=collate_samples, generator=own_rng)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=collate_samples, generator=own_rng)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, mean, std, amp: bool = False) -> Tuple[float, float]:
    """Eval-mode (loss, accuracy) of `model` over a loader; restores the model's mode after."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    try:
        for batch in loader:
            batch = batch.to(device)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                logits = model(normalize(batch.images, mean, std))
            total_loss += F.cross_entropy(logits.float(), batch.labels, reduction="sum")
            correct += (logits.argmax(1) == batch.labels).sum()
            count += len(batch)
    finally:
        model.train(was_training)
    return (total_loss.item() / max(count, 1), correct.item() / max(count, 1))
