"""Excitation Dropout, Catch-up Mix, box guidance and saliency-guided training (METHODS.md 3-6)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from overfocus.config import RegularizerConfig, build_config
from overfocus.data import Batch
from overfocus.errors import OverfocusError
from overfocus.models import MODELS, build_model, get_module
from overfocus.regularizers import RegContext, StepInfo, build_regularizer
from overfocus.regularizers.catchup_mix import (channel_mix, cutmix, default_stages, mixed_cross_entropy,
                                                relative_filter_influence, weaker_map_share)
from overfocus.regularizers.excitation_dropout import apply_keep_mask, drop_probability
from overfocus.regularizers.guidance import (box_mask, energy_loss, is_annotated, l1_loss, ppce_loss, rrr_loss)
from overfocus.regularizers.saliency_guided import kl_from_logits, lowest_saliency_mask, mask_images
from overfocus.regularizers.common import capture_output
from overfocus.runs.rundir import RunDir
from overfocus.training.engine import train

TINY = ["data.spec=builtin?classes=3&train=32&test=16", "data.image_size=32", "data.batch_size=16",
        "model.width=0.125", "model.small_input=true", "train.progress=false", "train.epochs=1"]


def ctx_for(model_name, has_boxes=True):
    return RegContext(model_name, MODELS.get(model_name).latent_layer, 3, 10, 1, torch.device("cpu"), has_boxes, 32)


def make(name, model_name="vgg11", **params):
    torch.manual_seed(0)
    model = build_model(model_name, 3, 0.125, True)
    reg = build_regularizer(RegularizerConfig(name, params), ctx_for(model_name))
    reg.setup(model)
    g = torch.Generator().manual_seed(1)
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 24.0]]), torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 32.0, 8.0]]),
             torch.tensor([[10.0, 10.0, 30.0, 30.0]])]
    batch = Batch(torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 1]), boxes, list("abcd"))
    return model, reg, batch


# ---- Excitation Dropout ------------------------------------------------------------------------
@pytest.mark.parametrize("n", [4, 100, 25088])
@pytest.mark.parametrize("retain", [0.5, 0.3, 0.8])
def test_uniform_excitation_gives_plain_dropout_rate(n, retain):
    p_drop = drop_probability(torch.full((2, n), 1.0 / n, dtype=torch.float64), retain)
    assert torch.allclose(p_drop, torch.full_like(p_drop, 1 - retain), atol=1e-9)


def test_uniform_excitation_masks_match_dropout_statistics():
    torch.manual_seed(0)
    n, b = 4096, 64
    keep = torch.bernoulli(1.0 - drop_probability(torch.full((b, n), 1.0 / n), 0.5))
    plain_keep = (F.dropout(torch.ones(b, n), 0.5) != 0).float()
    assert abs(keep.mean().item() - 0.5) < 0.01 and abs(plain_keep.mean().item() - 0.5) < 0.01
    assert abs(keep.mean(1).std().item() - plain_keep.mean(1).std().item()) < 0.01  # same spread per sample
    out = apply_keep_mask(torch.ones(b, n), keep)
    assert torch.allclose(out.mean(1), torch.ones(b))  # a * m / mean(m) keeps the mean
    assert torch.equal(out == 0, keep == 0)


def test_drop_probability_extremes():
    p = drop_probability(torch.tensor([[0.0, 1.0]]), 0.5)
    assert p.tolist() == [[0.0, 1.0]]  # irrelevant units are kept, the only relevant one is dropped


class _TinyNet(nn.Module):
    """encoder `enc` (latent, 2 channels) -> avgpool -> flatten -> FC -> ReLU -> FC, known weights."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0], [0.0, 1.0]]))
            self.fc2.weight.copy_(torch.tensor([[1.0, 1.0, -2.0], [0.0, 1.0, 1.0]]))
            self.fc2.bias.fill_(0.3)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(torch.flatten(self.pool(self.enc(x)), 1))))


def test_excitation_backprop_by_hand():
    """z = [1, 3]: h = relu([-2, 5, 3]) = [0, 5, 3]; gt 0: P(h) = [0, 1, 0]; P(z) = z * W1+^T [0, 1/5, 0]."""
    model = _TinyNet()
    ctx = RegContext("tiny", "enc", 2, 10, 1, torch.device("cpu"), False, 4)
    reg = build_regularizer(RegularizerConfig("excitation_dropout"), ctx)
    reg.setup(model)
    z = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)
    p = reg.unit_probabilities(z, z, torch.tensor([0]))
    assert torch.allclose(p, torch.tensor([[0.4, 0.6]]))
    p1 = reg.unit_probabilities(z, z, torch.tensor([1]))  # P(h) = [0, 5/8, 3/8]
    expected = torch.tensor([1.0, 3.0]) * (torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]]).T
                                           @ torch.tensor([0.0, 5 / 8 / 5, 3 / 8 / 3]))
    assert torch.allclose(p1, expected.view(1, 2)) and p1.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("model_name", ["vgg11", "resnet18", "cifarnet"])
