"""SGDrop (METHODS.md section 1): the invariants of the spec, the head runner, resume, training."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from overfocus.config import RegularizerConfig, build_config
from overfocus.data import Batch
from overfocus.errors import OverfocusError
from overfocus.models import MODELS, build_model, get_module
from overfocus.regularizers import RegContext, StepInfo, build_regularizer
from overfocus.regularizers.common import HeadRunner, capture_output, largest_k_mask
from overfocus.regularizers.sgdrop import (drop_count, ema_tau, full_model_attribution,
                                           grad_times_latent, sgdrop_mask)
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint
from overfocus.training.engine import resume, train

TINY = ["data.spec=builtin?classes=3&train=32&test=16", "data.image_size=32", "data.batch_size=16",
        "model.width=0.125", "model.small_input=true", "train.progress=false"]


def make(name="sgdrop", model_name="vgg11", steps=10, epochs=2, **params):
    """A seeded tiny model, its regularizer (set up) and a batch."""
    torch.manual_seed(0)
    model = build_model(model_name, 3, 0.125, True)
    ctx = RegContext(model_name, MODELS.get(model_name).latent_layer, 3, steps, epochs, torch.device("cpu"))
    reg = build_regularizer(RegularizerConfig(name, params), ctx)
    reg.setup(model)
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 1]), [], ["a", "b", "c", "d"])
    return model, reg, batch


def one_step(model, reg, batch, step=0):
    """One engine step: loss, backward, Adam step, after_step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.manual_seed(123)  # the classifier's dropout draws the same numbers in both runs
    loss, stats = reg.loss(model, batch, StepInfo(step, 1, step))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    reg.after_step(model)
    return loss, stats


# ---- pure pieces ---------------------------------------------------------------------------------
def test_largest_k_mask_exact_count_and_ties_by_index():
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 3.0, 3.0, 0.0]])
    mask = largest_k_mask(scores, 2)
    assert mask.sum(1).tolist() == [2, 2]
    assert mask[0].tolist() == [True, True, False, False, False]  # all tied: lowest indices
    assert mask[1].tolist() == [True, False, True, False, False]
    assert not largest_k_mask(scores, 0).any()


def test_drop_count_formula():
    assert drop_count(0.01, 25088) == 251  # ~250 units of VGG16's 512 x 7 x 7 (the paper)
    assert drop_count(0.0, 100) == 1  # k = max(1, ...)
    assert drop_count(0.1, 100) == 10  # no float round-up to 11
    assert drop_count(0.999, 10) == 10


@pytest.mark.parametrize("granularity, shape, units", [("element", (2, 3, 4, 4), 48), ("spatial", (2, 1, 4, 4), 16),
                                                       ("channel", (2, 3, 1, 1), 3)])
def test_mask_granularities(granularity, shape, units):
    a = torch.rand(2, 3, 4, 4)
    m = sgdrop_mask(a, 2, granularity)
    assert m.shape == shape
    assert ((m == 0).flatten(1).sum(1) == 2).all() and m.flatten(1).shape[1] == units
    if granularity == "spatial":  # the two positions with the largest channel-summed A
        top = a.sum(1).flatten(1).topk(2).indices
        assert (m.flatten(1).gather(1, top) == 0).all()


def test_grad_times_latent_is_relu_of_gradient_times_input():
    z = torch.randn(3, 5, requires_grad=True)
    w = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1])
    expected = F.relu(w[:, y].T * z).detach()
    assert torch.allclose(grad_times_latent(z, z @ w, y), expected)


# ---- the head runner -------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", ["vgg11", "resnet18", "convnext_tiny", "cifarnet"])
def test_head_runner_equals_model_and_skips_the_encoder(model_name):
    torch.manual_seed(0)
    model = build_model(model_name, 4, 0.125, True).eval()
    layer = MODELS.get(model_name).latent_layer
    x = torch.randn(2, 3, 32, 32)
    head = HeadRunner(model, layer, x)
    with torch.no_grad():
        z = capture_output(model, head.latent, x)
        calls = []  # convolutions that really compute (a skipped root's own hook still fires)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m not in head.encoder_roots]
        handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in convs]
        out = head(z, x)
        for handle in handles:
            handle.remove()
        assert torch.allclose(out, model(x), atol=1e-5)
    assert calls == []  # the encoder did not run


