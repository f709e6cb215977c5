"""Hook lifetimes: every hook the project registers goes through `overfocus.models.hooks.Hooks`, and
none survives a training step, an exception raised mid-pass or a KeyboardInterrupt.

Parametrized over the registries (every regularizer, every attribution method, the Captum family
members that hook modules), so a new entry is covered without a new test. A failure mid-pass is
a global forward pre-hook of torch (it sees every module call, the nested passes of a regularizer
and the peer library's too) raising at a chosen call: the first, the middle or the last one the
pass makes, counted in a first, clean run.
"""
from __future__ import annotations

import functools
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_pre_hook

from overfocus.attribution import ATTRIBUTIONS, attribute
from overfocus.config import build_config
from overfocus.errors import OverfocusError
from overfocus.metrics import NeuronCoverage
from overfocus.models import build_model
from overfocus.models.hooks import HOOK_DICTS, Hooks, hook_snapshot, remove_hooks_added_since
from overfocus.models.layers import spatial_sizes
from overfocus.regularizers import REGULARIZERS, StepInfo
from overfocus.training.engine import Trainer

TINY = ["data.spec=builtin?classes=3&train=32&test=16", "data.image_size=32", "data.batch_size=16",
        "model.name=vgg11", "model.width=0.125", "model.small_input=true", "train.progress=false",
        "train.epochs=1"]


class MidPassError(Exception):
    """An error no code of ours catches and turns into another (a peer's bug, out of memory)."""


FAILURES = {"exception": MidPassError, "interrupt": KeyboardInterrupt}
SPOTS = ("first", "middle", "last")
# A sample of the Captum family (about 40 classes, run on request only): one per kind of hook it
# puts on modules (DeepLift's and GuidedBackprop's / Deconvolution's on the nonlinearities, a layer
# hook for the Layer* and Neuron* classes, both at once for GuidedGradCam)
CAPTUM_HOOKING = ("captum:DeepLift", "captum:GuidedBackprop", "captum:Deconvolution", "captum:LayerGradCam",
                  "captum:GuidedGradCam")


def hooks_of(*owners) -> dict:
    """{(module path, hook dict): hook keys} of every module reachable from `owners` (models, and the
    modules an object such as a regularizer holds: its EMA copy), the non-empty dicts only."""
    found = {}
    for i, owner in enumerate(owners):
        modules = [owner] if isinstance(owner, nn.Module) else [v for v in vars(owner).values()
                                                               if isinstance(v, nn.Module)]
        for j, top in enumerate(modules):
            for name, module in top.named_modules():
                for attr in HOOK_DICTS:
                    keys = tuple(getattr(module, attr, {}) or ())
                    if keys:
                        found[(i, j, name, attr)] = keys
    return found