def test_excitation_sums_to_one_over_the_latent_units(model_name):
    model, reg, batch = make("excitation_dropout", model_name)
    with torch.no_grad():
        z = capture_output(model.eval(), get_module(model, reg.layer), batch.images)
    p = reg.unit_probabilities(z, batch.images, batch.labels)
    assert p.shape == (4, z[0].numel()) and (p >= 0).all()
    assert torch.allclose(p.sum(1), torch.ones(4), atol=1e-4)


def test_excitation_dropout_in_training_only():
    model, reg, batch = make("excitation_dropout")
    latent = get_module(model, "features")
    seen = []
    latent.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    model.eval()
    with torch.no_grad():
        model(batch.images)
        reg._step_input = (batch.images, batch.labels)  # even inside a step, eval mode is untouched
        model(batch.images)
        reg._step_input = None
    assert torch.equal(seen[0], seen[1])
    model.train()
    raw = capture_output(model, latent, batch.images).detach().clone()
    _, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    masked = seen[-1]
    kept = (masked != 0) | (raw == 0)
    scale = masked[raw != 0] / raw[raw != 0]
    assert 0 < stats["kept_fraction"] < 1 and not kept.all()
    assert (scale[scale != 0] >= 1).all()  # kept units are scaled up by 1 / mean(m)


def test_excitation_dropout_refuses_an_unsupported_classifier():
    torch.manual_seed(0)
    model = build_model("convnext_tiny", 3, 0.125, True)
    reg = build_regularizer(RegularizerConfig("excitation_dropout"), ctx_for("convnext_tiny"))
    with pytest.raises(OverfocusError, match="LayerNorm2d"):
        reg.setup(model)


# ---- Catch-up Mix --------------------------------------------------------------------------------
def test_weaker_channel_maps_are_kept():
    f = torch.zeros(2, 4, 1, 1)
    f[0, :, 0, 0] = torch.tensor([4.0, 1.0, 1.0, 2.0])
    f[1, :, 0, 0] = torch.tensor([1.0, 1.0, 4.0, 2.0])
    perm = torch.tensor([1, 0])
    rfi = relative_filter_influence(f, perm)
    assert torch.allclose(rfi[0], torch.tensor([0.375, 0.0, -0.375, 0.0]))
    mixed = channel_mix(f, perm, lam=0.5)
    # sample 0 keeps its own map in the 2 channels of smallest RFI (2, then 1 by index), takes 0 and 3
    assert mixed[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0]
    assert mixed[1, :, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0]
    assert (mixed[:, [0, 2]] == torch.minimum(f, f[perm])[:, [0, 2]]).all()  # each carries the weaker map


def test_channel_mix_keeps_floor_lambda_channels():
    torch.manual_seed(0)
    f = torch.rand(3, 10, 2, 2) + 0.1
    perm = torch.tensor([1, 2, 0])
    mixed = channel_mix(f, perm, lam=0.37)
    own = (mixed == f).flatten(2).all(2)
    assert own.sum(1).tolist() == [3, 3, 3]  # floor(0.37 * 10) channels keep sample a's map


def test_cutmix_lambda_is_the_kept_area():
    torch.manual_seed(0)
    images = torch.stack([torch.zeros(3, 20, 20), torch.ones(3, 20, 20)])
    mixed, lam = cutmix(images, torch.tensor([1, 0]), 0.7)
    own = (mixed[0] == 0).all(0).float().mean().item()
    assert lam == pytest.approx(own) and 0.5 < lam < 1.0
    assert torch.equal(mixed[1] == 1, ~(mixed[0] == 1))  # the partner's box is the complement


def test_mixed_labels_loss():
    logits = torch.randn(4, 3)
    y_a, y_b = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2])
    expected = 0.3 * F.cross_entropy(logits, y_a) + 0.7 * F.cross_entropy(logits, y_b)
    assert torch.allclose(mixed_cross_entropy(logits, y_a, y_b, 0.3), expected)


