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
    map_only = {n for n in METRICS.names() if not METRICS.get(n).needs_model}
    assert map_only == {"area_ratio", "box_iou", "hit", "pointing_game", "energy_pg", "harmonization", "gini",
                        "entropy"}
    # the metrics that perturb the image or query the model again (faithfulness, sanity)
    assert set(METRICS.names()) - map_only == {
        "deletion", "insertion", "road_morf", "road_lerf", "road_combined", "drop_in_confidence",
        "increase_in_confidence", "sanity_init", "sanity_init_ssim", "sanity_class", "sanity_class_ssim"}
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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_map_with_one_non_finite_value_is_degenerate_for_every_metric(bad):
    """One NaN/inf pixel: the map is degenerate, so every metric gives its degenerate value (0 for
    the thresholded ones and energy, NaN for the undefined ones), never a silent NaN mean."""
    maps = torch.zeros(2, 8, 8)
    maps[:, 1:3, 1:3] = 1.0
    maps[0, 5, 5] = bad
    boxes = [_box(1, 1, 3, 3), _box(1, 1, 3, 3)]
    human = torch.rand(2, 8, 8)
    out = compute_map_metrics(maps, boxes=boxes, human=human, options={"harmonization": {"blur": False}})
    from overfocus.metrics import MapBatch

    assert MapBatch(maps).degenerate.tolist() == [True, False]
    for name in ("area_ratio", "box_iou", "hit", "pointing_game", "energy_pg"):
        assert out[name][0].item() == 0.0, name
        assert out[name][1].item() > 0.0, name  # the clean map of the same batch is measured
    for name in ("gini", "entropy", "harmonization"):
        assert math.isnan(out[name][0]), name
        assert not math.isnan(out[name][1]), name


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


def test_pointing_game_tolerance_is_strict_like_torchray():
    """A hit needs distance < tolerance (TorchRay); the pixel itself inside a box always hits."""
    maps = torch.zeros(1, 40, 60)
    maps[0, 5, 40] = 1.0  # column 40; the box's last column is 24: 16 px away
    box = [_box(10, 0, 25, 20)]
    assert _fn("pointing_game")(maps, boxes=box, tolerance=15).item() == 0.0
    assert _fn("pointing_game")(maps, boxes=box, tolerance=16).item() == 0.0  # exactly at the tolerance: a miss
    assert _fn("pointing_game")(maps, boxes=box, tolerance=16.5).item() == 1.0
    maps[0, 5, 40], maps[0, 5, 39] = 0.0, 1.0  # exactly 15 px: a miss at the default tolerance
    assert _fn("pointing_game")(maps, boxes=box).item() == 0.0
    maps[0, 5, 39], maps[0, 5, 38] = 0.0, 1.0  # 14 px: a hit
    assert _fn("pointing_game")(maps, boxes=box).item() == 1.0
    assert _fn("pointing_game")(maps, boxes=box, tolerance=0).item() == 0.0
    maps[0, 5, 38], maps[0, 5, 24] = 0.0, 1.0  # on the box's last column: a hit at any tolerance
    assert _fn("pointing_game")(maps, boxes=box, tolerance=0).item() == 1.0
    diagonal = torch.zeros(1, 40, 60)
    diagonal[0, 22, 36] = 1.0  # 12 columns and 3 rows beyond the box (x 10..24, y 0..19): sqrt(153) = 12.4 px
    assert _fn("pointing_game")(diagonal, boxes=box, tolerance=12.3).item() == 0.0
    assert _fn("pointing_game")(diagonal, boxes=box, tolerance=12.4).item() == 1.0


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
    # unit level: ReLU 2x2x2 = 8 elements + pool 2 + final ReLU 3 = 13 units
    # A: one ReLU element, pool ch0, unit 0 -> 3/13, latent 1/2; B: units 0, 1 of the final ReLU -> 2/13
    assert per["unit_coverage_global"].tolist() == pytest.approx([3 / 13, 2 / 13])
    assert per["unit_coverage_latent"].tolist() == pytest.approx([0.5, 0.0])
    assert cov.cumulative() == pytest.approx({"coverage_global": 4 / 7, "coverage_latent": 0.5,
                                              "unit_coverage_global": 4 / 13, "unit_coverage_latent": 0.5})
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unit_coverage_stays_low_where_channel_coverage_saturates():
    """Every channel holds one active element: channel-level coverage is 1 per image and over the
    set, unit level counts the active elements (2 of 32 per image, 3 of 32 over both images)."""
    model = nn.Sequential(nn.ReLU())
    first, second = torch.full((1, 2, 4, 4), -1.0), torch.full((1, 2, 4, 4), -1.0)
    first[0, 0, 0, 0], first[0, 1, 3, 3] = 2.0, 1.0
    second[0, 0, 0, 0], second[0, 1, 1, 2] = 1.0, 3.0  # (0, 0, 0) again: counted once over the set
    cov = NeuronCoverage(model, latent_layer="0")
    with cov:
        model(first)
        model(second)
    per, cum = cov.per_image(), cov.cumulative()
    assert per["coverage_latent"].tolist() == [1.0, 1.0] and cum["coverage_latent"] == 1.0
    assert per["unit_coverage_latent"].tolist() == [2 / 32, 2 / 32]
    assert per["unit_coverage_global"].tolist() == [2 / 32, 2 / 32]
    assert cum["unit_coverage_latent"] == cum["unit_coverage_global"] == 3 / 32
    with NeuronCoverage(model, latent_layer="0", threshold=0.6) as strict:  # scaled: 2 -> 1, 1 -> 0.5
        model(first)
    assert strict.per_image()["unit_coverage_latent"].tolist() == [1 / 32]


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