class Tripwire:
    """Counts module calls while `armed`; raises `error` at call number `at` (1-based) when set."""

    def __init__(self):
        self.armed, self.calls, self.at, self.error, self.fired = False, 0, None, MidPassError, False

    def __call__(self, module, _inputs):
        if not self.armed:
            return
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            self.fired = True
            raise self.error(f"tripwire at module call {self.calls} ({type(module).__name__})")

    def aim(self, spot: str, total: int, error) -> None:
        assert total > 0, "the pass made no module call to fail in"
        self.at = {"first": 1, "middle": (total + 1) // 2, "last": total}[spot]
        self.calls, self.error, self.fired = 0, error, False

    @contextmanager
    def installed(self):
        handle = register_module_forward_pre_hook(self)
        try:
            yield self
        finally:
            handle.remove()


# ---- the helper itself ------------------------------------------------------------------------
def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_every_kind_of_hook_is_removed_on_leaving_the_block():
    net, calls = _net(), []
    x = torch.randn(2, 3, requires_grad=True)
    with Hooks() as hooks:
        hooks.forward(net[0], lambda *_: calls.append("fwd")).forward_pre(net[1], lambda *_: calls.append("pre"))
        hooks.backward(net[2], lambda *_: calls.append("bwd")).tensor(x, lambda g: calls.append("grad"))
        assert len(hooks_of(net)) == 3
        net(x).sum().backward()
    assert sorted(calls) == ["bwd", "fwd", "grad", "pre"]
    assert hooks_of(net) == {} and len(hooks) == 0
    calls.clear()
    x.grad = None
    net(x).sum().backward()  # the tensor hook is gone too
    assert calls == []


@pytest.mark.parametrize("failure", FAILURES)
def test_hooks_are_removed_when_the_block_raises(failure):
    net = _net()

    def boom(*_):
        raise FAILURES[failure]("mid-pass")

    with pytest.raises(FAILURES[failure]):
        with Hooks().forward(net[1], boom):
            net(torch.randn(1, 3))
    assert hooks_of(net) == {}


def test_remove_twice_is_harmless_and_other_hooks_stay():
    net = _net()
    theirs = net[0].register_forward_hook(lambda *_: None)
    hooks = Hooks().forward(net[0], lambda *_: None).forward(net[2], lambda *_: None)
    hooks.remove()
    hooks.remove()
    assert list(hooks_of(net).values()) == [(theirs.id,)]


def test_snapshot_removes_what_a_peer_added_and_keeps_the_rest():
    net = _net()
    theirs = net[0].register_forward_hook(lambda *_: None)
    before = hook_snapshot(net)
    net[1].register_full_backward_hook(lambda *_: None)
    net[2].register_forward_pre_hook(lambda *_: None)
    remove_hooks_added_since(before)
    assert list(hooks_of(net).values()) == [(theirs.id,)]
    assert net[1]._is_full_backward_hook is None


def test_the_checker_sees_a_hook_left_behind():
    """The checks below can fail: a hook that is not removed shows in hooks_of."""
    net = _net()
    Hooks().forward(net[1], lambda *_: None)  # never removed
    assert len(hooks_of(net)) == 1


# ---- regularizers: through the engine -----------------------------------------------------------
def _trainer(name: str, tmp_path: Path) -> Trainer:
    return Trainer(build_config(overrides=TINY + [f"regularizer.name={name}"]), tmp_path / "run")


def _loss_calls(trainer: Trainer, wire: Tripwire) -> None:
    """Arm the tripwire during the regularizer's first loss (its nested passes included) only."""
    reg, loss, seen = trainer.regularizer, trainer.regularizer.loss, []

    def first_loss_armed(*args, **kwargs):
        wire.armed = not seen
        seen.append(1)
        try:
            return loss(*args, **kwargs)
        finally:
            wire.armed = False
    reg.loss = first_loss_armed


@functools.lru_cache(maxsize=None)
def _first_loss_calls(name: str) -> int:
    """Module calls of the regularizer's first loss in a clean run (counted once per regularizer)."""
    wire = Tripwire()
    with tempfile.TemporaryDirectory() as folder:
        clean = _trainer(name, Path(folder))
        _loss_calls(clean, wire)
        with wire.installed():
            clean.fit()
    return wire.calls


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_no_regularizer_hook_survives_training(name, tmp_path):
    trainer = _trainer(name, tmp_path)
    before = hooks_of(trainer.model)
    trainer.fit()
    assert hooks_of(trainer.model, trainer.regularizer) == before == {}


@pytest.mark.parametrize("spot", SPOTS)
@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_no_regularizer_hook_survives_a_failure_mid_step(name, failure, spot, tmp_path):
    wire = Tripwire()
    wire.aim(spot, _first_loss_calls(name), FAILURES[failure])
    trainer = _trainer(name, tmp_path / "failing")
    _loss_calls(trainer, wire)
    with wire.installed(), pytest.raises(FAILURES[failure], match="tripwire"):
        trainer.fit()
    assert wire.fired
    assert hooks_of(trainer.model, trainer.regularizer) == {}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_one_shot_hooks_are_gone_when_a_step_fails(name, failure, tmp_path):
    """Between setup and teardown only the regularizer's long-lived hooks are on the model: a step
    failing in its last module call leaves no one-shot hook of its nested passes behind."""
    trainer = _trainer(name, tmp_path / "run")
    reg, model = trainer.regularizer, trainer.model
    batch = next(iter(trainer.epoch_loader(1)[0]))
    step = StepInfo(0, 1, 0, 1.0)
    reg.setup(model)
    try:
        model.train()
        long_lived = hooks_of(model, reg)
        wire = Tripwire()
        with wire.installed():
            wire.armed = True
            reg.loss(model, batch, step)[0].backward()
            wire.armed = False
            wire.aim("last", wire.calls, FAILURES[failure])
            wire.armed = True
            with pytest.raises(FAILURES[failure], match="tripwire"):
                reg.loss(model, batch, step)
            wire.armed = False
        assert hooks_of(model, reg) == long_lived
    finally:
        reg.teardown(model)
    assert hooks_of(model, reg) == {}


# ---- attribution, coverage, layer discovery -----------------------------------------------------
def _model_with_a_users_hook():
    torch.manual_seed(0)
    model = build_model("vgg11", 3, width=0.125, small_input=True)
    users = model.features[2].register_forward_hook(lambda *_: None)  # a user's hook must stay
    return model, users


def _images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 2])