def _catchup_draws(seed: int, batch: int):
    """Catch-up Mix's random draws of one step, replayed in its order after `manual_seed(seed)`:
    the Beta(1, 1) mixing weight, the partner permutation, then the mixing point's index."""
    torch.manual_seed(seed)
    lam = float(torch.distributions.Beta(1.0, 1.0).sample())
    perm = torch.randperm(batch)
    torch.randint(1, (1,))
    return lam, perm


def test_catchup_step_mixes_at_the_stage_and_mixes_the_labels():
    model, reg, batch = make("catchup_mix", "resnet18", stages="layer3", include_input=False)
    torch.manual_seed(5)
    loss, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    lam, perm = _catchup_draws(seed=5, batch=4)
    handle = model.layer3.register_forward_hook(lambda _m, _i, out: channel_mix(out, perm, lam))
    logits = model(batch.images)
    handle.remove()
    assert stats["lam"] == lam and stats["mix_at_input"] == 0.0
    assert torch.allclose(loss, mixed_cross_entropy(logits, batch.labels, batch.labels[perm], lam))


def test_weaker_map_share_counts_channels_that_carry_the_weaker_map():
    torch.manual_seed(0)
    f = torch.rand(4, 12, 3, 3) + 0.05
    perm = torch.tensor([1, 2, 3, 0])
    for lam in (0.1, 0.5, 0.9):
        mixed = channel_mix(f, perm, lam)
        n_own, n_partner = f.flatten(2).norm(dim=2), f[perm].flatten(2).norm(dim=2)
        share_own = n_own / n_own.sum(1, keepdim=True)
        share_partner = n_partner / n_partner.sum(1, keepdim=True)
        kept_own = (mixed == f).flatten(2).all(2)
        weaker = torch.where(kept_own, share_own <= share_partner, share_partner <= share_own)
        assert weaker_map_share(f, perm, lam) == pytest.approx(weaker.float().mean().item())
    assert weaker_map_share(f, perm, 0.1) < 1.0  # a fixed count: not every channel carries the weaker map


def test_catchup_cutmix_branch_through_the_regularizer():
    model, reg, batch = make("catchup_mix", "resnet18", stages="layer3", include_input=True)
    reg.points = [None]  # force the input mixing point
    model.eval()  # deterministic forward: the loss can be recomputed exactly
    torch.manual_seed(7)
    loss, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    lam, perm = _catchup_draws(seed=7, batch=4)
    mixed, area_lam = cutmix(batch.images, perm, lam)
    assert stats["mix_at_input"] == 1.0 and stats["lam"] == area_lam and stats["weaker_channels"] == 0.0
    assert not torch.equal(mixed, batch.images)
    expected = mixed_cross_entropy(model(mixed), batch.labels, batch.labels[perm], area_lam)
    assert torch.allclose(loss, expected)


def test_catchup_mix_passes_evaluation_through():
    model, reg, batch = make("catchup_mix", "resnet18", stages="layer3", include_input=False)
    model.eval()
    plain = model(batch.images)
    reg._mix = (model.layer3, torch.tensor([1, 2, 3, 0]), 0.5)  # even with a mix armed, eval sees no mixing
    assert torch.equal(model(batch.images), plain)
    reg._mix = None
    model.train()
    reg.teardown(model)
    model.eval()
    assert torch.equal(model(batch.images), plain)


def test_default_stages_of_vgg_are_its_max_pools():
    model = build_model("vgg11", 3, 0.125, True)
    stages = default_stages(model, "vgg11")
    assert len(stages) == 3 and all(isinstance(get_module(model, s), nn.MaxPool2d) for s in stages)


@pytest.mark.parametrize("model_name, stages", [
    ("resnet18", ["layer1", "layer2", "layer3", "layer4"]),
    ("cifarnet", ["block1", "block2", "block3"]),
    ("convnext_tiny", ["features.1", "features.3", "features.5", "features.7"])])
def test_default_stages_per_family(model_name, stages):
    assert default_stages(build_model(model_name, 3, 0.125, True), model_name) == stages


# ---- guidance ----------------------------------------------------------------------------------------
def test_energy_loss_zero_inside_one_outside():
    m = torch.zeros(1, 4, 4)
    m[0, 1:3, 1:3] = 1
    inside = torch.zeros(1, 4, 4)
    inside[0, 1, 2], inside[0, 2, 2] = 3.0, 1.0
    inside[0, 0, 0] = -5.0  # negative attribution outside does not count
    outside = torch.zeros(1, 4, 4)
    outside[0, 0, 3] = 2.0
    assert energy_loss(inside, m).item() == 0.0
    assert energy_loss(outside, m).item() == 1.0
    assert energy_loss(torch.zeros(1, 4, 4), m).item() == 1.0  # tiny total: 1 - sum_M A+
    half = inside.clamp(min=0) + outside * 2
    assert energy_loss(half, m).item() == pytest.approx(0.5)