# ---------------------------------------------------------------------------------------------
# The batched implementations against plain per-image references of the same definitions
# ---------------------------------------------------------------------------------------------


def _reference_box_iou(maps, boxes, component="largest", threshold=0.5):
    """Per image: scipy's 8-connected labelling, argmax of sizes (ties: first label), IoU loop."""
    from scipy import ndimage

    out = []
    for m, gts in zip(maps, boxes):
        if len(gts) == 0:
            out.append(math.nan)
            continue
        peak = float(m.clamp_min(0).max())
        binary = (m.clamp_min(0) / peak >= threshold).numpy() if peak > 0 else np.zeros(m.shape, bool)
        if not binary.any():
            out.append(0.0)
            continue
        if component == "largest":
            labelled, _ = ndimage.label(binary, structure=np.ones((3, 3), bool))
            binary = labelled == int(np.argmax(np.bincount(labelled.ravel())[1:])) + 1
        rows, cols = np.nonzero(binary)
        px = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        best = 0.0
        for g in gts.tolist():
            iw = max(0.0, min(px[2], g[2]) - max(px[0], g[0]))
            ih = max(0.0, min(px[3], g[3]) - max(px[1], g[1]))
            union = (px[2] - px[0]) * (px[3] - px[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
            best = max(best, iw * ih / union if union > 0 else 0.0)
        out.append(best)
    return torch.tensor(out, dtype=torch.float32)


def _random_case(seed, b=12, h=20, w=28):
    """Smooth maps, speckled maps with many components, an all-zero map, 0-3 boxes per image."""
    gen = torch.Generator().manual_seed(seed)
    smooth = nn.functional.interpolate(torch.rand(b // 2, 1, 3, 4, generator=gen), size=(h, w), mode="bilinear")[:, 0]
    speckle = torch.rand(b - b // 2, h, w, generator=gen) * (torch.rand(b - b // 2, h, w, generator=gen) > 0.8)
    maps = torch.cat([smooth, speckle])
    maps[0] = 0.0
    boxes = []
    for i in range(b):
        k = i % 4
        xy = torch.rand(k, 2, generator=gen) * torch.tensor([w, h])
        boxes.append(torch.cat([xy, xy + 2 + torch.rand(k, 2, generator=gen) * 10], 1).round())
    return maps, boxes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_iou_and_hit_match_a_per_image_reference(seed):
    maps, boxes = _random_case(seed)
    for component in ("largest", "all"):
        ours = _fn("box_iou")(maps, boxes=boxes, component=component)
        ref = _reference_box_iou(maps, boxes, component)
        torch.testing.assert_close(ours, ref, equal_nan=True, rtol=0, atol=1e-6)
        hit = _fn("hit")(maps, boxes=boxes, component=component)
        torch.testing.assert_close(hit, torch.where(torch.isnan(ref), ref, (ref >= 0.5).float()), equal_nan=True)


def test_largest_component_ties_go_to_the_first_in_raster_order():
    """Equal-size components in every image: the winner is the one whose first pixel comes first
    in raster order, whatever order the labeller numbers them in (OpenCV scans 2 rows at a time)."""
    from overfocus.metrics.components import largest_component_boxes

    rng = np.random.default_rng(0)
    binary = np.zeros((40, 16, 16), bool)
    for img in binary:
        for r, c in rng.integers(0, 8, size=(6, 2)) * 2:  # isolated single pixels (even grid)
            img[r, c] = True
    boxes, found = largest_component_boxes(binary)
    assert found.all()
    for img, box in zip(binary, boxes):
        r, c = np.argwhere(img)[0]  # argwhere is in raster order
        assert box.tolist() == [c, r, c + 1, r + 1]
    # a 2-pixel component in row 1 beats a 1-pixel one in row 0; then row 1 second block vs row 0
    img = np.zeros((1, 4, 8), bool)
    img[0, 0, 6] = True
    img[0, 1, 0:2] = True
    assert largest_component_boxes(img)[0].tolist() == [[0.0, 1.0, 2.0, 2.0]]
    img[0, 1, 0:2], img[0, 1, 1], img[0, 0, 6] = False, True, True  # two single pixels: row 0 first
    assert largest_component_boxes(img)[0].tolist() == [[6.0, 0.0, 7.0, 1.0]]


def test_compute_map_metrics_normalises_once_and_equals_each_metric_alone(monkeypatch):
    import overfocus.metrics.batch as batch_module

    maps, boxes = _random_case(3)
    alone = {name: _fn(name)(maps, boxes=boxes) for name in METRICS.names()
             if name != "harmonization" and not METRICS.get(name).needs_model}
    calls = []
    real = batch_module.normalize_maps
    monkeypatch.setattr(batch_module, "normalize_maps", lambda m: calls.append(1) or real(m))
    shared = compute_map_metrics(maps, boxes=boxes)
    assert len(calls) == 1 and sorted(shared) == sorted(alone)
    for name, values in alone.items():
        torch.testing.assert_close(shared[name], values, equal_nan=True, rtol=0, atol=0)


def test_pointing_game_and_energy_match_per_image_loops():
    maps, boxes = _random_case(4)
    height, width = maps.shape[1:]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pg, energy = _fn("pointing_game")(maps, boxes=boxes), _fn("energy_pg")(maps, boxes=boxes)
    for i, (m, gts) in enumerate(zip(maps, boxes)):
        if len(gts) == 0:
            assert math.isnan(pg[i]) and math.isnan(energy[i])
            continue
        mask = torch.zeros(height, width, dtype=torch.bool)
        for x0, y0, x1, y1 in gts.tolist():  # pixel centres inside the box
            mask |= (cols + 0.5 >= x0) & (cols + 0.5 <= x1) & (rows + 0.5 >= y0) & (rows + 0.5 <= y1)
        total = float(m.sum())
        assert energy[i].item() == pytest.approx(float(m[mask].sum()) / total if total >= 1e-7 else 0.0, rel=1e-5)
        if total > 0:
            r, c = divmod(int(m.argmax()), width)
            near = ((rows[mask] - r) ** 2 + (cols[mask] - c) ** 2).float().sqrt().min() <= 15
            assert pg[i].item() == float(near)


def test_boxes_to_masks_several_boxes_and_empty_lists():
    boxes = [torch.tensor([[0., 0., 2., 2.], [3., 1., 5., 3.]]), torch.zeros(0, 4), torch.tensor([[1., 1., 1., 1.]])]
    masks = boxes_to_masks(boxes, 4, 6)
    assert masks[0].int().tolist() == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0], [0] * 6]
    assert not masks[1].any() and not masks[2].any()  # an empty box covers no pixel centre


def test_gini_and_entropy_match_float64_references():
    gen = torch.Generator().manual_seed(5)
    maps = torch.rand(6, 12, 9, generator=gen) ** 4
    maps[1, :6] = 0.0
    flat = maps.reshape(6, -1).double()
    n = flat.shape[1]
    ordered = flat.sort(dim=1).values
    gini_ref = 2 * (torch.arange(1, n + 1, dtype=torch.float64) * ordered).sum(1) / (n * flat.sum(1)) - (n + 1) / n
    p = flat / flat.sum(1, keepdim=True)
    entropy_ref = -(p * torch.log(torch.where(p > 0, p, 1.0))).sum(1) / math.log(n)
    torch.testing.assert_close(_fn("gini")(maps), gini_ref.float(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(_fn("entropy")(maps), entropy_ref.float(), rtol=1e-6, atol=1e-7)


def test_bootstrap_chunks_draw_the_same_indices_as_one_draw():
    """Chunked draws (even rows per chunk) reproduce a single draw of all indices, odd n included."""
    import overfocus.metrics.stats as stats

    for n in (7, 256, 1001):
        v = np.random.default_rng(n).random(n)
        idx = np.random.default_rng(0).integers(0, n, size=(1000, n))
        means = v[idx].mean(axis=1)
        tail = (1 - 0.95) / 2 * 100  # as bootstrap_ci computes it (2.4999999999999996)
        expected = tuple(float(x) for x in np.percentile(means, [tail, 100 - tail]))
        assert bootstrap_ci(v, n_boot=1000, seed=0) == expected
    assert stats._MAX_DRAWS // 1001 < 1000  # the n = 1001 case did use several chunks
