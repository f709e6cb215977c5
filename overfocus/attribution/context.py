"""A context that puts a model into attribution mode and ALWAYS restores it afterwards.

Attribution needs eval mode (dropout off, BatchNorm statistics frozen) and no parameter
gradients, but the model is usually the online training model: every submodule's `training`
flag, every parameter's `requires_grad` and every hook dictionary must look exactly as before,
also when the attribution raises half-way (a bad target, an out-of-memory error, Ctrl-C).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Set, Tuple

import torch
import torch.nn as nn

# Every per-module hook dictionary of torch 2.x; hooks added inside the context are removed from
# all of them, whoever added them (our code, Captum, or a peer library that failed mid-way).
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")


def _hook_snapshot(model: nn.Module) -> List[Tuple[nn.Module, str, frozenset]]:
    snapshot = []
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if isinstance(hooks, dict):
                snapshot.append((module, attr, frozenset(hooks.keys())))
    return snapshot


def _remove_new_hooks(snapshot: List[Tuple[nn.Module, str, frozenset]]) -> None:
    for module, attr, before in snapshot:
        hooks = getattr(module, attr)
        if len(hooks) != len(before) or any(k not in before for k in hooks):
            for key in [k for k in hooks if k not in before]:
                del hooks[key]
    # backward hooks also set a flag that torch checks before calling them (set only where it
    # changes: nn.Module.__setattr__ is slow, and this runs for every module on every batch)
    for module in {m for m, _attr, _before in snapshot}:
        if not module._backward_hooks and not module._backward_pre_hooks and module._is_full_backward_hook is not None:
            module._is_full_backward_hook = None


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
    hooks = _hook_snapshot(model)
    _ACTIVE.add(id(model))
    try:
        model.eval()
        for param in requires:  # parameter gradients are never needed: saves work and memory
            param.requires_grad_(False)
        with torch.enable_grad():
            yield model
    finally:
        _ACTIVE.discard(id(model))
        _remove_new_hooks(hooks)
        for module, flag in training.items():
            if module.training != flag:  # skip nn.Module.__setattr__ where nothing changed
                module.training = flag
        for param, flag in requires.items():
            param.requires_grad_(flag)
