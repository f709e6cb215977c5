"""Attribution maps: shapes, conventions, one forward + one backward, and state restoration."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from overfocus.attribution import ATTRIBUTIONS, attribute, attribution_mode, layer_gradients, normalize_maps
from overfocus.errors import OverfocusError
from overfocus.models import build_model


# every method but those reading a transformer's attention (tests/test_rollout.py covers them)
CNN_METHODS = [n for n in ATTRIBUTIONS.names() if ATTRIBUTIONS.get(n).forward_pass != "attention"]


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def _state(model: nn.Module):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])


def _mixed_state_model():
    model = build_model("cifarnet", 4, width=0.125).train()
    model.block1.eval()  # a mix of flags that a blanket model.train() would not restore
    model.block2[0].weight.requires_grad_(False)
    return model


def test_all_methods_give_nonnegative_float_maps_at_input_size():
    model = build_model("cifarnet", 4, width=0.125)
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    maps = attribute(model, images, targets, methods=CNN_METHODS, layer="block3")
    assert sorted(maps) == CNN_METHODS
    for name, m in maps.items():
        assert m.shape == (2, 32, 32) and m.dtype == torch.float32, name
        assert bool((m >= 0).all()) and not m.requires_grad, name
        assert m.abs().sum() > 0, name


def test_grad_cam_matches_a_manual_computation_on_the_pre_softmax_logit():
    model = build_model("cifarnet", 4, width=0.125).eval()
    images, targets = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 3])
    acts = {}
    handle = model.block3.register_forward_hook(lambda _m, _i, out: acts.setdefault("z", out))
    logits = model(images)
    handle.remove()
    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), acts["z"])
    z = acts["z"].detach()
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * z).sum(1))
    expected = nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    maps, out_logits = attribute(model, images, targets, layer="block3", return_logits=True)
    torch.testing.assert_close(maps["grad_cam"], expected)
    torch.testing.assert_close(maps["sgdrop"], nn.functional.interpolate(
        torch.relu(g * z).sum(1)[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0])
    torch.testing.assert_close(out_logits, logits.detach())


class _CountBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, counter):
        ctx.counter = counter
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.counter["backward"] += 1
        return grad, None


class _Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.counter = inner, {"forward": 0, "backward": 0}

    def forward(self, x):
        self.counter["forward"] += 1
        return _CountBackward.apply(self.inner(x), self.counter)


def test_grad_cam_and_sgdrop_share_one_forward_and_one_backward():
    model = _Counting(build_model("cifarnet", 4, width=0.125))
    attribute(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), layer="inner.block3")
    assert model.counter == {"forward": 1, "backward": 1}


def test_model_state_and_hooks_are_restored():
    model = _mixed_state_model()
    model.block3.register_forward_hook(lambda *a: None)  # a user's hook must survive
    before, hooks = _state(model), _hook_count(model)
    attribute(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), methods=CNN_METHODS, layer="block3")
    assert _state(model) == before and _hook_count(model) == hooks


class _Boom(nn.Module):
    """Raises on its `raise_on`-th call (0-based), noting how many hooks were live at that moment."""

    def __init__(self, raise_on: int):
        super().__init__()
        self.raise_on, self.calls, self.live_hooks = raise_on, 0, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.raise_on:
            self.live_hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in self.owner.modules())
            raise RuntimeError("boom in the middle of the forward")
        return x


@pytest.mark.parametrize("method", CNN_METHODS)
def test_state_restored_when_an_exception_is_raised_mid_way(method):
    # fail in the LAST forward the call makes (a method without logits of its own runs a checking
    # forward first; `random` runs no other): counted in a first, clean call
    boom = _Boom(raise_on=10 ** 9)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), boom, nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    boom.__dict__["owner"] = model  # not a submodule: avoids a reference cycle in modules()
    model.train()
    model[0].bias.requires_grad_(False)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([0])
    attribute(model, x, t, methods=(method,), layer="1")
    boom.raise_on, boom.calls = boom.calls - 1, 0
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"):
        attribute(model, x, t, methods=(method,), layer="1")
    assert _state(model) == before
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    if ATTRIBUTIONS.get(method).forward_pass == "layer" or method == "guided_grad_cam":
        assert boom.live_hooks > 0  # the exception did interrupt a hooked pass


def test_state_restored_after_our_own_errors():
    model = _mixed_state_model()
    before = _state(model)
    with pytest.raises(OverfocusError, match="outside the model"):
        attribute(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 9]), layer="block3")
    with pytest.raises(OverfocusError, match="outside the model"):
        attribute(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 9]), methods="guided_grad_cam", layer="block3")
    with pytest.raises(OverfocusError, match="B x C x H x W"):
        attribute(model, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), layer="classifier")
    assert _state(model) == before and _hook_count(model) == 0


def test_attribution_mode_restores_on_exception():
    model = _mixed_state_model()
    before = _state(model)
    with pytest.raises(KeyError):
        with attribution_mode(model):
            model.block3.register_forward_hook(lambda *a: None)
            assert not model.training and not any(p.requires_grad for p in model.parameters())
            raise KeyError("mid-way")
    assert _state(model) == before and _hook_count(model) == 0


def test_bad_input_is_reported_plainly():
    model = build_model("cifarnet", 4, width=0.125)
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(OverfocusError, match="unknown attribution method"):
        attribute(model, x, torch.tensor([0, 1]), methods=("nope",), layer="block3")
    with pytest.raises(OverfocusError, match="targets for 2 images"):
        attribute(model, x, torch.tensor([0]), layer="block3")
    with pytest.raises(OverfocusError, match="no layer"):
        attribute(model, x, torch.tensor([0, 1]), layer="block9")


def _manual_layer_grads(model, images, targets, layer_index):
    """Reference on a copy without in-place ReLUs, so the saved conv output stays untouched."""
    ref = copy.deepcopy(model).eval()
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    saved = {}
    ref.features[layer_index].register_forward_hook(lambda _m, _i, out: saved.setdefault("z", out))
    logits = ref(images)
    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), saved["z"])
    return saved["z"].detach(), g


@pytest.mark.parametrize("small_input,layer_index", [(False, 0), (False, 3), (False, 8), (True, 1), (True, 5)])
def test_layers_feeding_inplace_relu(small_input, layer_index):
    """Plain VGG: conv -> ReLU(inplace); small-input VGG: conv -> BatchNorm -> ReLU(inplace)."""
    model = build_model("vgg11", 3, width=0.125, small_input=small_input).train()
    assert isinstance(model.features[layer_index], (nn.Conv2d, nn.BatchNorm2d))
    assert model.features[layer_index + 1].inplace
    images, targets = torch.randn(2, 3, 32, 32), torch.tensor([2, 0])
    grads = layer_gradients(model, images, targets, f"features.{layer_index}")
    z, g = _manual_layer_grads(model, images, targets, layer_index)
    assert (z < 0).any()  # the pre-ReLU activation was kept, not overwritten by the ReLU
    torch.testing.assert_close(grads.activations, z)
    torch.testing.assert_close(grads.gradients, g)
    assert model.training


def test_works_inside_no_grad_and_in_eval_mode_only():
    model = build_model("cifarnet", 4, width=0.125).train()  # dropout active in train mode
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with torch.no_grad():
        first = attribute(model, x, t, layer="block3")
    second = attribute(model, x, t, layer="block3")
    torch.testing.assert_close(first["grad_cam"], second["grad_cam"])  # eval mode: deterministic


def test_input_methods_follow_their_channel_reductions():
    model = build_model("cifarnet", 4, width=0.125).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 1])
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr).gather(1, t[:, None]).sum(), xr)
    maps = attribute(model, x, t, methods=("saliency", "input_x_gradient"), layer="block3")
    torch.testing.assert_close(maps["saliency"], g.abs().amax(1))
    torch.testing.assert_close(maps["input_x_gradient"], torch.relu((x * g).sum(1)))


def test_integrated_gradients_completeness():
    """IG sums to f(x) - f(0) for the target logit (before the ReLU of the channel sum)."""
    from captum.attr import IntegratedGradients

    model = build_model("cifarnet", 4, width=0.125).eval()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([2])
    attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=64)
    gap = model(x)[0, 2] - model(torch.zeros_like(x))[0, 2]
    gap = float(gap.detach())
    assert abs(float(attr.sum()) - gap) < 0.05 * abs(gap) + 1e-4
    ours = attribute(model, x, t, methods="integrated_gradients", layer="block3", ig_steps=64)
    torch.testing.assert_close(ours["integrated_gradients"], torch.relu(attr.sum(1)), rtol=1e-4, atol=1e-7)


def test_normalize_maps_per_sample_and_degenerate():
    maps = torch.stack([torch.full((3, 3), 2.0), torch.zeros(3, 3), torch.full((3, 3), float("nan")),
                        torch.tensor([[0.0, 4.0, -1.0]] * 3)])
    normed, degenerate = normalize_maps(maps)
    assert degenerate.tolist() == [False, True, True, False]
    assert not torch.isnan(normed).any()
    assert normed[0].eq(1).all() and normed[1].eq(0).all() and normed[2].eq(0).all()
    assert normed[3, 0].tolist() == [0.0, 1.0, 0.0]  # own max (4), not the batch max; negatives clipped


def _normalize_reference(maps: torch.Tensor):
    """The definition spelled out row by row (specs/METRICS.md): own max, clipped, zero if degenerate."""
    out, flags = [], []
    for m in maps:
        bad = not bool(torch.isfinite(m).all()) or float(m.clamp_min(0).max()) <= 0
        out.append(torch.zeros_like(m) if bad else m.clamp_min(0) / m.clamp_min(0).max())
        flags.append(bad)
    return torch.stack(out), torch.tensor(flags)


def test_normalize_maps_matches_the_row_by_row_definition_with_inf_and_negative_rows():
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(8, 5, 6, generator=gen)
    maps[1] = -maps[1].abs()                  # all negative: degenerate
    maps[2, 0, 0] = float("inf")              # +inf: degenerate, not a map of zeros and one NaN
    maps[3, 4, 5] = float("-inf")
    maps[4, 2, 2] = float("nan")
    normed, degenerate = normalize_maps(maps)
    ref, ref_flags = _normalize_reference(maps)
    assert degenerate.tolist() == ref_flags.tolist() == [False, True, True, True, True, False, False, False]
    assert torch.equal(normed, ref)  # bit-identical: the same division by the same maximum
    empty, flags = normalize_maps(torch.zeros(2, 0, 3))
    assert empty.shape == (2, 0, 3) and flags.tolist() == [True, True]


def test_grad_cam_and_sgdrop_upsampled_together_equal_each_alone():
    model = build_model("cifarnet", 4, width=0.125)
    images, targets = torch.randn(3, 3, 32, 32), torch.tensor([0, 2, 3])
    both = attribute(model, images, targets, layer="block3")
    for name in ("grad_cam", "sgdrop"):
        alone = attribute(model, images, targets, methods=name, layer="block3")[name]
        assert torch.equal(alone, both[name]), name


def test_nested_attribution_mode_on_one_model_restores_once_at_the_outer_exit():
    model = _mixed_state_model()
    before = _state(model)
    with attribution_mode(model):
        with attribution_mode(model):
            handle = model.block3.register_forward_hook(lambda *a: None)
        assert not model.training and model.block1.training is False  # still in attribution mode
        assert not any(p.requires_grad for p in model.parameters())
        assert handle.id in model.block3._forward_hooks  # the inner exit restored nothing
    assert _state(model) == before and _hook_count(model) == 0
