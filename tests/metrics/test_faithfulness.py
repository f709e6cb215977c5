"""Faithfulness and sanity metrics (metrics/faithfulness.py, metrics/sanity.py): known answers on
hand-made models whose pixel importance is known, agreement with pytorch-grad-cam's ROAD and
confidence metrics and with skimage's SSIM (tolerances in docs/conventions.md), the random
baseline method, and the faithfulness pass of the shared evaluation core."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from overfocus.analysis.core import FaithfulnessRequest, evaluate_batch, faithfulness_metrics
from overfocus.attribution import attribute
from overfocus.metrics.faithfulness import (FaithfulnessOptions, MapPerturbation, PerturbationBatch,
                                            linear_imputation, relevance_rank, trapezoid_auc)
from overfocus.metrics.registry import METRICS, model_metric_names
from overfocus.metrics.sanity import map_spearman, map_ssim, other_classes

SIZE = 10  # 100 pixels: round(p x 100) pixels is also numpy's percentile count for p = 10..90%


class PixelModel(nn.Module):
    """Two classes; the logit of class 1 is a weighted sum of a few pixels (all channels), so the
    true importance of every pixel is its weight."""

    def __init__(self, weights: torch.Tensor, bias: float = -1.0):
        super().__init__()
        self.register_buffer("w", weights)
        self.bias = bias

    def forward(self, x):
        one = (x * self.w[None, None]).flatten(1).sum(1) + self.bias
        return torch.stack([torch.zeros_like(one), one], 1)


def _pixel_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(SIZE, SIZE)
    idx = torch.randperm(SIZE * SIZE, generator=g)[:6]
    w.view(-1)[idx] = torch.tensor([3.0, 2.0, 1.5, 1.0, 0.5, 0.25])
    return w


def _predict(model):
    return lambda x, t: torch.softmax(model(x), 1).gather(1, t.view(-1, 1))[:, 0]


def test_deletion_and_insertion_rank_the_true_importance_first():
    w = _pixel_weights()
    model = PixelModel(w)
    images = torch.rand(4, 3, SIZE, SIZE) * 0.5 + 0.5
    targets = torch.ones(4, dtype=torch.long)
    batch = PerturbationBatch(_predict(model), images, targets, FaithfulnessOptions(steps=16, baseline="mean"),
                              fill=torch.zeros(3))
    truth = (w[None] * images.sum(1)).clamp_min(0) + 1e-6 * torch.rand(4, SIZE, SIZE)  # exact importance
    reverse = truth.amax() - truth + 1e-3
    chance = torch.rand(4, SIZE, SIZE)
    d = {name: MapPerturbation(batch, m).deletion() for name, m in
         [("truth", truth), ("chance", chance), ("reverse", reverse)]}
    i = {name: MapPerturbation(batch, m).insertion() for name, m in
         [("truth", truth), ("chance", chance), ("reverse", reverse)]}
    assert bool((d["truth"] < d["chance"]).all()) and bool((d["chance"] <= d["reverse"] + 0.05).all())
    assert bool((i["truth"] > i["chance"]).all()) and bool((i["chance"] >= i["reverse"] - 0.05).all())


def test_deletion_and_insertion_equal_a_loop_over_steps():
    """The batched curves equal an explicit loop (step by step, image by image)."""
    w = _pixel_weights(1)
    model = PixelModel(w, bias=-2.0)
    images = torch.rand(3, 3, SIZE, SIZE)
    targets = torch.tensor([1, 0, 1])
    maps = torch.rand(3, SIZE, SIZE)
    opts = FaithfulnessOptions(steps=8, baseline="blur", forward_batch=5)  # several chunks
    batch = PerturbationBatch(_predict(model), images, targets, opts)
    p = MapPerturbation(batch, maps)
    deletion, insertion = p.deletion(), p.insertion()
    from overfocus.metrics.harmonization import gaussian_blur

    blurred = gaussian_blur(images.reshape(9, SIZE, SIZE), 11, 5.0).reshape(3, 3, SIZE, SIZE)
    for b in range(3):
        order = torch.argsort(maps[b].flatten(), descending=True)
        curves = {"del": [], "ins": []}
        for k in range(9):
            n = round(k * SIZE * SIZE / 8)
            removed = torch.zeros(SIZE * SIZE, dtype=torch.bool)
            removed[order[:n]] = True
            removed = removed.view(1, SIZE, SIZE)
            x_del = torch.where(removed, blurred[b], images[b])
            x_ins = torch.where(removed, images[b], blurred[b])
            for name, x in (("del", x_del), ("ins", x_ins)):
                curves[name].append(float(torch.softmax(model(x[None]), 1)[0, targets[b]]))
        assert float(deletion[b]) == pytest.approx(np.trapezoid(curves["del"], dx=1 / 8), abs=1e-6)
        assert float(insertion[b]) == pytest.approx(np.trapezoid(curves["ins"], dx=1 / 8), abs=1e-6)


def test_chunking_does_not_change_the_numbers():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    images, targets, maps = torch.rand(5, 3, 12, 12), torch.tensor([0, 1, 2, 0, 1]), torch.rand(5, 12, 12)
    values = []
    for chunk in (1, 7, 4096):
        opts = FaithfulnessOptions(steps=4, road_percentages=(30, 70), forward_batch=chunk)
        p = MapPerturbation(PerturbationBatch(_predict(model), images, targets, opts), maps)
        values.append(torch.stack([p.deletion(), p.insertion(), p.road_morf(), p.road_lerf()]))
    assert torch.allclose(values[0], values[1], atol=1e-6) and torch.allclose(values[0], values[2], atol=1e-6)


def test_ties_are_broken_by_the_image_seed_not_the_raster_order():
    flat = torch.zeros(2, 50)
    flat[:, 7] = 1.0
    rank = relevance_rank(flat, [11, 12])
    assert rank[:, 7].tolist() == [0, 0]  # the one relevant pixel first
    assert not torch.equal(rank[0], rank[1])  # the zeros in a different order per image
    assert torch.equal(rank, relevance_rank(flat, [11, 12]))  # the same order at every call
    assert trapezoid_auc(torch.tensor([[1.0, 1.0]])).tolist() == [1.0]


def test_degenerate_maps_have_no_faithfulness():
    model = PixelModel(_pixel_weights())
    batch = PerturbationBatch(_predict(model), torch.rand(2, 3, SIZE, SIZE), torch.ones(2, dtype=torch.long))
    maps = torch.rand(2, SIZE, SIZE)
    maps[1] = 0.0
    p = MapPerturbation(batch, maps)
    for value in (p.deletion(), p.insertion(), p.drop_in_confidence(), p.increase_in_confidence()):
        assert math.isfinite(float(value[0])) and math.isnan(float(value[1]))


def test_linear_imputation_equals_pytorch_grad_cam_and_noise_follows_the_seed():
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    images = torch.rand(3, 3, 16, 16)
    removed = torch.rand(3, 16, 16) < torch.tensor([0.2, 0.6, 0.9]).view(3, 1, 1)
    removed[2, 2:14, 2:14] = True  # a large hole: the hard case for the iterative solver
    ours = linear_imputation(images, removed, tol=1e-7)
    imputer = road.NoisyLinearImputer(noise=0.0)
    for b in range(3):
        theirs = imputer(images[b], (~removed[b]).float())
        assert torch.allclose(ours[b], theirs, atol=1e-4)


def _conv_model():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 4)).eval()


def test_road_equals_pytorch_grad_cam():
    """ROAD MoRF / LeRF / combined with pytorch-grad-cam's imputer (noise 0 on both sides), softmax
    targets, inputs taken as already normalised (mean 0, std 1), p = 10..90%."""
    road = pytest.importorskip("pytorch_grad_cam.metrics.road")
    pcm = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = _conv_model()
    images, maps = torch.rand(3, 3, SIZE, SIZE), torch.rand(3, SIZE, SIZE)
    targets = torch.tensor([0, 2, 3])
    percentages = (10, 30, 50, 70, 90)
    opts = FaithfulnessOptions(road_percentages=percentages, road_noise=0.0, cg_tol=1e-7)
    p = MapPerturbation(PerturbationBatch(_predict(model), images, targets, opts, fill=torch.zeros(3)), maps)
    cams, wanted = maps.numpy(), [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]

    def theirs(kind):  # their percentile q keeps the pixels below it: q = 100 - p removes p% most relevant
        scores = []
        for q in percentages:
            remover = (pcm.RemoveMostRelevantFirst if kind == "morf" else pcm.RemoveLeastRelevantFirst)(
                100 - q if kind == "morf" else q, road.NoisyLinearImputer(noise=0.0))
            scores.append(pcm.PerturbationConfidenceMetric(remover)(images, cams, wanted, model))
        return np.mean(scores, axis=0)

    morf, lerf = theirs("morf"), theirs("lerf")
    assert p.road_morf().numpy() == pytest.approx(morf, abs=1e-4)
    assert p.road_lerf().numpy() == pytest.approx(lerf, abs=1e-4)
    assert p.road_combined().numpy() == pytest.approx((lerf - morf) / 2, abs=1e-4)


def test_confidence_metrics_equal_pytorch_grad_cam():
    cmi = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = _conv_model()
    images, targets = torch.rand(6, 3, SIZE, SIZE), torch.tensor([0, 1, 2, 3, 0, 1])
    maps = torch.rand(6, SIZE, SIZE) ** 3
    maps = maps / maps.flatten(1).amax(1).view(-1, 1, 1)  # theirs takes the map as given: scaled to [0, 1]
    batch = PerturbationBatch(_predict(model), images, targets, fill=torch.zeros(3))
    p = MapPerturbation(batch, maps * 7.0)  # ours scales by the maximum itself
    wanted = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    drop = cmi.DropInConfidence()(images, maps.numpy(), wanted, model)  # max(0, Y - O), not relative
    increase = cmi.IncreaseInConfidence()(images, maps.numpy(), wanted, model)
    assert (p.drop_in_confidence() * batch.original).numpy() == pytest.approx(drop, abs=1e-6)
    assert p.increase_in_confidence().numpy().tolist() == increase.tolist()


def test_ssim_equals_skimage_and_spearman_equals_scipy():
    metrics = pytest.importorskip("skimage.metrics")
    stats = pytest.importorskip("scipy.stats")
    a, b = torch.rand(3, 24, 24), torch.rand(3, 24, 24)
    b[0] = a[0] * 0.5 + b[0] * 0.5
    ours = map_ssim(a, b)
    for i in range(3):
        x, y = (a[i] / a[i].max()).numpy(), (b[i] / b[i].max()).numpy()
        theirs = metrics.structural_similarity(x.astype(np.float64), y.astype(np.float64), data_range=1.0,
                                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert float(ours[i]) == pytest.approx(theirs, abs=1e-4)
        rho = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert float(map_spearman(a, b)[i]) == pytest.approx(rho, abs=1e-5)
    assert math.isnan(float(map_spearman(torch.zeros(1, 4, 4), a[:1, :4, :4])[0]))


def test_other_class_is_never_the_target_and_follows_the_seed():
    targets = torch.arange(10) % 5
    seeds = list(range(100, 110))
    others = other_classes(targets, 5, seeds)
    assert bool((others != targets).all()) and bool(((others >= 0) & (others < 5)).all())
    assert torch.equal(others, other_classes(targets, 5, seeds))
    assert len(set(other_classes(torch.zeros(200, dtype=torch.long), 5, list(range(200))).tolist())) == 4


def test_random_method_is_seeded_by_the_image_and_ignores_the_model():
    model = _conv_model()
    x = torch.rand(3, 3, 8, 8)
    a = attribute(model, x, torch.tensor([0, 1, 2]), methods="random")["random"]
    b = attribute(nn.Sequential(nn.Flatten(), nn.Linear(192, 4)), x.clone(), torch.tensor([3, 3, 3]),
                  methods="random")["random"]
    assert torch.equal(a, b) and not torch.equal(a[0], a[1])
    assert float(a.min()) >= 0 and float(a.max()) < 1


def test_registry_entries_carry_their_metadata():
    names = model_metric_names()
    for name in ["deletion", "insertion", "road_morf", "road_lerf", "road_combined", "drop_in_confidence",
                 "increase_in_confidence", "sanity_init", "sanity_init_ssim", "sanity_class", "sanity_class_ssim"]:
        spec = METRICS.get(name)
        assert name in names and spec.needs_model and spec.title and spec.unit and len(spec.range) == 2
    assert METRICS.get("insertion").higher_is_better and not METRICS.get("deletion").higher_is_better
    assert not METRICS.get("road_morf").by_default and METRICS.get("deletion").by_default


def test_the_core_adds_the_random_baseline_and_the_sanity_references():
    from overfocus.models import build_model

    model = build_model("cifarnet", 3, width=0.125).eval()
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    request = FaithfulnessRequest(("deletion", "insertion", "sanity_init", "sanity_class"),
                                  FaithfulnessOptions(steps=4), init_model=model)
    out = evaluate_batch(model, images, labels, None, mean=(0.5,) * 3, std=(0.25,) * 3, methods=("grad_cam",),
                         layer="block3", metric_names=("area_ratio",), faithfulness=request)
    assert sorted(out.metrics) == ["grad_cam", "random"]
    assert sorted(out.metrics["grad_cam"]) == ["area_ratio", "deletion", "insertion", "sanity_class", "sanity_init"]
    assert sorted(out.metrics["random"]) == ["deletion", "insertion"]
    kept = ~out.degenerate["grad_cam"]
    # the "initial" model is the model itself here: its maps are the same maps
    assert torch.allclose(out.metrics["grad_cam"]["sanity_init"][kept], torch.ones(int(kept.sum())), atol=1e-5)
    no_init = faithfulness_metrics(model, images, labels, {"grad_cam": out.maps["grad_cam"]}, 3, mean=(0.5,) * 3,
                                   std=(0.25,) * 3, layer="block3",
                                   request=FaithfulnessRequest(("sanity_init",), baseline=None))
    assert no_init == {"grad_cam": {}}  # no epoch-0 model: the metric is left out, not NaN


def test_audit_turns_failed_sanity_checks_and_unfaithful_maps_into_findings():
    from overfocus.audit.findings import THRESHOLDS, make_findings

    t = {k: v.default for k, v in THRESHOLDS.items()}
    onset = {"methods": {"grad_cam": {"peak_epoch": None, "sanity_init_median": {"0": 1.0, "3": 0.8, "9": 0.7},
                                      "sanity_from": None, "faithfulness_measured": True, "faithful_from": None}}}
    found = {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 3, "onset": onset})}
    assert found["sanity_init"]["level"] == "problem" and found["sanity_init"]["value"] == 0.7
    assert "untrained model" in found["sanity_init"]["message"] and "epoch 9" in found["sanity_init"]["message"]
    assert found["faithfulness"]["level"] == "problem"
    onset["methods"]["grad_cam"].update(sanity_init_median={"0": 1.0, "9": 0.1}, sanity_from=9, faithful_from=4)
    found = {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 3, "onset": onset})}
    assert found["sanity_init"]["level"] == "ok" and found["faithfulness"]["level"] == "ok"
    assert "from epoch 4" in found["faithfulness"]["message"]


def test_render_marks_faithful_from_in_the_methods_colour(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from overfocus.metrics.registry import metric_info
    from overfocus.render.plots import metric_grid, mark_faithful

    rows = {("Grad-CAM", "deletion"): (np.arange(4), np.array([0.4, 0.3, 0.2, 0.1]), np.full(4, np.nan),
                                        np.full(4, np.nan))}
    meta = {"metric_info": metric_info(["deletion"]), "method_info": {"grad_cam": {"title": "Grad-CAM"}}}
    onset = {"methods": {"grad_cam": {"faithful_from": 2}}}
    fig = metric_grid(lambda metric: [("Grad-CAM", rows[("Grad-CAM", metric)])], ["deletion"], "t", meta,
                      decorate=lambda ax, metric: mark_faithful(ax, onset, {"grad_cam": "Grad-CAM"}))
    ax = fig.axes[0]
    marks = [line for line in ax.get_lines() if line.get_label() == "Grad-CAM: maps faithful from epoch 2"]
    curve = next(line for line in ax.get_lines() if line.get_label() == "Grad-CAM")
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [2, 2] and marks[0].get_color() == curve.get_color()
