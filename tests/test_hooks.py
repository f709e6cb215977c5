"""Hook lifetimes: every hook the project registers goes through `overfocus.models.hooks.Hooks`
and is gone after a training step, an exception raised mid-pass and a KeyboardInterrupt."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from overfocus.models.hooks import Hooks


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def hook_counts(model: nn.Module) -> dict:
    """Number of forward, forward-pre and backward hooks per module name (only the non-empty ones)."""
    counts = {}
    for name, module in model.named_modules():
        n = len(module._forward_hooks) + len(module._forward_pre_hooks) + len(module._backward_hooks)
        n += len(getattr(module, "_backward_pre_hooks", {}))
        if n:
            counts[name] = n
    return counts


def test_every_kind_of_hook_is_removed_on_leaving_the_block():
    net, calls = _net(), []
    x = torch.randn(2, 3, requires_grad=True)
    with Hooks() as hooks:
        hooks.forward(net[0], lambda *_: calls.append("fwd")).forward_pre(net[1], lambda *_: calls.append("pre"))
        hooks.backward(net[2], lambda *_: calls.append("bwd")).tensor(x, lambda g: calls.append("grad"))
        assert hook_counts(net) == {"0": 1, "1": 1, "2": 1}
        net(x).sum().backward()
    assert sorted(calls) == ["bwd", "fwd", "grad", "pre"]
    assert hook_counts(net) == {} and len(hooks) == 0
    calls.clear()
    x.grad = None
    net(x).sum().backward()  # the tensor hook is gone too
    assert calls == []


@pytest.mark.parametrize("error", [RuntimeError("mid-pass"), KeyboardInterrupt()], ids=["exception", "interrupt"])
def test_hooks_are_removed_when_the_block_raises(error):
    net = _net()

    def boom(*_):
        raise error

    with pytest.raises(type(error)):
        with Hooks().forward(net[1], boom):
            net(torch.randn(1, 3))
    assert hook_counts(net) == {}


def test_remove_twice_is_harmless_and_other_hooks_stay():
    net = _net()
    theirs = net[0].register_forward_hook(lambda *_: None)
    hooks = Hooks().forward(net[0], lambda *_: None).forward(net[2], lambda *_: None)
    hooks.remove()
    hooks.remove()
    assert hook_counts(net) == {"0": 1}
    theirs.remove()
