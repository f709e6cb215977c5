"""Overfocus onset (analysis/onset.py): known answers on hand-made area ratios, the file analyze
writes and the lines it prints."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overfocus.analysis.onset import (OnsetCollector, bootstrap_slope, compute_onset, epoch_means, kendall_tau,
                                      method_onset, onset_lines, read_onset, slope, update_onset)

NAN = math.nan


def test_kendall_tau_known_answers_and_scipy():
    assert kendall_tau([0, 1, 2, 3], [0.9, 0.5, 0.4, 0.1]) == -1.0
    assert kendall_tau([0, 1, 2, 3], [0.1, 0.4, 0.5, 0.9]) == 1.0
    # 1 concordant, 2 discordant of 3 pairs, no ties: (1 - 2) / 3
    assert kendall_tau([0, 1, 2], [0.5, 0.9, 0.1]) == pytest.approx(-1 / 3)
    assert math.isnan(kendall_tau([3], [0.2])) and math.isnan(kendall_tau([0, 1, 2], [0.4, 0.4, 0.4]))
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = np.arange(12), np.round(rng.uniform(size=12), 1)  # rounded: ties in y
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_slope_and_means_ignore_degenerate_images():
    assert float(slope([1, 2, 3], np.array([0.6, 0.4, 0.2]))) == pytest.approx(-0.2)
    assert np.isnan(slope([4], np.array([0.3])))
    values = np.array([[0.2, NAN, 0.4], [NAN, NAN, NAN]])
    means = epoch_means(values)
    assert means[0] == pytest.approx(0.3) and np.isnan(means[1])
    weights = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0]])  # image 0 drawn twice, image 2 once; image 1 only
    resampled = epoch_means(values, weights)
    assert resampled[0, 0] == pytest.approx((2 * 0.2 + 0.4) / 3) and np.isnan(resampled[1, 0])


def test_onset_known_answer():
    """Three images, widest at epoch 2, then narrowing by 0.1 per epoch for every image."""
    epochs = [0, 1, 2, 3, 4]
    base = np.array([0.2, 0.5, 0.7, 0.6, 0.5])
    values = base[:, None] + np.array([[0.0, 0.1, -0.1]])
    values[1, 2] = NAN  # a degenerate map: left out, not a zero
    gaps = {0: 0.0, 1: 0.01, 2: 0.02, 3: 0.1, 4: 0.3}
    onset = method_onset(epochs, values, gaps)
    assert onset["peak_epoch"] == 2 and onset["last_epoch"] == 4
    assert onset["peak_area"] == pytest.approx(0.7) and onset["last_area"] == pytest.approx(0.5)
    assert onset["narrowing"] == pytest.approx(0.2 / 0.7)
    assert onset["slope"] == pytest.approx(-0.1) and onset["kendall_tau"] == -1.0
    lo, hi = onset["slope_ci"]
    assert lo == pytest.approx(-0.1) and hi == pytest.approx(-0.1)  # every image narrows alike: no spread
    assert onset["gap_at_peak"] == 0.02 and onset["gap_at_last"] == 0.3 and onset["gap_growth"] == pytest.approx(0.28)
    assert onset["epochs_after_peak"] == 3


def test_onset_interval_spreads_with_disagreeing_images_and_gaps_may_be_missing():
    epochs = [0, 1, 2]
    values = np.array([[0.5, 0.5, 0.5, 0.5], [0.4, 0.6, 0.3, 0.5], [0.3, 0.7, 0.1, 0.5]])
    onset = method_onset(epochs, values, {})
    assert onset["peak_epoch"] == 0 and onset["slope"] == pytest.approx(-0.05)  # means 0.5, 0.45, 0.4
    lo, hi = onset["slope_ci"]
    assert lo < -0.05 < hi
    assert onset["gap_at_peak"] is None and onset["gap_growth"] is None
    assert bootstrap_slope(epochs, values, n_boot=50, seed=3) == bootstrap_slope(epochs, values, n_boot=50, seed=3)


def test_epochs_whose_maps_are_all_degenerate_are_skipped_and_none_at_all_gives_none():
    values = np.array([[NAN, NAN], [0.3, 0.5], [0.2, 0.2]])
    onset = method_onset([0, 1, 2], values, {})
    assert onset["peak_epoch"] == 1 and onset["last_area"] == pytest.approx(0.2)
    assert method_onset([0, 1], np.full((2, 3), NAN), {}) is None


def _records(epoch, method, areas, dead):
    rows = []
    for i, (a, d) in enumerate(zip(areas, dead)):
        rows.append({"epoch": epoch, "method": method, "image_id": f"im{i}", "label": 0, "metric": "area_ratio",
                     "value": 0.0 if d else a})
        rows.append({"epoch": epoch, "method": method, "image_id": f"im{i}", "label": 0, "metric": "degenerate",
                     "value": float(d)})
    return rows


def test_collector_reads_degenerate_maps_as_missing_and_the_file_is_written(tmp_path):
    collector = OnsetCollector()
    collector.add(0, _records(0, "grad_cam", [0.4, 0.6], [0, 0]))
    collector.add(1, _records(1, "grad_cam", [0.5, 0.9], [0, 1]))  # im1 empty: the mean is 0.5, not 0.25
    collector.add(2, _records(2, "grad_cam", [0.2, 0.4], [0, 0]))
    epochs, table = collector.arrays()["grad_cam"]
    assert epochs == [0, 1, 2] and np.isnan(table[1, 1]) and table[1, 0] == 0.5
    onset = update_onset(tmp_path, [0, 1, 2], {1: 0.0, 2: 0.2}, collector)
    # 0.5 at epochs 0 and 1: never epoch 0 (the initial weights), so epoch 1
    assert onset["methods"]["grad_cam"]["peak_epoch"] == 1
    assert onset["methods"]["grad_cam"]["search_from"] == 1
    on_disk = json.loads((tmp_path / "onset.json").read_text())
    assert on_disk == read_onset(tmp_path) and on_disk["measure"] == "area_ratio_nondegenerate"
    assert on_disk["methods"]["grad_cam"]["gap_growth"] == pytest.approx(0.2)
    # nothing collected (the summary was up to date): the file is kept, or made from the records
    assert update_onset(tmp_path, [0, 1, 2], {}, OnsetCollector())["methods"]["grad_cam"]["gap_growth"] == \
        pytest.approx(0.2)
    (tmp_path / "onset.json").unlink()
    recs = {e: _records(e, "sgdrop", [0.1 * (e + 1)] * 2, [0, 0]) for e in range(3)}
    made = update_onset(tmp_path, [0, 1, 2], {}, read_epoch=recs.get)
    assert made["methods"]["sgdrop"]["peak_epoch"] == 2 and (tmp_path / "onset.json").is_file()


def test_lines_say_peak_narrowing_trend_and_gap():
    collector = OnsetCollector()
    for e, area in enumerate([0.3, 0.6, 0.45, 0.3]):
        collector.add(e, _records(e, "grad_cam", [area, area], [0, 0]))
    collector.add(4, _records(4, "sgdrop", [0.1, 0.1], [0, 0]))
    onset = compute_onset(collector, {1: 0.05, 3: 0.25})
    lines = onset_lines(onset)
    assert lines[0].startswith("overfocus onset")
    assert lines[1].startswith("  grad_cam: widest at epoch 1 (area ratio 0.600), 0.300 at epoch 3 (-50%); "
                               "slope -0.15/epoch")
    assert "Kendall tau -1.00" in lines[1] and lines[1].endswith("gap 5.0 -> 25.0 points")
    assert lines[2] == "    peak searched from epoch 1: epoch 0 holds the initial weights"
    assert lines[3] == "  sgdrop: widest at epoch 4 (area ratio 0.100), the last analysed epoch: no narrowing yet"
    assert lines[-3].startswith("is the narrowing real?")
    assert lines[-2] == ("  grad_cam: narrowing after epoch 1 (faithfulness of the maps not measured: pass "
                         "--faithfulness-images N): yes")
    assert lines[-1].startswith("  sgdrop: narrowing after epoch 4 (faithfulness") and lines[-1].endswith(
        ": no (the area ratio does not fall significantly after the peak)")
    assert onset_lines(None) == [] and onset_lines({"methods": {}}) == []


# ---- the search start (issue 24: onset from meaningful epochs) and the verdicts ------------------------
def _epoch_records(epoch, area, correct, dead=0, n=40, faith=None, method="grad_cam"):
    """n images of two classes (majority rate 0.5): area ratios, `correct` of them right, `dead`
    degenerate maps, optionally deletion / insertion of the method and of the random baseline."""
    rows = []
    for i in range(n):
        label = i % 2
        is_dead = i < dead
        rows.append({"epoch": epoch, "method": method, "image_id": f"im{i}", "label": label,
                     "metric": "area_ratio", "value": 0.0 if is_dead else area + 0.001 * i})
        rows.append({"epoch": epoch, "method": method, "image_id": f"im{i}", "label": label,
                     "metric": "degenerate", "value": float(is_dead)})
        rows.append({"epoch": epoch, "method": "model", "image_id": f"im{i}", "label": label,
                     "metric": "correct", "value": float(i < correct)})
        for who, (deletion, insertion) in (faith or {}).items():
            rows.append({"epoch": epoch, "method": who, "image_id": f"im{i}", "label": label,
                         "metric": "deletion", "value": deletion + 0.01 * (i % 3)})
            rows.append({"epoch": epoch, "method": who, "image_id": f"im{i}", "label": label,
                         "metric": "insertion", "value": insertion + 0.01 * (i % 3)})
    return rows


def test_the_peak_is_never_at_epoch_0_nor_at_chance_level_nor_on_degenerate_maps():
    collector = OnsetCollector()
    # epoch 0: widest but the initial weights; epoch 1: wide but at chance (20 of 40 right, majority 0.5);
    # epoch 2: above chance but most maps degenerate; epoch 3 on: meaningful, narrowing
    for epoch, (area, correct, dead) in enumerate([(0.9, 20, 0), (0.8, 21, 0), (0.7, 36, 30), (0.6, 36, 0),
                                                   (0.5, 38, 0), (0.4, 39, 0)]):
        collector.add(epoch, _epoch_records(epoch, area, correct, dead))
    onset = compute_onset(collector, {})
    o = onset["methods"]["grad_cam"]
    assert o["peak_epoch"] == 3 and o["search_from"] == 3
    assert o["search_reason"] == ("epoch 0 holds the initial weights; the model is at chance level before epoch 2; "
                                  "most maps are degenerate at epoch 2")
    assert onset["above_chance"] == {"0": False, "1": False, "2": True, "3": True, "4": True, "5": True}
    assert "peak searched from epoch 3: epoch 0 holds" in "\n".join(onset_lines(onset))


def test_a_model_never_above_chance_has_no_onset_and_says_why():
    collector = OnsetCollector()
    for epoch in range(3):
        collector.add(epoch, _epoch_records(epoch, 0.5 - 0.1 * epoch, 20))
    o = compute_onset(collector, {})["methods"]["grad_cam"]
    assert o["peak_epoch"] is None and o["search_reason"] == "the model is never above chance level"
    assert o["verdict"] == "grad_cam: no epoch to search for a narrowing (the model is never above chance level): no"


def test_faithful_from_and_the_verdict_against_the_random_baseline():
    collector = OnsetCollector()
    chance = {"random": (0.30, 0.30)}
    # epochs 1-2: the maps are no better than random; from epoch 3 on deletion lower, insertion higher
    plan = [(0.9, 20, chance["random"]), (0.8, 36, (0.30, 0.30)), (0.7, 36, (0.31, 0.29)), (0.6, 37, (0.2, 0.5)),
            (0.5, 38, (0.15, 0.55)), (0.4, 39, (0.1, 0.6))]
    for epoch, (area, correct, mine) in enumerate(plan):
        collector.add(epoch, _epoch_records(epoch, area, correct, faith={"grad_cam": mine, **chance}))
    o = compute_onset(collector, {})["methods"]["grad_cam"]
    assert o["faithfulness_measured"] and o["faithful_from"] == 3
    assert o["faithful_epochs"] == {"0": False, "1": False, "2": False, "3": True, "4": True, "5": True}
    assert o["search_from"] == 3 and o["peak_epoch"] == 3
    assert "the maps are faithful from epoch 3 on" in o["search_reason"]
    assert o["verdict"] == "grad_cam: narrowing after epoch 3 on maps faithful from epoch 3: yes"


def test_maps_that_never_beat_random_give_a_no():
    collector = OnsetCollector()
    for epoch in range(4):
        collector.add(epoch, _epoch_records(epoch, 0.9 - 0.1 * epoch, 38,
                                            faith={"grad_cam": (0.3, 0.3), "random": (0.3, 0.3)}))
    o = compute_onset(collector, {})["methods"]["grad_cam"]
    assert o["faithful_from"] is None and o["peak_epoch"] is None
    assert o["verdict"] == ("grad_cam: no epoch to search for a narrowing (the maps never beat the random "
                            "baseline on deletion and insertion): no")


def test_binomial_test_and_sanity_level_known_answers():
    from overfocus.analysis.verdicts import above_chance, binomial_upper_tail, first_from, sanity_from

    stats = pytest.importorskip("scipy.stats")
    for k, n, p in [(7, 10, 0.5), (30, 100, 0.25), (0, 4, 0.1), (55, 60, 0.9)]:
        assert binomial_upper_tail(k, n, p) == pytest.approx(stats.binom.sf(k - 1, n, p), rel=1e-9, abs=1e-12)
    assert above_chance(9, 10, 0.5) and not above_chance(8, 10, 0.5)  # P(X >= 9) = 0.0107, P(X >= 8) = 0.0547
    assert first_from([1, 2, 3, 4], [True, False, True, True]) == 3 and first_from([1, 2], [True, False]) is None
    assert sanity_from({0: 1.0, 1: 0.7, 2: 0.4, 3: 0.6, 4: 0.3, 5: 0.2}) == 4
