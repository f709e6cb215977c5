"""The images of an analysis: batches kept in memory across checkpoints, the probe set.

Example:
    >>> from overfocus.data import open_dataset
    >>> source = BatchSource(open_dataset("builtin?test=6", "test", 32), batch_size=4)
    >>> [len(batch) for batch, _human in source]
    [4, 2]
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..data import Batch, collate_samples, image_id_at
from ..data.subset import Subset
from ..errors import OverfocusError

CACHE_BYTES = 512 * 2 ** 20  # analysed images are kept in memory across checkpoints up to this size


def collate_with_human(samples: Sequence[Dict]):
    """collate_samples, plus the stacked human maps when the samples carry them."""
    batch = collate_samples(samples)
    humans = [torch.as_tensor(s["human"], dtype=torch.float32) for s in samples if s is not None and "human" in s]
    return batch, (torch.stack(humans) if humans else None)


class BatchSource:
    """The analysed images in order, batch by batch, kept in memory after the first full pass when
    they fit in `budget` bytes (decoding the same files again for every checkpoint is the slow part
    of analysing many checkpoints; the cache does not grow with the number of checkpoints)."""

    def __init__(self, dataset, batch_size: int, num_workers: int = 0, budget: int = CACHE_BYTES,
                 pin: bool = False):
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                  num_workers=num_workers, collate_fn=collate_with_human)
        self.budget, self.pin, self._cache = budget, pin, None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        if self._cache is not None:
            yield from self._cache
            return
        cache: Optional[list] = []
        size = 0
        for item in self.loader:
            if self.pin:  # page-locked: the copy to the GPU is asynchronous (Batch.to is non_blocking)
                item[0].images = item[0].images.pin_memory()
            yield item
            size += item[0].images.nelement() * item[0].images.element_size()
            if cache is not None:
                cache.append(item)
                cache = cache if size <= self.budget else None
        self._cache = cache


def find_indices(dataset, ids: Sequence[str]) -> List[int]:
    """Dataset positions of `ids` (stops scanning as soon as every id is found)."""
    wanted, found = set(ids), {}
    for i in range(len(dataset)):
        if len(found) == len(wanted):
            break
        iid = image_id_at(dataset, i)
        if iid in wanted:
            found.setdefault(iid, i)
    missing = [i for i in ids if i not in found]
    if missing:
        raise OverfocusError(f"probe images {missing[:3]} of run.json are not in the data: pass the run's "
                             "dataset with --data")
    return [found[i] for i in ids]


def extend_probe_ids(dataset, ids: Sequence[str], size: Optional[int]) -> Tuple[str, ...]:
    """The first `size` probe ids, taking further test images in order when `size` > len(ids)."""
    if size is None:
        return tuple(ids)
    if size < 1:
        raise OverfocusError(f"--probe {size}: use at least 1 image")
    out, taken = list(ids[:size]), set(ids)
    for i in range(len(dataset)):
        if len(out) >= size:
            break
        iid = image_id_at(dataset, i)
        if iid not in taken:
            out.append(iid)
            taken.add(iid)
    return tuple(out)



def evenly_spaced(dataset, n: int):
    """At most `n` items evenly spaced over `dataset` (0 = all), so a sorted folder does not yield
    a single class; attributes kept.

    Example:
        >>> from overfocus.data import open_dataset
        >>> evenly_spaced(open_dataset("builtin?test=9", "test", 32), 3).indices
        [0, 4, 8]
    """
    if n and n < len(dataset):
        return Subset(dataset, sorted(set(np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist())))
    return dataset


def batch_subset(batch, indices: Sequence[int]):
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    return Batch(batch.images[idx], batch.labels[idx], [batch.boxes[i] for i in indices],
                 [batch.image_ids[i] for i in indices])



def probe_arrays(batch, classes: Sequence[str]) -> Dict[str, np.ndarray]:
    """The probe set as contract C stores it: uint8 images, -1-padded boxes, labels, ids, classes."""
    images = (batch.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    k = max([1] + [len(b) for b in batch.boxes])
    boxes = np.full((len(batch), k, 4), -1.0, np.float32)
    for i, b in enumerate(batch.boxes):
        boxes[i, : len(b)] = b.cpu().numpy()
    return {"images": images, "boxes": boxes, "labels": batch.labels.cpu().numpy().astype(np.int64),
            "image_ids": np.asarray(batch.image_ids, dtype=str), "classes": np.asarray(list(classes), dtype=str)}

