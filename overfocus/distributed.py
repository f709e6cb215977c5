"""torch.distributed support: process-group setup from torchrun's environment and a batch sampler
that gives every rank its slice of the SAME global batches a single process would draw.

Because the global batches are identical and each rank's loss is re-weighted by its share of the
batch, a DDP run computes the same averaged gradient as a one-process run (models without
BatchNorm or dropout match to floating-point tolerance; with BatchNorm each rank normalises over
its own slice, as usual under DDP).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, List

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment variables (1 process if unset)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(info: DistInfo, device: torch.device) -> None:
    """gloo on the CPU, nccl on GPUs; a no-op for a single process or when already initialised."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def split_evenly(items: List[int], parts: int, index: int) -> List[int]:
    """The `index`-th of `parts` contiguous slices whose sizes differ by at most one.

    Example:
        >>> split_evenly([0, 1, 2, 3, 4], 2, 0), split_evenly([0, 1, 2, 3, 4], 2, 1)
        ([0, 1, 2], [3, 4])
    """
    base, extra = divmod(len(items), parts)
    start = index * base + min(index, extra)
    return items[start:start + base + (1 if index < extra else 0)]


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of one epoch, drawn from a permutation seeded by `seed`; each rank gets its slice.

    With world_size=1 this is a plain shuffled batch sampler. `global_sizes` lists the size of
    each global batch, which the engine uses to re-weight each rank's loss.

    Example:
        >>> s = GlobalBatchSampler(10, 4, seed=1, rank=0, world_size=2)
        >>> [len(b) for b in s], s.global_sizes
        ([2, 2, 1], [4, 4, 2])
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        # Every rank must take part in every step: drop a last batch smaller than the world.
        batches = [b for b in batches if len(b) >= world_size]
        self.global_sizes = [len(b) for b in batches]
        self._mine = [split_evenly(b, world_size, rank) for b in batches]

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self._mine)

    def __len__(self) -> int:
        return len(self._mine)


def all_reduce_sum(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order (a one-element list for a single process)."""
    if not (info.enabled and dist.is_initialized()):
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Rank `src`'s `obj` on every rank (the object itself for a single process).

    Example:
        >>> broadcast_object({"todo": [1, 2]}, DistInfo())
        {'todo': [1, 2]}
    """
    if not (info.enabled and dist.is_initialized()):
        return obj
    box = [obj if info.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
