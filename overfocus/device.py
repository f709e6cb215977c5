"""Which torch device to run on: shared by training, analysis and audit.

>>> resolve_device("cpu")
device(type='cpu')
"""
from __future__ import annotations

import torch

from .errors import OverfocusError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` picks CUDA when present; `cuda` without a GPU is an error with a fix.

    Under torchrun, `cuda` and `auto` mean this process's GPU (cuda:LOCAL_RANK).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OverfocusError(f"device {name!r} asked for, but no CUDA GPU is visible: use --device cpu")
    try:
        device = torch.device(name)
        return torch.device("cuda", local_rank) if device.type == "cuda" and device.index is None else device
    except RuntimeError:
        raise OverfocusError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