def test_other_localisation_losses():
    m = torch.tensor([[[1.0, 0.0]]])
    a = torch.tensor([[[2.0, -1.0]]])
    assert l1_loss(a, m).item() == 0.0  # A_hat = [1, 0] = M
    assert ppce_loss(torch.tensor([[[0.5, 1.0]]]), m).item() == pytest.approx(math.log(2))
    assert rrr_loss(a, m).item() == pytest.approx(0.25)  # (-1 / 2)^2 outside


def test_box_mask_union_and_dilation():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [3.0, 3.0, 4.0, 4.0]])
    m = box_mask(boxes, 4, 4)
    assert m.sum().item() == 3 and m[0, 0] == 1 and m[3, 3] == 1
    assert box_mask(boxes[1:], 4, 4, dilation=1.0).sum().item() == 4


def test_annotated_fraction_is_deterministic_and_about_right():
    ids = [f"train_{i:06d}" for i in range(3000)]
    picked = [is_annotated(i, 0, 0.1) for i in ids]
    assert picked == [is_annotated(i, 0, 0.1) for i in ids]
    assert 0.08 < sum(picked) / len(ids) < 0.12
    assert picked != [is_annotated(i, 1, 0.1) for i in ids]


def test_guidance_needs_boxes():
    with pytest.raises(OverfocusError, match="needs ground-truth boxes"):
        build_regularizer(RegularizerConfig("guidance"), ctx_for("vgg11", has_boxes=False))


@pytest.mark.parametrize("attribution", ["gradcam", "ixg"])
@pytest.mark.parametrize("loss_name", ["energy", "l1", "ppce", "rrr"])
def test_guidance_gradients_reach_the_weights(attribution, loss_name):
    model, reg, batch = make("guidance", "resnet18", attribution=attribution, loss=loss_name, lambda_loc=1.0)
    _, maps = reg._forward_with_maps(model, batch)
    assert maps.shape == (4, 32, 32)
    masks = torch.stack([box_mask(b, 32, 32) for b in batch.boxes])
    from overfocus.regularizers.guidance import LOSS_FUNCTIONS

    loc = LOSS_FUNCTIONS[loss_name](maps, masks).sum()
    grads = torch.autograd.grad(loc, [model.conv1.weight, model.layer1[0].conv1.weight])
    assert all(g.abs().sum() > 0 for g in grads)
    total, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    assert stats["annotated"] == 3.0  # the image without a box does not count