def test_head_runner_at_a_dotted_cut():
    torch.manual_seed(0)
    model = build_model("vgg11", 4, 0.125, True).eval()
    x = torch.randn(2, 3, 32, 32)
    head = HeadRunner(model, "features.7", x)
    with torch.no_grad():
        z = capture_output(model, get_module(model, "features.7"), x)
        assert torch.allclose(head(z, x), model(x), atol=1e-5)
    assert head.encoder_roots  # features.0..6 skipped


# ---- METHODS.md invariants ------------------------------------------------------------------------
@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("model_name", ["vgg11", "resnet18"])
def test_k_zero_reproduces_the_plain_step_bit_for_bit(model_name, ema):
    model_a, reg_a, batch = make("none", model_name)
    model_b, reg_b, _ = make("sgdrop", model_name, k_override=0, ema=ema)
    loss_a, _ = one_step(model_a, reg_a, batch)
    loss_b, stats = one_step(model_b, reg_b, batch)
    assert stats["dropped_units"] == 0
    assert torch.equal(loss_a, loss_b)
    for (name, pa), pb in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("granularity, units", [("element", 64 * 4 * 4), ("spatial", 16), ("channel", 64)])
@pytest.mark.parametrize("ema", [True, False])
def test_exactly_k_units_zeroed_per_sample(ema, granularity, units):
    torch.manual_seed(0)
    model = build_model("vgg11", 3, 0.125, True)
    latent = get_module(model, "features")
    latent.register_forward_hook(lambda _m, _i, out: out + 1.0)  # before the mask: no zero in z
    ctx = RegContext("vgg11", "features", 3, 10, 1, torch.device("cpu"))
    reg = build_regularizer(RegularizerConfig("sgdrop", {"rho": 0.05, "ema": ema, "granularity": granularity}), ctx)
    reg.setup(model)
    seen = {}
    latent.register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))  # after the mask
    batch = Batch(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), [], list("abcd"))
    _, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    k = math.ceil(0.05 * units)
    assert stats["dropped_units"] == k
    zeros = (seen["z"] == 0).flatten(1).sum(1)
    per_unit = {"element": 1, "spatial": 64, "channel": 16}[granularity]
    assert zeros.tolist() == [k * per_unit] * 4


def test_mask_comes_from_the_ema_network():
    model, reg, batch = make("sgdrop", rho=0.05)
    with torch.no_grad():  # the online weights now differ from the EMA copy
        for p in model.parameters():
            p.mul_(1 + 0.5 * torch.randn_like(p))
    latent = get_module(model, "features")
    with torch.no_grad():
        raw_z = capture_output(model, latent, batch.images)
    seen = {}
    latent.register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))
    reg.loss(model, batch, StepInfo(0, 1, 0))
    k = drop_count(0.05, raw_z[0].numel())
    from_ema = sgdrop_mask(reg.ema_attribution(batch.images, batch.labels), k)
    online_copy = _eval_copy(model)
    from_online = sgdrop_mask(full_model_attribution(online_copy, get_module(online_copy, "features"),
                                                     batch.images, batch.labels), k)
    assert torch.equal(seen["z"], raw_z * from_ema)
    assert not torch.equal(from_ema, from_online)


def _eval_copy(model):
    import copy

    clone = copy.deepcopy(model).eval()
    for h in list(get_module(clone, "features")._forward_hooks):
        del get_module(clone, "features")._forward_hooks[h]
    return clone


def test_without_ema_the_mask_comes_from_the_online_weights():
    """A from the online forward's own z (train-mode encoder), through psi in eval mode."""
    model, reg, batch = make("sgdrop", rho=0.05, ema=False)
    assert reg.ema is None
    latent = get_module(model, "features")
    with torch.no_grad():
        raw_z = capture_output(model, latent, batch.images)
    online = _eval_copy(model)
    leaf = raw_z.clone().requires_grad_(True)
    get_module(online, "features").register_forward_hook(lambda *_: leaf)  # the full model, z substituted
    expected = sgdrop_mask(grad_times_latent(leaf, online(batch.images), batch.labels),
                           drop_count(0.05, raw_z[0].numel()))
    seen = {}
    latent.register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))
    reg.loss(model, batch, StepInfo(0, 1, 0))
    assert torch.equal(seen["z"], raw_z * expected)
    assert model.training  # the eval-mode attribution pass restored the training mode


