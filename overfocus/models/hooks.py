"""THE lifetime of module hooks: a list of removable handles that removes them all at once.

Every forward, forward-pre, backward and tensor hook the project puts on a model registers
through a `Hooks` list, which is a context manager: leaving the `with` block removes every hook
registered through it, also when the block raises (an exception, Ctrl-C). Long-lived hooks (a
regularizer's hook for a whole training) keep the list and call `remove()` in their teardown;
calling it twice is harmless. zennit keeps its hooks the same way (`RemovableHandleList`).

Hooks that a peer library registers inside one of our calls (Captum's on the ReLUs) have no
handle of ours: `hook_snapshot` + `remove_hooks_added_since` take off whatever was added to any
module of a model meanwhile, whoever added it (`attribution_mode` does so on every exit).
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

import torch
import torch.nn as nn


class Hooks(list):
    """Handles of hooks registered through it; `remove()` (or leaving `with`) takes them all off.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> seen = []
        >>> with Hooks() as hooks:
        ...     _ = hooks.forward(m, lambda _m, _i, out: seen.append(out.shape))
        ...     _ = m(torch.zeros(1, 2))
        >>> seen, len(m._forward_hooks)
        ([torch.Size([1, 2])], 0)
    """

    def forward(self, module: nn.Module, fn: Callable, **kwargs: Any) -> "Hooks":
        """`module.register_forward_hook(fn, **kwargs)`, kept for removal; returns self (chains)."""
        return self._keep(module.register_forward_hook(fn, **kwargs))

    def forward_pre(self, module: nn.Module, fn: Callable, **kwargs: Any) -> "Hooks":
        """`module.register_forward_pre_hook(fn, **kwargs)`, kept for removal."""
        return self._keep(module.register_forward_pre_hook(fn, **kwargs))

    def backward(self, module: nn.Module, fn: Callable, **kwargs: Any) -> "Hooks":
        """`module.register_full_backward_hook(fn, **kwargs)`, kept for removal."""
        return self._keep(module.register_full_backward_hook(fn, **kwargs))

    def tensor(self, tensor: torch.Tensor, fn: Callable) -> "Hooks":
        """`tensor.register_hook(fn)` (a gradient hook), kept for removal."""
        return self._keep(tensor.register_hook(fn))

    def _keep(self, handle: Any) -> "Hooks":
        self.append(handle)
        return self

    def remove(self) -> None:
        """Remove every hook registered so far (newest first) and forget the handles."""
        while self:
            self.pop().remove()

    def __enter__(self) -> "Hooks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


# Every per-module hook dictionary of torch 2.x (those added since a snapshot are removed from all)
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
              "_state_dict_hooks", "_load_state_dict_pre_hooks")

HookSnapshot = List[Tuple[nn.Module, str, frozenset]]


def hook_snapshot(model: nn.Module) -> HookSnapshot:
    """The keys of every hook dictionary of every module of `model` now.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2))
        >>> before = hook_snapshot(m)
        >>> _ = m[0].register_forward_hook(lambda *_: None)   # e.g. a peer library's hook
        >>> remove_hooks_added_since(before)
        >>> len(m[0]._forward_hooks)
        0
    """
    snapshot = []
    for module in model.modules():
        for attr in HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if isinstance(hooks, dict):
                snapshot.append((module, attr, frozenset(hooks.keys())))
    return snapshot


def remove_hooks_added_since(snapshot: HookSnapshot) -> None:
    """Remove every hook that is not in `snapshot` from the modules it was taken of."""
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
