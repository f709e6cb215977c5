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
    onset = update_onset(tmp_path, [0, 1, 2], {0: 0.0, 2: 0.2}, collector)
    assert onset["methods"]["grad_cam"]["peak_epoch"] == 0  # 0.5 at epoch 0 and 1: the first maximum
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
    assert lines[2] == "  sgdrop: widest at epoch 4 (area ratio 0.100), the last analysed epoch: no narrowing yet"
    assert onset_lines(None) == [] and onset_lines({"methods": {}}) == []
