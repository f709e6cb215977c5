"""Properties of the map metrics and `normalize_maps` over random maps, boxes and shapes (hypothesis).

Maps include zeros, negatives, NaN, +-inf and huge values; boxes include none, empty, inverted
and out-of-image ones. Every metric must give, per image: a value in its documented range, NaN
only where documented, and the same value as for a batch of that image alone.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from overfocus.attribution.api import normalize_maps
from overfocus.metrics import area_ratio, box_iou, energy_pg, entropy, gini, harmonization, hit, pointing_game

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALUES = st.one_of(st.floats(-1e6, 1e6, width=32), st.sampled_from([0.0, 0.0, 1.0, math.nan, math.inf, -math.inf]))


@st.composite
def map_batches(draw):
    """(B x H x W float32 maps, B box lists of N x 4) with adversarial values and boxes."""
    b, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kind = draw(st.sampled_from(["random", "zeros", "onehot"]))
    if kind == "zeros":
        maps = np.zeros((b, h, w), np.float32)
    elif kind == "onehot":
        maps = np.zeros((b, h, w), np.float32)
        maps[:, draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = 1.0
    else:
        maps = draw(arrays(np.float32, (b, h, w), elements=VALUES))
    coord = st.floats(-2.0 * max(h, w), 3.0 * max(h, w), width=32)
    boxes = [torch.tensor(draw(st.lists(st.tuples(coord, coord, coord, coord), max_size=3)),
                          dtype=torch.float32).reshape(-1, 4) for _ in range(b)]
    return torch.from_numpy(maps), boxes


def degenerate(maps: torch.Tensor) -> torch.Tensor:
    return normalize_maps(maps)[1]


def has_box(boxes) -> torch.Tensor:
    return torch.tensor([len(b) > 0 for b in boxes])


def check_range(values: torch.Tensor, low: float, high: float, nan_where: torch.Tensor, name: str) -> None:
    assert values.dtype == torch.float32 and values.dim() == 1, name
    assert torch.equal(torch.isnan(values), nan_where), f"{name}: NaN at {torch.isnan(values).tolist()}, " \
                                                        f"documented at {nan_where.tolist()}"
    finite = values[~nan_where]
    assert torch.isfinite(finite).all(), f"{name}: infinite value {values.tolist()}"
    assert ((finite >= low - 1e-6) & (finite <= high + 1e-6)).all(), f"{name}: {values.tolist()} outside [{low}, {high}]"


def check_per_image(fn, maps, boxes, name: str, **kwargs) -> None:
    batch = fn(maps, boxes=boxes, **kwargs)
    for i in range(len(maps)):
        one = fn(maps[i:i + 1], boxes=[boxes[i]], **kwargs)
        assert torch.allclose(batch[i:i + 1], one, atol=1e-6, equal_nan=True), \
            f"{name}: image {i} is {one.tolist()} alone, {batch[i].item()} in the batch"


@SETTINGS
@given(map_batches())
def test_normalize_maps_range_and_batch_independence(batch):
    maps, _ = batch
    normed, flag = normalize_maps(maps)
    assert normed.shape == maps.shape and torch.isfinite(normed).all()
    assert ((normed >= 0) & (normed <= 1)).all()
    flat = normed.reshape(len(maps), -1)
    assert (flat[flag] == 0).all()  # degenerate maps stay zero
    assert torch.allclose(flat[~flag].amax(dim=1), torch.ones(int((~flag).sum()))) if (~flag).any() else True
    for i in range(len(maps)):
        one, one_flag = normalize_maps(maps[i:i + 1])
        assert torch.equal(one[0], normed[i]) and bool(one_flag[0]) == bool(flag[i])


@SETTINGS
@given(map_batches())
def test_box_free_metrics(batch):
    maps, boxes = batch
    flag = degenerate(maps)
    check_range(area_ratio(maps), 0.0, 1.0, torch.zeros(len(maps), dtype=torch.bool), "area_ratio")
    assert (area_ratio(maps)[flag] == 0).all()  # documented: 0 if degenerate
    n = maps.shape[1] * maps.shape[2]
    check_range(gini(maps), 0.0, (n - 1) / n, flag, "gini")
    check_range(entropy(maps), 0.0, 1.0, flag, "entropy")
    for fn, name in [(area_ratio, "area_ratio"), (gini, "gini"), (entropy, "entropy")]:
        check_per_image(fn, maps, boxes, name)


@SETTINGS
@given(map_batches())
def test_box_metrics(batch):
    maps, boxes = batch
    no_box = ~has_box(boxes)
    for fn, name in [(box_iou, "box_iou"), (hit, "hit"), (pointing_game, "pointing_game"), (energy_pg, "energy_pg")]:
        values = fn(maps, boxes=boxes)
        check_range(values, 0.0, 1.0, no_box, name)
        if name in ("hit", "pointing_game"):
            assert set(values[~no_box].tolist()) <= {0.0, 1.0}, name
        check_per_image(fn, maps, boxes, name)
    flag = degenerate(maps) & ~no_box
    assert (box_iou(maps, boxes=boxes)[flag] == 0).all()  # documented: 0 for a degenerate map
    assert (pointing_game(maps, boxes=boxes)[flag] == 0).all()  # a degenerate map points nowhere


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(map_batches(), st.data())
def test_harmonization(batch, data):
    maps, _ = batch
    human = torch.from_numpy(data.draw(arrays(np.float32, tuple(maps.shape), elements=VALUES)))
    values = harmonization(maps, human=human, blur=False)
    flat_m, flat_h = maps.reshape(len(maps), -1), human.reshape(len(maps), -1)

    def constant(flat):
        return ~torch.isfinite(flat).all(dim=1) | (flat.amax(dim=1) == flat.amin(dim=1))

    nan_where = constant(flat_m) | constant(flat_h)
    assert torch.isnan(values)[nan_where].all()  # documented: NaN where either map is constant/non-finite
    finite = values[~torch.isnan(values)]
    assert ((finite >= -1 - 1e-5) & (finite <= 1 + 1e-5)).all()
    for i in range(len(maps)):
        one = harmonization(maps[i:i + 1], human=human[i:i + 1], blur=False)
        assert torch.allclose(values[i:i + 1], one, atol=1e-5, equal_nan=True)


def test_non_finite_maps_are_degenerate_for_every_metric():
    inf, nan = math.inf, math.nan
    maps = torch.tensor([[[1.0, -inf, 2.0]], [[1.0, inf, 2.0]], [[nan, 1.0, 2.0]], [[0.0, 0.0, 0.0]], [[1.0, 0.0, 3.0]]])
    flag = degenerate(maps)
    assert flag.tolist() == [True, True, True, True, False]
    for fn in (gini, entropy):
        assert torch.isnan(fn(maps)).tolist() == flag.tolist(), fn.__name__
    assert area_ratio(maps)[flag].eq(0).all()
    box = [torch.tensor([[0.0, 0.0, 1.0, 1.0]])] * len(maps)
    assert torch.isfinite(energy_pg(maps, boxes=box)).all()


@pytest.mark.parametrize("fn", [area_ratio, gini, entropy])
def test_empty_batch_gives_empty_result(fn):
    assert fn(torch.zeros(0, 4, 4)).shape == (0,)