class _CamNet(nn.Module):
    """features = a stride-4 conv equal to 4 x 4 average pooling per channel (16 px -> 4 x 4), then the
    global mean and a linear layer: the Grad-CAM of class y at `features` is sum_c W[y, c] / 16 * F_c."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 3, 4, stride=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 4, 4) / 16.0)
            self.features.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.5, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.1]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _known_gradcam(model, images, labels):
    """The reference order by hand: analytic layer map, ReLU, / max at 4 x 4, then bilinear to 16 x 16."""
    cam = torch.einsum("bc,bchw->bhw", model.fc.weight[labels] / 16.0, F.avg_pool2d(images, 4)).clamp(min=0)
    cam = cam / cam.amax((1, 2), keepdim=True).clamp_min(1e-7)
    return F.interpolate(cam[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize("loss_name", ["energy", "l1", "ppce", "rrr"])
def test_guidance_total_loss_is_ce_plus_lambda_times_the_sum_over_annotated_images(loss_name):
    torch.manual_seed(0)
    model = _CamNet()
    ctx = RegContext("camnet", "features", 2, 10, 1, torch.device("cpu"), True, 16)
    reg = build_regularizer(RegularizerConfig("guidance", {"loss": loss_name, "lambda_loc": 0.3}), ctx)
    reg.setup(model)
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 0])
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.zeros(0, 4), torch.tensor([[4.0, 4.0, 16.0, 12.0]])]
    loss, stats = reg.loss(model, Batch(images, labels, boxes, ["a", "b", "c"]), StepInfo(0, 1, 0))
    maps = _known_gradcam(model, images, labels)
    assert (maps >= 0).all() and maps.amin() == 0  # negative attribution is gone before any loss
    masks = torch.stack([box_mask(boxes[0], 16, 16), box_mask(boxes[2], 16, 16)])
    per_image = {"energy": energy_loss, "l1": l1_loss, "ppce": ppce_loss, "rrr": rrr_loss}[loss_name]
    loc = per_image(maps[[0, 2]], masks)
    expected = F.cross_entropy(model(images), labels) + 0.3 * loc.sum()
    assert stats["annotated"] == 2.0
    assert torch.allclose(loss, expected, atol=1e-6)
    if loss_name == "rrr":  # the old order (upsample the signed map first) penalised negative attribution
        raw = torch.einsum("bc,bchw->bhw", model.fc.weight[labels] / 16.0, F.avg_pool2d(images, 4))
        signed = F.interpolate(raw[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
        assert rrr_loss(signed[[0, 2]], masks).sum() > loc.sum()


def test_ppce_keeps_the_gradient_of_near_zero_pixels():
    a = torch.tensor([[[1.0, 1e-8, 0.0, 0.5]]], requires_grad=True)
    m = torch.ones(1, 1, 4)
    loss = ppce_loss(a, m)
    (grad,) = torch.autograd.grad(loss.sum(), a)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert grad[0, 0, 1] < -1e6  # pushed up hard, not zeroed by a floor on the map
    assert loss.item() == pytest.approx((0.0 - math.log(1e-8) + 100.0 + math.log(2)) / 4, rel=1e-4)  # log(0) clamped at -100


def test_guidance_with_no_annotated_image_is_plain_cross_entropy():
    model, reg, batch = make("guidance", annotated_fraction=0.0)
    model.eval()
    loss, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    assert stats["annotated"] == 0.0
    assert torch.equal(loss, F.cross_entropy(model(batch.images), batch.labels))


# ---- saliency-guided ------------------------------------------------------------------------------
def test_lowest_saliency_pixels_are_masked():
    torch.manual_seed(0)
    sal = torch.randn(3, 5, 6)
    mask = lowest_saliency_mask(sal, 0.5)
    assert mask.shape == (3, 1, 5, 6) and mask.flatten(1).sum(1).tolist() == [15, 15, 15]
    for b in range(3):
        threshold = sal[b].flatten().sort().values[14]
        assert (sal[b][mask[b, 0]] <= threshold).all() and (sal[b][~mask[b, 0]] >= threshold).all()


def test_masked_pixels_are_replaced_within_each_channels_range():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4) + torch.tensor([-10.0, 0.0, 10.0]).view(1, 3, 1, 1)  # disjoint channel ranges
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :2] = True
    out = mask_images(x, mask, "random")
    assert torch.equal(out[:, :, 2:], x[:, :, 2:]) and not torch.equal(out[:, :, :2], x[:, :, :2])
    for b in range(2):
        for c in range(3):
            assert x[b, c].min() <= out[b, c].min() and out[b, c].max() <= x[b, c].max()
    means = mask_images(x, mask)  # the default fill: the colour-image recipe's channel means
    assert torch.allclose(means[:, :, 0, 0], x.mean((2, 3)))


def test_kl_term():
    p, q = torch.randn(5, 4), torch.randn(5, 4)
    lp, lq = F.log_softmax(p, 1), F.log_softmax(q, 1)
    expected = (lp.exp() * (lp - lq)).sum(1).mean()
    assert torch.allclose(kl_from_logits(p, q), expected)
    assert kl_from_logits(p, p).abs().item() < 1e-6


def test_saliency_guided_defaults_are_the_colour_image_recipe():
    params = build_regularizer(RegularizerConfig("saliency_guided"), None).params
    assert (params.r, params.replace, params.saliency, params.lambda_kl) == (0.1, "mean", "signed", 1.0)


def _eval_mode_saliency_mask(model, images, labels, r):
    """Reference: a deep copy in eval mode, its signed input gradient averaged over channels."""
    frozen = copy.deepcopy(model).eval()
    x = images.clone().requires_grad_(True)
    grads = torch.autograd.grad(frozen(x).gather(1, labels.view(-1, 1)).sum(), x)[0]
    return lowest_saliency_mask(grads.mean(1), r)


def test_saliency_is_taken_in_eval_mode_with_batchnorm_and_dropout_present():
    model, reg, batch = make("saliency_guided", "vgg11", r=0.3)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    with torch.no_grad():  # running statistics far from the batch's, so train and eval saliency differ
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)
    model.train()
    model.features[1].eval()  # a module in its own mode must get it back
    stats_before = [b.clone() for b in model.buffers()]
    expected = _eval_mode_saliency_mask(model, batch.images, batch.labels, 0.3)
    torch.manual_seed(5)
    mask = reg.saliency_mask(model, batch.images, batch.labels)
    assert torch.equal(mask, expected)
    assert all(torch.equal(a, b) for a, b in zip(stats_before, model.buffers()))  # BN statistics untouched
    assert model.training and not model.features[1].training
    assert all(m.training for i, m in enumerate(model.features) if i != 1)
    x = batch.images.clone().requires_grad_(True)  # the train-mode saliency the old code used differs
    torch.manual_seed(5)
    train_grads = torch.autograd.grad(model(x).gather(1, batch.labels.view(-1, 1)).sum(), x)[0]
    assert not torch.equal(lowest_saliency_mask(train_grads.mean(1), 0.3), expected)


def test_saliency_guided_loss_is_ce_plus_kl():
    model, reg, batch = make("saliency_guided", "resnet18", lambda_kl=2.0)
    model.eval()  # deterministic forward: the loss can be recomputed exactly
    torch.manual_seed(3)
    loss, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    x = batch.images.clone().requires_grad_(True)
    logits = model(x)
    grads = torch.autograd.grad(logits.gather(1, batch.labels.view(-1, 1)).sum(), x)[0]
    torch.manual_seed(3)
    masked = mask_images(batch.images, lowest_saliency_mask(grads.mean(1), 0.1), "mean")
    kl = kl_from_logits(logits, model(masked))
    assert torch.allclose(stats["kl"], kl)
    assert torch.allclose(loss, F.cross_entropy(logits, batch.labels) + 2.0 * kl)


# ---- every method through the engine -----------------------------------------------------------------
@pytest.mark.parametrize("method", ["excitation_dropout", "catchup_mix", "guidance", "saliency_guided"])
@pytest.mark.parametrize("model_name", ["vgg11", "resnet18"])
def test_one_epoch_trains_and_writes_checkpoints(tmp_path, method, model_name):
    cfg = build_config(overrides=TINY + [f"model.name={model_name}", f"regularizer.name={method}"])
    run = RunDir(train(cfg, tmp_path / "run"))
    assert run.checkpoint_epochs() == [0, 1]
    assert run.read_manifest()["status"] == "complete"
    assert math.isfinite(run.read_metrics()[-1]["train_loss"])


# ---- latent dropout (the baseline) ------------------------------------------------------------------
def _latent_after_dropout(model, reg, images):
    return capture_output(model, get_module(model, reg.ctx.latent_layer), images)


def test_latent_dropout_rate_and_inverted_scaling():
    model, reg, batch = make("dropout", "vgg11", p=0.3)
    twin = build_model("vgg11", 3, 0.125, True)  # same weights, no regularizer hook
    twin.load_state_dict(model.state_dict())
    images = batch.images.repeat(8, 1, 1, 1)
    model.train()
    twin.train()  # both use the batch's BatchNorm statistics; nothing random runs before the latent
    z = capture_output(twin, get_module(twin, reg.ctx.latent_layer), images).detach()
    dropped = _latent_after_dropout(model, reg, images).detach()
    alive = z != 0
    kept = dropped[alive] != 0
    assert alive.sum() > 5000
    assert abs(1.0 - kept.float().mean().item() - 0.3) < 0.02  # the drop rate is p
    assert torch.allclose(dropped[alive][kept], z[alive][kept] / 0.7, rtol=1e-5)  # kept units scaled by 1/(1-p)


def test_latent_dropout_p0_is_the_identity_and_eval_passes_through():
    model, reg, batch = make("dropout", "vgg11", p=0.0)
    model.train()
    twin = build_model("vgg11", 3, 0.125, True)
    twin.load_state_dict(model.state_dict())
    twin.train()
    torch.manual_seed(1)
    a = _latent_after_dropout(model, reg, batch.images)
    torch.manual_seed(1)
    b = capture_output(twin, get_module(twin, reg.ctx.latent_layer), batch.images)
    assert torch.equal(a, b)
    model, reg, batch = make("dropout", "vgg11", p=0.5)
    twin.load_state_dict(model.state_dict())
    model.eval()
    twin.eval()
    assert torch.equal(model(batch.images), twin(batch.images))


def test_latent_dropout_rejects_a_bad_rate():
    with pytest.raises(OverfocusError, match="0 <= p < 1"):
        make("dropout", "vgg11", p=1.0)
