"""The label-leak diagnostic (regularizers/leak.py) and SGDrop's leak remedies (docs/methods.md,
"The label leak"): known answers on small tensors, the columns of a real run, RNG left untouched."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from overfocus.config import RegularizerConfig, build_config
from overfocus.data import Batch
from overfocus.errors import OverfocusError
from overfocus.models import build_model, get_module
from overfocus.regularizers import RegContext, StepInfo, build_regularizer
from overfocus.regularizers.common import capture_output
from overfocus.regularizers.leak import (LEAK_COLUMNS, LEAK_MARGIN, TEST_SUFFIX, LeakDiagnostic, is_label_masked,
                                         leak_accuracies, leak_warning, wrong_labels, wrong_shifts)
from overfocus.regularizers.sgdrop import drop_count, grad_times_latent, sgdrop_mask
from overfocus.training.engine import train

TINY = ["data.spec=builtin?classes=3&train=32&test=16", "data.image_size=32", "data.batch_size=16",
        "model.width=0.125", "model.small_input=true", "train.progress=false"]


def make(name="sgdrop", **params):
    torch.manual_seed(0)
    model = build_model("vgg11", 3, 0.125, True)
    ctx = RegContext("vgg11", "features", 3, 10, 2, torch.device("cpu"))
    reg = build_regularizer(RegularizerConfig(name, params), ctx)
    reg.setup(model)
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 1]), [], list("abcd"))
    return model, reg, batch


# ---- the pieces -----------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [2, 3, 10])
def test_wrong_labels_are_never_the_label_and_reproducible(classes):
    y = torch.arange(200) % classes
    shifts = wrong_shifts(200, classes, seed=3)
    wrong = wrong_labels(y, shifts, classes)
    assert (wrong != y).all() and ((0 <= wrong) & (wrong < classes)).all()
    assert torch.equal(shifts, wrong_shifts(200, classes, seed=3))
    assert len(set(wrong.tolist())) == classes  # every class is somebody's wrong label


def test_warning_line_only_above_the_margin_on_either_split():
    assert leak_warning({"leak_true_mask_acc": 0.3 + LEAK_MARGIN, "leak_no_mask_acc": 0.3}, 1, "sgdrop") is None
    line = leak_warning({"leak_true_mask_acc": 0.55, "leak_no_mask_acc": 0.21}, 8, "sgdrop")
    assert line.startswith("warning: sgdrop:") and "0.55" in line and "0.21" in line and "train subset" in line
    assert "\n" not in line
    test_only = {"leak_true_mask_acc": 0.2, "leak_no_mask_acc": 0.2,
                 "leak_true_mask_acc" + TEST_SUFFIX: 0.6, "leak_no_mask_acc" + TEST_SUFFIX: 0.2}
    assert "test split" in leak_warning(test_only, 3, "sgdrop")
    assert leak_warning({}, 1, "sgdrop") is None


class ReadsTheMask:
    """A regularizer whose 'mask' hands the model the label: logits are one-hot of the mask's class."""

    def __init__(self, predictions):
        self.predictions = predictions

    def leak_logits(self, model, images, labelings):
        return [model(images)] + [F.one_hot(self.predictions[: len(images)] if y is None else y, 3).float()
                                  for y in labelings]