def test_ema_update_is_exact_and_copies_buffers():
    model, reg, batch = make("sgdrop", model_name="resnet18", tau=0.9)
    before = {k: v.clone() for k, v in reg.ema.state_dict().items()}
    one_step(model, reg, batch)
    online = model.state_dict()
    for name, p in reg.ema.named_parameters():
        assert torch.equal(p, before[name].mul(0.9).add(online[name], alpha=1 - 0.9)), name
    for name, b in reg.ema.named_buffers():
        assert torch.equal(b, online[name]), name
    assert not any(p.requires_grad for p in reg.ema.parameters()) and not reg.ema.training


def test_tau_from_the_run_horizon_and_explicit():
    _, reg, _ = make("sgdrop", steps=80, epochs=20)
    assert reg.tau == pytest.approx(1 - 1 / (0.05 * 1600))
    assert ema_tau(10, 0.05) == 0.9 and ema_tau(10 ** 9, 0.05) == 0.9999
    _, reg, _ = make("sgdrop", tau=0.99)
    assert reg.tau == 0.99


@pytest.mark.parametrize("unit, first, last", [("step", StepInfo(0, 1, 0), StepInfo(29, 3, 9)),
                                                ("epoch", StepInfo(0, 1, 0), StepInfo(20, 3, 0))])
def test_curriculum_hits_rho_start_and_rho_max(unit, first, last):
    _, reg, _ = make("sgdrop", steps=10, epochs=3, schedule="linear", rho_start=0.02, rho_max=0.2,
                     schedule_unit=unit)
    assert reg.rho_at(first) == 0.02
    assert reg.rho_at(last) == 0.2
    middle = StepInfo(14, 2, 4)
    assert 0.02 < reg.rho_at(middle) < 0.2


def test_curriculum_with_a_short_ramp_then_flat():
    _, reg, _ = make("sgdrop", steps=10, epochs=3, schedule="linear", rho_max=0.1, ramp=5)
    assert [reg.rho_at(StepInfo(s, 1, s)) for s in (0, 4, 20)] == [0.0, 0.1, 0.1]


@pytest.mark.parametrize("model_name, fixed, curriculum_end", [("vgg11", 0.01, 0.05), ("resnet18", 0.01, 0.1),
                                                                ("convnext_tiny", 0.1, 0.2), ("cifarnet", 0.01, 0.05)])
def test_default_rho_by_family_from_the_papers_settings_table(model_name, fixed, curriculum_end):
    reg = build_regularizer(RegularizerConfig("sgdrop", {"schedule": "linear"}),
                            RegContext(model_name=model_name, latent_layer="features", num_classes=3,
                                       steps_per_epoch=10, epochs=3, device=torch.device("cpu")))
    assert reg.base_rho == fixed
    assert reg.rho_at(StepInfo(0, 1, 0)) == 0.0
    assert reg.rho_at(StepInfo(29, 3, 9)) == curriculum_end > fixed  # the curriculum reaches ABOVE the fixed rho


def test_exactly_k_even_where_fewer_units_are_positive_ties_by_index():
    """METHODS.md: exactly k per sample (the paper's top rho-quantile); zeros tie, lower index first."""
    a = torch.zeros(2, 2, 3, 3)
    a[0, 0, 0, 0], a[0, 1, 2, 2] = 2.0, 1.0  # two positive units in sample 0
    a[1] = torch.arange(18, dtype=torch.float32).view(2, 3, 3)
    dropped = (sgdrop_mask(a, 5) == 0).flatten(1)
    assert dropped.sum(1).tolist() == [5, 5]
    assert dropped[0].nonzero().flatten().tolist() == [0, 1, 2, 3, 17]  # both positives, then zeros by index
    assert dropped[1].nonzero().flatten().tolist() == [13, 14, 15, 16, 17]


