"""Map metrics, neuron coverage and aggregation on toy cases with exactly known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from overfocus.errors import OverfocusError
from overfocus.metrics import (CLICKME_CEILING, METRICS, NeuronCoverage, bootstrap_ci, boxes_to_masks,
                               compute_map_metrics, gaussian_blur, pointing_game_per_class, spearman)


def _fn(name):
    return METRICS.get(name).fn


def _box(*coords):
    return torch.tensor([coords], dtype=torch.float32)


def test_registry_fields():
    assert set(METRICS.names()) == {"area_ratio", "box_iou", "hit", "pointing_game", "energy_pg",
                                    "harmonization", "gini", "entropy"}
    spec = METRICS.get("hit")
    assert spec.name == "hit" and spec.higher_is_better and spec.needs_boxes and not spec.needs_human
    assert METRICS.get("harmonization").needs_human and not METRICS.get("gini").higher_is_better


def test_map_exactly_the_box():
    maps = torch.zeros(1, 20, 30)
    maps[0, 4:12, 6:21] = 0.7  # rows 4-11, columns 6-20: box (6, 4, 21, 12)
    boxes = [_box(6, 4, 21, 12)]
    for name, expected in [("box_iou", 1.0), ("hit", 1.0), ("energy_pg", 1.0), ("pointing_game", 1.0)]:
        assert _fn(name)(maps, boxes=boxes).tolist() == [expected], name
    assert _fn("area_ratio")(maps).item() == pytest.approx(8 * 15 / 600)


def test_x_is_the_column_for_a_non_square_box():
    maps = torch.zeros(1, 40, 60)
    maps[0, 2:6, 30:50] = 1.0  # wide and short: rows 2-5, columns 30-49
    right, swapped = [_box(30, 2, 50, 6)], [_box(2, 30, 6, 50)]
    assert _fn("energy_pg")(maps, boxes=right).item() == 1.0
    assert _fn("energy_pg")(maps, boxes=swapped).item() == 0.0
    assert _fn("box_iou")(maps, boxes=right).item() == 1.0
    assert _fn("box_iou")(maps, boxes=swapped).item() == 0.0
    assert _fn("pointing_game")(maps, boxes=swapped, tolerance=0).item() == 0.0
    assert boxes_to_masks(right, 40, 60)[0].nonzero().min(0).values.tolist() == [2, 30]  # (row, col)


def test_single_hot_pixel():
    maps = torch.zeros(2, 10, 12)
    maps[0, 3, 4] = 5.0
    maps[1, 0, 0] = 1e-30  # tiny but positive: still a map, normalised by its own max
    assert _fn("area_ratio")(maps).tolist() == pytest.approx([1 / 120, 1 / 120])
    assert _fn("gini")(maps)[0].item() == pytest.approx(119 / 120)
    assert _fn("entropy")(maps)[0].item() == pytest.approx(0.0)


def test_all_zero_map_is_degenerate_but_never_nan_for_area_and_energy():
    maps = torch.zeros(2, 8, 8)
    maps[1, 2, 2] = 1.0
    boxes = [_box(0, 0, 4, 4), _box(0, 0, 4, 4)]
    out = compute_map_metrics(maps, boxes=boxes)
    assert out["area_ratio"][0].item() == 0.0 and out["energy_pg"][0].item() == 0.0
    assert out["box_iou"][0].item() == 0.0 and out["hit"][0].item() == 0.0 and out["pointing_game"][0].item() == 0.0
    assert math.isnan(out["gini"][0]) and math.isnan(out["entropy"][0])
    assert out["energy_pg"][1].item() == 1.0 and out["pointing_game"][1].item() == 1.0


def test_energy_below_eps_is_zero_and_no_box_is_nan():
    maps = torch.full((2, 4, 4), 1e-9)
    out = _fn("energy_pg")(maps, boxes=[_box(0, 0, 2, 2), torch.zeros(0, 4)])
    assert out[0].item() == 0.0 and math.isnan(out[1])
    for name in ("box_iou", "hit", "pointing_game"):
        assert math.isnan(_fn(name)(maps, boxes=[torch.zeros(0, 4), torch.zeros(0, 4)])[0]), name


def test_iou_of_known_overlap_and_best_of_several_boxes():
    maps = torch.zeros(1, 10, 10)
    maps[0, 0:4, 0:4] = 1.0  # predicted box (0, 0, 4, 4)
    assert _fn("box_iou")(maps, boxes=[_box(2, 2, 6, 6)]).item() == pytest.approx(4 / 28)
    two = [torch.tensor([[2, 2, 6, 6], [0, 0, 4, 5]], dtype=torch.float32)]
    assert _fn("box_iou")(maps, boxes=two).item() == pytest.approx(16 / 20)
    assert _fn("hit")(maps, boxes=two).item() == 1.0 and _fn("hit")(maps, boxes=[_box(2, 2, 6, 6)]).item() == 0.0


def test_largest_component_or_all_pixels():
    maps = torch.zeros(1, 12, 12)
    maps[0, 0:2, 0:2] = 1.0   # small blob, 4 px
    maps[0, 6:11, 6:11] = 0.9  # large blob, 25 px (>= 0.5 of the max)
    gt = [_box(6, 6, 11, 11)]
    assert _fn("box_iou")(maps, boxes=gt).item() == 1.0
    assert _fn("box_iou")(maps, boxes=gt, component="all").item() == pytest.approx(25 / 121)
    diagonal = torch.zeros(1, 6, 6)
    diagonal[0, [0, 1, 2], [0, 1, 2]] = 1.0  # 8-connected: one component
    assert _fn("box_iou")(diagonal, boxes=[_box(0, 0, 3, 3)]).item() == 1.0


def test_pointing_game_tolerance():
    maps = torch.zeros(1, 40, 60)
    maps[0, 5, 40] = 1.0  # column 40; the box's last column is 24: 16 px away
    box = [_box(10, 0, 25, 20)]
    assert _fn("pointing_game")(maps, boxes=box, tolerance=15).item() == 0.0
    assert _fn("pointing_game")(maps, boxes=box, tolerance=16).item() == 1.0
    maps[0, 5, 40], maps[0, 5, 39] = 0.0, 1.0  # exactly 15 px: a hit at the default tolerance
    assert _fn("pointing_game")(maps, boxes=box).item() == 1.0
    assert _fn("pointing_game")(maps, boxes=box, tolerance=0).item() == 0.0


def test_pointing_game_per_class_average():
    hits = [1, 1, 1, 1, 0, float("nan")]
    labels = [0, 0, 0, 0, 1, 1]
    assert pointing_game_per_class(hits, labels) == pytest.approx(0.5)  # pooled mean would be 0.8
    assert math.isnan(pointing_game_per_class([float("nan")], [0]))


def test_spearman_matches_scipy_with_ties():
    from scipy.stats import spearmanr

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 200), generator=gen).float()  # many ties
    b = a + torch.randint(0, 3, (4, 200), generator=gen).float()
    ours = spearman(a, b)
    for i in range(4):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].numpy(), b[i].numpy())[0], abs=1e-10)
    assert math.isnan(spearman(torch.ones(1, 5), torch.arange(5.0)[None])[0])


def test_harmonization_identity_ceiling_and_degenerate():
    gen = torch.Generator().manual_seed(1)
    human = torch.rand(3, 16, 16, generator=gen)
    maps = human.clone()
    human[1] = 0.3  # constant human map: degenerate
    maps[2] = 0.0   # all-zero model map: Spearman undefined
    raw = _fn("harmonization")(maps, human=human, blur=False)
    assert raw[0].item() == pytest.approx(1.0) and math.isnan(raw[1]) and math.isnan(raw[2])
    scaled = _fn("harmonization")(maps, human=human, blur=False, ceiling=CLICKME_CEILING)
    assert scaled[0].item() == pytest.approx(1 / CLICKME_CEILING)


def test_harmonization_blurs_the_human_map_only():
    """Protocol: human 16x16 -> 64x64 -> blur -> input size; the model map is used as it is."""
    from overfocus.metrics import prepare_human_maps

    gen = torch.Generator().manual_seed(2)
    human, maps = torch.rand(2, 16, 16, generator=gen), torch.rand(2, 32, 32, generator=gen)
    ready = prepare_human_maps(human, (32, 32))
    expected = spearman(maps.reshape(2, -1), ready.reshape(2, -1)).float()
    torch.testing.assert_close(_fn("harmonization")(maps, human=human), expected)
    assert not torch.allclose(ready, nn.functional.interpolate(human[:, None], size=(32, 32), mode="bilinear")[:, 0])


def test_gaussian_blur_matches_opencv():
    import cv2

    img = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(3))
    ours = gaussian_blur(img, 11, 10.0)[0].numpy()
    theirs = cv2.GaussianBlur(img[0].numpy(), (11, 11), 10.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    with pytest.raises(OverfocusError, match="odd"):
        gaussian_blur(img, 10, 10.0)


def test_gini_and_entropy_of_uniform_maps():
    maps = torch.ones(1, 5, 7)
    assert _fn("gini")(maps).item() == pytest.approx(0.0, abs=1e-6)
    assert _fn("entropy")(maps).item() == pytest.approx(1.0)


def test_compute_map_metrics_skips_unmet_needs_and_passes_options():
    maps = torch.rand(2, 8, 8)
    out = compute_map_metrics(maps)
    assert set(out) == {"area_ratio", "gini", "entropy"}
    boxes = [_box(0, 0, 4, 4)] * 2
    out = compute_map_metrics(maps, ["area_ratio", "pointing_game"], boxes=boxes,
                              options={"area_ratio": {"threshold": 0.0}})
    assert out["area_ratio"].tolist() == [1.0, 1.0] and out["pointing_game"].shape == (2,)
    with pytest.raises(OverfocusError, match="bad options"):
        compute_map_metrics(maps, ["area_ratio"], options={"area_ratio": {"nope": 1}})
    with pytest.raises(OverfocusError, match="unknown metric"):
        compute_map_metrics(maps, ["nope"])


def test_bootstrap_ci():
    values = np.r_[np.zeros(50), np.ones(50), [np.nan] * 7]
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert 0.38 < lo < 0.5 < hi < 0.62
    assert bootstrap_ci(values, n_boot=2000, seed=0) == (lo, hi)  # seeded
    assert bootstrap_ci([3.0], n_boot=10) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_ci([np.nan, np.nan]))


def test_metrics_reject_bad_shapes():
    with pytest.raises(OverfocusError, match="B x H x W"):
        _fn("area_ratio")(torch.rand(8, 8))
    with pytest.raises(OverfocusError, match="one \\(possibly empty\\) list per image"):
        _fn("energy_pg")(torch.rand(2, 8, 8), boxes=[_box(0, 0, 1, 1)])


# ---------------------------------------------------------------------------------------------
# Neuron coverage on a hand-made model with known answers
# ---------------------------------------------------------------------------------------------


def _tiny_model():
    linear = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    return nn.Sequential(nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), linear, nn.ReLU())


def _tiny_inputs():
    a = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[-1.0, -1.0], [-1.0, -1.0]]])
    b = torch.full((2, 2, 2), 2.0)
    return torch.stack([a, b])


def test_neuron_coverage_known_answers():
    """Neurons: ReLU 2 ch + pool 2 ch + final ReLU 3 units = 7.

    A: relu -> ch0 fires; pool -> ch0; linear [1, 0, -1] -> relu unit 0: 3/7; latent (pool) 1/2.
    B: constant 2 -> relu and pool constant, nothing fires; linear [2, 2, -4] -> units 0, 1: 2/7.
    Cumulative: 1 + 1 + 2 = 4 of 7; latent 1 of 2.
    """
    model = _tiny_model()
    cov = NeuronCoverage(model, latent_layer="1")
    with cov:
        model(_tiny_inputs()[:1])
        model(_tiny_inputs()[1:])
    per = cov.per_image()
    assert per["coverage_global"].tolist() == pytest.approx([3 / 7, 2 / 7])
    assert per["coverage_latent"].tolist() == pytest.approx([0.5, 0.0])
    assert cov.cumulative() == pytest.approx({"coverage_global": 4 / 7, "coverage_latent": 0.5})
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_neuron_coverage_threshold_and_latent_inside_a_block():
    model = _tiny_model()
    container = nn.Sequential(model)  # latent = a container: its last hooked output (the final ReLU)
    cov = NeuronCoverage(container, latent_layer="0", threshold=0.3)
    with cov:
        container(_tiny_inputs()[:1])
    # A at threshold 0.3: relu ch0 mean of scaled output is 0.25 -> off; pool ch0 1.0 -> on; unit 0 on
    assert cov.per_image()["coverage_global"].tolist() == pytest.approx([2 / 7])
    assert cov.per_image()["coverage_latent"].tolist() == pytest.approx([1 / 3])


def test_neuron_coverage_counts_each_call_of_a_reused_module():
    class Reuse(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.relu = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 6, 1), nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3))

    model = Reuse()
    cov = NeuronCoverage(model, latent_layer="conv2")
    with cov, torch.no_grad():
        model(torch.randn(2, 3, 5, 5))
    assert sum(v.numel() for v in cov._ever.values()) == 10  # 4 + 6 channels, never conv outputs
    # latent = the last hooked output at or before conv2's end: the first ReLU call (4 channels)
    assert cov._latent_key == "relu#0"


def test_neuron_coverage_on_a_registered_model():
    from overfocus.models import build_model

    model = build_model("resnet18", 3, width=0.125, small_input=True).eval()
    cov = NeuronCoverage(model, latent_layer="layer4")
    with cov, torch.no_grad():
        model(torch.randn(3, 3, 32, 32))
    per, cum = cov.per_image(), cov.cumulative()
    assert per["coverage_global"].shape == (3,) and 0 < cum["coverage_global"] <= 1
    assert cov._latent_key == "layer4.1.relu#1"  # the block's ReLU after the residual sum
    assert cum["coverage_global"] >= per["coverage_global"].max().item()
