"""A context that puts a model into attribution mode and ALWAYS restores it afterwards.

Attribution needs eval mode (dropout off, BatchNorm statistics frozen) and no parameter
gradients, but the model is usually the online training model: every submodule's `training`
flag, every parameter's `requires_grad` and every hook dictionary must look exactly as before,
also when the attribution raises half-way (a bad target, an out-of-memory error, Ctrl-C).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, Set

import torch
import torch.nn as nn

from ..models.hooks import hook_snapshot, remove_hooks_added_since

_ACTIVE: Set[int] = set()  # ids of the models inside an attribution_mode context right now


@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and grad enabled inside; the model's state restored on exit.

    Restored on exit, also on exceptions: each submodule's `training` flag, each parameter's
    `requires_grad`, and every hook dictionary (hooks added inside are removed).

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> with attribution_mode(m):
        ...     m.training, m[0].weight.requires_grad
        (False, False)
        >>> m.training, m[0].weight.requires_grad
        (True, True)
    """
    if id(model) in _ACTIVE:  # nested (attribute -> layer_gradients): the outer context restores
        with torch.enable_grad():
            yield model
        return
    training: Dict[nn.Module, bool] = {m: m.training for m in model.modules()}
    requires: Dict[nn.Parameter, bool] = {p: p.requires_grad for p in model.parameters()
                                          if not isinstance(p, nn.parameter.UninitializedParameter)}
    hooks = hook_snapshot(model)  # every hook added inside goes on exit, whoever added it (Captum)
    _ACTIVE.add(id(model))
    try:
        model.eval()
        for param in requires:  # parameter gradients are never needed: saves work and memory
            param.requires_grad_(False)
        with torch.enable_grad():
            yield model
    finally:
        _ACTIVE.discard(id(model))
        remove_hooks_added_since(hooks)
        for module, flag in training.items():
            if module.training != flag:  # skip nn.Module.__setattr__ where nothing changed
                module.training = flag
        for param, flag in requires.items():
            param.requires_grad_(flag)