def test_positive_only_makes_k_an_upper_bound():
    a = torch.zeros(2, 2, 3, 3)
    a[0, 0, 0, 0], a[0, 1, 2, 2] = 2.0, 1.0  # two positive units in sample 0
    a[1] = torch.arange(18, dtype=torch.float32).view(2, 3, 3)  # 17 positive units in sample 1
    mask = sgdrop_mask(a, 5, positive_only=True)
    dropped = (mask == 0).flatten(1)
    assert dropped.sum(1).tolist() == [2, 5]
    assert mask[0, 0, 0, 0] == 0 and mask[0, 1, 2, 2] == 0
    assert dropped[1].nonzero().flatten().tolist() == [13, 14, 15, 16, 17]
    assert (sgdrop_mask(torch.zeros(1, 2, 2, 2), 3, positive_only=True) == 1).all()
    for granularity in ("spatial", "channel"):
        assert (sgdrop_mask(torch.zeros(1, 2, 2, 2), 1, granularity, positive_only=True) == 1).all()


def test_positive_only_option_reaches_the_mask_and_the_logged_count():
    model, reg, batch = make("sgdrop", k_override=10 ** 6, positive_only=True)
    attribution = reg.ema_attribution(batch.images, batch.labels)
    _, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    assert float(stats["dropped_units"]) == (attribution > 0).flatten(1).sum(1).float().mean().item()


# ---- the choices the paper leaves open (docs/methods.md, "SGDrop against the paper") --------------
def test_ema_starts_as_the_initial_online_weights_and_stays_in_eval_mode():
    model, reg, batch = make("sgdrop", rho=0.05)
    for (name, p), q in zip(model.state_dict().items(), reg.ema.state_dict().values()):
        assert torch.equal(p, q), name
    one_step(model, reg, batch)
    model.train()  # the engine puts the online model in train mode each epoch: the copy stays in eval
    assert not any(m.training for m in reg.ema.modules())


def test_ema_pass_is_eval_mode_no_dropout_noise():
    """The attribution network runs in eval mode: the classifier's dropout draws nothing, the
    attribution equals that of an eval-mode copy and is the same on every call."""
    model, reg, batch = make("sgdrop", rho=0.05)
    torch.manual_seed(5)
    first = reg.ema_attribution(batch.images, batch.labels)
    torch.manual_seed(6)
    second = reg.ema_attribution(batch.images, batch.labels)
    clone = _eval_copy(model)
    expected = full_model_attribution(clone, get_module(clone, "features"), batch.images, batch.labels)
    assert torch.equal(first, second)
    assert torch.allclose(first, expected, rtol=1e-4, atol=1e-6)