@pytest.mark.parametrize("method", [*ATTRIBUTIONS.names(), *CAPTUM_HOOKING])
def test_no_attribution_hook_survives(method):
    model, users = _model_with_a_users_hook()
    x, t = _images()
    layer = "features"
    if method in ATTRIBUTIONS and ATTRIBUTIONS.get(method).forward_pass == "attention":  # the rollout methods
        torch.manual_seed(0)
        model, layer = build_model("vit_tiny", 3, width=0.25), "blocks.11.norm1"
        users = model.blocks[5].register_forward_hook(lambda *_: None)
    before = hooks_of(model)
    wire = Tripwire()
    with wire.installed():
        wire.armed = True
        attribute(model, x, t, methods=(method,), layer=layer)
        wire.armed = False
    assert hooks_of(model) == before and any(users.id in m._forward_hooks for m in model.modules())
    total = wire.calls
    for failure, error in FAILURES.items():
        for spot in SPOTS:
            wire.aim(spot, total, error)
            with wire.installed(), pytest.raises(error, match="tripwire"):
                wire.armed = True
                try:
                    attribute(model, x, t, methods=(method,), layer=layer)
                finally:
                    wire.armed = False
            assert hooks_of(model) == before, (failure, spot)


def _coverage_pass(model, x):
    with NeuronCoverage(model, latent_layer="features"), torch.no_grad():
        model(x)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("user", [_coverage_pass, spatial_sizes], ids=["coverage", "layer_discovery"])
def test_no_coverage_or_layer_discovery_hook_survives(user, failure):
    model, _ = _model_with_a_users_hook()
    model.eval()
    x, _t = _images()
    before = hooks_of(model)
    wire = Tripwire()
    with wire.installed():
        wire.armed = True
        user(model, x)
        wire.armed = False
    assert hooks_of(model) == before
    total = wire.calls
    for spot in SPOTS:
        wire.aim(spot, total, FAILURES[failure])
        with wire.installed(), pytest.raises(FAILURES[failure], match="tripwire"):
            wire.armed = True
            try:
                user(model, x)
            finally:
                wire.armed = False
        assert hooks_of(model) == before, spot


def test_a_model_without_activations_keeps_no_coverage_hook():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())
    with pytest.raises(OverfocusError, match="no ReLU or pooling"):
        with NeuronCoverage(model, latent_layer=""):
            pass
    assert hooks_of(model) == {}


# ---- the one place ------------------------------------------------------------------------------
BARE_REGISTRATION = re.compile(r"\.register_(forward_hook|forward_pre_hook|full_backward_hook|"
                               r"full_backward_pre_hook|backward_hook|hook)\(")


def bare_registrations(root: Path) -> list:
    """`file:line` of every hook registered outside models/hooks.py (which alone calls torch's)."""
    return [f"{path.relative_to(root)}:{n}" for path in sorted(root.rglob("*.py"))
            if path.relative_to(root).as_posix() != "models/hooks.py"
            for n, line in enumerate(path.read_text().splitlines(), 1) if BARE_REGISTRATION.search(line)]


def test_every_hook_registers_through_the_helper(tmp_path):
    assert bare_registrations(Path(__file__).resolve().parents[1] / "overfocus") == []
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "hooks.py").write_text("h = m.register_forward_hook(f)\n")
    (tmp_path / "other.py").write_text("x = 1\nh = layer.register_full_backward_hook(f)\n")
    assert bare_registrations(tmp_path) == ["other.py:2"]  # the check can fail
