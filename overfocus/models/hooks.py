"""THE lifetime of module hooks: a list of removable handles that removes them all at once.

Every forward, forward-pre, backward and tensor hook the project puts on a model registers
through a `Hooks` list, which is a context manager: leaving the `with` block removes every hook
registered through it, also when the block raises (an exception, Ctrl-C). Long-lived hooks (a
regularizer's hook for a whole training) keep the list and call `remove()` in their teardown;
calling it twice is harmless. zennit keeps its hooks the same way (`RemovableHandleList`).
"""
from __future__ import annotations

from typing import Any, Callable

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