def test_online_forward_is_z_times_mask_without_rescaling():
    """logits of the step = psi(z * M): the plain product, no 1/(1-rho) factor (train mode, dropout
    noise fixed by the seed)."""
    model, reg, batch = make("sgdrop", rho=0.05)
    latent = get_module(model, "features")
    with torch.no_grad():
        raw_z = capture_output(model, latent, batch.images)
    mask = sgdrop_mask(reg.ema_attribution(batch.images, batch.labels), drop_count(0.05, raw_z[0].numel()))
    torch.manual_seed(9)
    loss, _ = reg.loss(model, batch, StepInfo(0, 1, 0))
    torch.manual_seed(9)
    expected = F.cross_entropy(model.classifier(torch.flatten(model.avgpool(raw_z * mask), 1)), batch.labels)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_the_recipes_vgg_head_is_pinned():
    """The classifier psi of the BN-free VGG11 x0.25 at 64 px (the table recipe): latent 128 x 8 x 8
    after `features`, average-pooled to 2 x 2, then three fully connected layers with dropout."""
    model = build_model("vgg11", 10, 0.25, True, False)
    z = capture_output(model, get_module(model, "features"), torch.randn(1, 3, 64, 64))
    assert tuple(z.shape) == (1, 128, 8, 8)
    assert model.avgpool.output_size == (2, 2)
    layers = [type(m).__name__ for m in model.classifier]
    assert layers == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [(m.in_features, m.out_features) for m in model.classifier if isinstance(m, torch.nn.Linear)] == [
        (512, 256), (256, 256), (256, 10)]
    assert [m.p for m in model.classifier if isinstance(m, torch.nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("params, message", [({"rho": 1.5}, "rho"), ({"granularity": "pixel"}, "granularity"),
                                              ({"schedule": "cosine"}, "schedule"), ({"tau": 1.0}, "tau"),
                                              ({"k_override": -3}, "k_override")])
def test_bad_params_are_one_line_errors(params, message):
    with pytest.raises(OverfocusError, match=message):
        build_regularizer(RegularizerConfig("sgdrop", params), None)


def test_clean_ce_term_adds_the_unmasked_loss():
    model, reg, batch = make("sgdrop", rho=0.2, clean_ce_weight=0.5)
    model.eval()  # no dropout noise: both terms can be recomputed
    plain = F.cross_entropy(model(batch.images), batch.labels)
    with torch.no_grad():
        z = capture_output(model, get_module(model, "features"), batch.images)
    mask = sgdrop_mask(reg.ema_attribution(batch.images, batch.labels), drop_count(0.2, z[0].numel()))
    handle = get_module(model, "features").register_forward_hook(lambda _m, _i, out: out * mask)
    masked = F.cross_entropy(model(batch.images), batch.labels)
    handle.remove()
    model.train()
    for module in model.modules():  # train mode for the latent hook only: the classifier stays deterministic
        module.training = module is get_module(model, "features")
    loss, _ = reg.loss(model, batch, StepInfo(0, 1, 0))
    assert torch.allclose(loss, masked + 0.5 * plain)
    assert not torch.allclose(masked, plain)


def test_teardown_leaves_a_plain_model():
    model, reg, batch = make("sgdrop")
    reg.teardown(model)
    assert not get_module(model, "features")._forward_hooks


# ---- through the engine ------------------------------------------------------------------------------
def test_resume_with_sgdrop_is_bit_exact(tmp_path):
    sets = TINY + ["model.name=vgg11", "regularizer.name=sgdrop", "regularizer.rho=0.05", "regularizer.tau=0.9",
                   "train.epochs=2"]
    ref = train(build_config(overrides=sets), tmp_path / "ref")
    part = train(build_config(overrides=[*sets[:-1], "train.epochs=1"]), tmp_path / "part")
    resume(part, epochs=2)
    a = RunDir(ref).load_training_state(2)  # the EMA copy lives in the latest epoch's full state
    b = RunDir(part).load_training_state(2)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["regularizer"]["ema"]:
        assert torch.equal(a["regularizer"]["ema"][key], b["regularizer"]["ema"][key]), key


@pytest.mark.slow  # ~1 s on an idle machine, much more on a shared one; the explicit-tau test above is the quick one
def test_resume_with_automatic_schedule_is_bit_exact(tmp_path):
    """A run cut after epoch 1 (later files removed) resumes to the same weights (auto tau, curriculum)."""
    sets = TINY + ["model.name=resnet18", "regularizer.name=sgdrop", "regularizer.schedule=linear", "train.epochs=2",
                   "train.keep_full_every=1"]  # every epoch's full state kept: the run can be cut after epoch 1
    ref = train(build_config(overrides=sets), tmp_path / "ref")
    cut = tmp_path / "cut"
    shutil.copytree(ref, cut)
    RunDir(cut).checkpoint_path(2).unlink()
    RunDir(cut).state_path(2).unlink()
    RunDir(cut).set_latest(1)
    resume(cut)
    a = load_checkpoint(RunDir(ref).checkpoint_path(2))["model"]
    b = load_checkpoint(RunDir(cut).checkpoint_path(2))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("model_name", ["vgg11", "resnet18"])
@pytest.mark.parametrize("ema", [True, False])
def test_one_epoch_trains_and_logs_stats(tmp_path, model_name, ema):
    cfg = build_config(overrides=TINY + [f"model.name={model_name}", "regularizer.name=sgdrop", "train.epochs=1",
                                         f"regularizer.ema={str(ema).lower()}", "regularizer.granularity=spatial"])
    run = RunDir(train(cfg, tmp_path / "run"))
    assert run.checkpoint_epochs() == [0, 1]
    row = run.read_metrics()[-1]
    assert row["rho"] == 0.01 and row["dropped_units"] > 0  # the paper uses 0.01 for VGG and ResNet alike
    assert ("ema" in run.load_training_state(1)["regularizer"]) == ema