def test_four_accuracies_known_answer():
    """A network that answers class 0 without a mask and reads the class from any mask: true mask 1,
    wrong mask 0, no mask = share of class 0, predicted mask = share of right predictions."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0])
    loader = [Batch(torch.zeros(4, 2, 1, 1), labels[:4], [], list("abcd")),
              Batch(torch.zeros(4, 2, 1, 1), labels[4:], [], list("efgh"))]
    reg = ReadsTheMask(torch.tensor([0, 1, 2, 2]))  # right on images 0, 1, 2 of the first batch only
    accs = leak_accuracies(reg, model, loader, wrong_shifts(8, 3, 0), 3, torch.device("cpu"), [0, 0], [1, 1])
    assert accs == {"leak_true_mask_acc": 1.0, "leak_no_mask_acc": 4 / 8, "leak_wrong_mask_acc": 0.0,
                    "leak_pred_mask_acc": 3 / 8}
    assert model.training  # its mode restored


def test_which_regularizers_are_label_masked():
    masked = {n for n in ("sgdrop", "saliency_guided", "excitation_dropout", "dropout", "none", "catchup_mix")
              if is_label_masked(build_regularizer(RegularizerConfig(n), None))}
    assert masked == {"sgdrop", "saliency_guided", "excitation_dropout"}


def test_sgdrop_leak_logits_are_the_eval_network_on_z_times_each_labellings_mask():
    model, reg, batch = make(rho=0.05)
    model.eval()
    z = capture_output(model, get_module(model, "features"), batch.images)
    wrong = (batch.labels + 1) % 3
    own = reg.ema(batch.images).argmax(1)
    plain, *got = reg.leak_logits(model, batch.images, [wrong, None, batch.labels])
    assert torch.allclose(plain, model(batch.images), atol=1e-5)
    for labels, logits in zip((wrong, own, batch.labels), got):
        mask = sgdrop_mask(reg.ema_attribution(batch.images, labels), drop_count(0.05, z[0].numel()))
        expected = model.classifier(torch.flatten(model.avgpool(z * mask), 1))
        assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(got[0], got[2])  # the masks differ with the labels


def test_sgdrop_without_ema_masks_from_the_online_network_in_eval_mode():
    from overfocus.regularizers.sgdrop import full_model_attribution

    model, reg, batch = make(rho=0.05, ema=False)
    model.eval()
    latent = get_module(model, "features")
    z = capture_output(model, latent, batch.images)
    mask = sgdrop_mask(full_model_attribution(model, latent, batch.images, batch.labels),
                       drop_count(0.05, z[0].numel()))
    expected = model.classifier(torch.flatten(model.avgpool(z * mask), 1))
    _, got = reg.leak_logits(model, batch.images, [batch.labels])
    assert torch.allclose(got, expected, atol=1e-5)
    own = model(batch.images).argmax(1)
    _, got_own = reg.leak_logits(model, batch.images, [None])
    _, by_label = reg.leak_logits(model, batch.images, [own])
    assert torch.allclose(got_own, by_label)


def test_excitation_and_saliency_masks_follow_the_label():
    """The true and a wrong label give different masked logits (the masks depend on the label)."""
    for name in ("excitation_dropout", "saliency_guided"):
        model, reg, batch = make(name)
        model.eval()
        torch.manual_seed(0)
        plain, a = reg.leak_logits(model, batch.images, [batch.labels])
        assert torch.allclose(plain, model(batch.images)), name
        torch.manual_seed(0)
        _, b = reg.leak_logits(model, batch.images, [(batch.labels + 1) % 3])
        assert not torch.allclose(a, b), name


@pytest.mark.parametrize("name", ["sgdrop", "excitation_dropout", "saliency_guided"])
def test_diagnostic_leaves_the_training_rng_untouched(name):
    from overfocus.data import open_dataset

    model, reg, _ = make(name)
    data = open_dataset("builtin?classes=3&train=16&test=8", "train", 32)
    test = open_dataset("builtin?classes=3&train=16&test=8", "test", 32)
    diag = LeakDiagnostic(reg, data, list(range(16)), test, 6, 3, seed=0, batch_size=4)
    before = torch.get_rng_state()
    row = diag.row(model, 1, torch.device("cpu"), [0.5] * 3, [0.25] * 3)
    assert torch.equal(before, torch.get_rng_state())
    assert set(row) == {c + s for c in LEAK_COLUMNS for s in ("", TEST_SUFFIX)}
    assert row == diag.row(model, 1, torch.device("cpu"), [0.5] * 3, [0.25] * 3)  # reproducible


def test_a_run_logs_the_leak_columns_and_only_for_label_masked_methods(tmp_path):
    rows = {}
    for name, extra in (("sgdrop", []), ("dropout", []), ("off", ["train.leak_images=0"])):
        reg = "dropout" if name == "dropout" else "sgdrop"
        cfg = build_config(overrides=TINY + ["train.epochs=1", f"regularizer.name={reg}", *extra])
        train(cfg, tmp_path / name)
        rows[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    wanted = {c + s for c in LEAK_COLUMNS for s in ("", TEST_SUFFIX)}
    assert all(wanted <= set(r) for r in rows["sgdrop"]) and len(rows["sgdrop"]) == 2
    assert all(0 <= rows["sgdrop"][-1][c] <= 1 for c in wanted)
    assert not any(set(r) & wanted for r in rows["dropout"] + rows["off"])


def test_bad_leak_images_is_one_line():
    with pytest.raises(OverfocusError, match="train.leak_images"):
        build_config(overrides=TINY + ["train.leak_images=-1"])


# ---- remedy (a): the mask from the predicted class ------------------------------------------------
def test_gradient_of_the_predicted_class_when_no_label_is_given():
    z = torch.tensor([[1.0, 2.0]], requires_grad=True)
    w = torch.tensor([[3.0, 0.0], [-1.0, 1.0]])  # class 0 scores 1, class 1 scores 2
    assert torch.equal(grad_times_latent(z, z @ w, None), torch.tensor([[0.0, 2.0]]))  # class 1's
    assert torch.equal(grad_times_latent(z, z @ w, torch.tensor([0])), torch.tensor([[3.0, 0.0]]))


@pytest.mark.parametrize("ema", [True, False])
def test_predicted_class_mask_does_not_depend_on_the_label(ema):
    masks = []
    for labels in (torch.tensor([0, 1, 2, 1]), torch.tensor([2, 2, 0, 0])):
        model, reg, batch = make(rho=0.05, mask_label="predicted", ema=ema)
        seen = {}
        get_module(model, "features").register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))
        reg.loss(model, Batch(batch.images, labels, [], batch.image_ids), StepInfo(0, 1, 0))
        masks.append(seen["z"] == 0)
    assert torch.equal(masks[0], masks[1])


def test_predicted_class_mask_is_the_ema_networks_own_class():
    model, reg, batch = make(rho=0.05, mask_label="predicted")
    latent = get_module(model, "features")
    with torch.no_grad():
        raw_z = capture_output(model, latent, batch.images)
    own = reg.ema(batch.images).argmax(1)
    expected = sgdrop_mask(reg.ema_attribution(batch.images, own), drop_count(0.05, raw_z[0].numel()))
    seen = {}
    latent.register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))
    reg.loss(model, batch, StepInfo(0, 1, 0))
    assert torch.equal(seen["z"], raw_z * expected)


# ---- remedy (b): masking a share of each batch -----------------------------------------------------
@pytest.mark.parametrize("ema", [True, False])
def test_mask_fraction_masks_the_first_share_of_the_batch_only(ema):
    torch.manual_seed(0)
    model = build_model("vgg11", 3, 0.125, True)
    latent = get_module(model, "features")
    latent.register_forward_hook(lambda _m, _i, out: out + 1.0)  # before the mask: no zero in z
    reg = build_regularizer(RegularizerConfig("sgdrop", {"rho": 0.05, "mask_fraction": 0.5, "ema": ema}),
                            RegContext("vgg11", "features", 3, 10, 2, torch.device("cpu")))
    reg.setup(model)
    batch = Batch(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1]), [], list("abcd"))
    seen = {}
    latent.register_forward_hook(lambda _m, _i, out: seen.update(z=out.detach()))
    _, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    k = math.ceil(0.05 * 64 * 4 * 4)
    assert (seen["z"] == 0).flatten(1).sum(1).tolist() == [k, k, 0, 0]
    assert float(stats["dropped_units"]) == k / 2


def test_mask_fraction_counts():
    _, reg, _ = make(mask_fraction=0.25)
    assert [reg.masked_count(b) for b in (64, 4, 3, 1)] == [16, 1, 1, 1]
    _, reg, _ = make()
    assert reg.masked_count(64) == 64


# ---- remedy (c): one mask for every channel at the chosen positions ----------------------------------
def test_spatial_mask_is_shared_across_channels_known_answer():
    a = torch.zeros(1, 3, 2, 2)
    a[0, 0, 0, 1], a[0, 1, 0, 1], a[0, 2, 1, 0] = 1.0, 1.0, 1.5  # position (0, 1) sums to 2, (1, 0) to 1.5
    mask = sgdrop_mask(a, 1, "spatial")
    assert mask.shape == (1, 1, 2, 2)
    assert mask[0, 0].tolist() == [[1.0, 0.0], [1.0, 1.0]]
    z = torch.ones(1, 3, 2, 2) * mask
    assert all(torch.equal(z[0, c], z[0, 0]) for c in range(3))  # no channel code in the zero pattern


@pytest.mark.parametrize("params, message", [({"mask_label": "ema"}, "mask_label"),
                                              ({"mask_fraction": 0.0}, "mask_fraction"),
                                              ({"mask_fraction": 1.5}, "mask_fraction")])
def test_bad_remedy_params_are_one_line_errors(params, message):
    with pytest.raises(OverfocusError, match=message):
        build_regularizer(RegularizerConfig("sgdrop", params), None)


# ---- the figure ---------------------------------------------------------------------------------
def test_leak_figure_has_both_splits_and_four_curves(tmp_path):
    from overfocus.render.leak_plot import has_leak_columns, plot_leak

    rows = [{"epoch": e, **{c + s: 0.1 * (e + 1) for c in LEAK_COLUMNS for s in ("", TEST_SUFFIX)}}
            for e in range(3)]
    assert has_leak_columns(rows) and not has_leak_columns([{"epoch": 0, "test_acc": 0.5}])
    out = plot_leak(rows, tmp_path / "leak.png", "demo", chance=0.1)
    assert out.read_bytes()[:4] == b"\x89PNG"
    train_only = [{k: v for k, v in r.items() if not k.endswith(TEST_SUFFIX)} for r in rows]
    assert plot_leak(train_only, tmp_path / "train.svg", "demo").read_text().count("train subset") >= 1


def test_render_draws_the_leak_figure_only_for_a_run_with_the_columns(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "render"))
    from test_render import write_fake_run  # the contract-C fixture generator

    from overfocus.render import RenderOptions, render_run
    from overfocus.runs.rundir import RunDir

    options = RenderOptions(methods=["grad_cam"], formats=["gif"], size=320, explorer=False)
    plain = write_fake_run(tmp_path / "vanilla")
    assert "leak.png" not in {p.name for p in render_run(plain, options).written}
    run = write_fake_run(tmp_path / "sgdrop")
    rows = RunDir(run).read_metrics()
    RunDir(run).write_metrics([{**r, **{c + s: 0.3 for c in LEAK_COLUMNS for s in ("", TEST_SUFFIX)}} for r in rows])
    assert (run / "figures" / "leak.png") in render_run(run, options).written
    assert (run / "figures" / "leak.png").read_bytes()[:4] == b"\x89PNG"
