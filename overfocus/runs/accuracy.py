"""Eval-mode accuracy of a model over a split, and THE evaluation loaders a run measures it on.

Shared by the training engine (metrics.jsonl of `overfocus train`), the Tracker (the accuracies
your loop does not pass) and the analysis of a folder of foreign checkpoints (the gap of a run
trained elsewhere), so all measure the generalization gap the same way: eval mode, the whole test
split, a fixed train subset (`data.splits.fixed_subset_indices`) of the test split's size.

Example:
    >>> from overfocus.data import open_dataset
    >>> test = open_dataset("builtin?train=20&test=8", "test", 32)
    >>> train = open_dataset("builtin?train=20&test=8", "train", 32)
    >>> loaders = eval_loaders(train, test, seed=0, batch_size=4)
    >>> len(loaders["train"].dataset), len(loaders["test"].dataset)
    (8, 8)
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import collate_samples, normalize
from ..data.splits import fixed_subset_indices
from ..data.subset import Subset


def eval_loaders(train_eval, test, seed: int, batch_size: int, num_workers: int = 0,
                 train_size: Optional[int] = None) -> Dict[str, Any]:
    """{"train": the fixed train subset (`train_size` images, default the test split's size),
    "test": the whole test split}: in-order loaders over un-augmented images."""
    subset = Subset(train_eval, fixed_subset_indices(len(train_eval), train_size or len(test), seed))
    return {"train": make_loader(subset, batch_size, num_workers), "test": make_loader(test, batch_size, num_workers)}


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
