"""`overfocus select`: the Pareto-optimal epochs of a run, checked against a brute-force front on
hand-made values; directions from the registry; the knee; select.json; bad input; the explorer's marks."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from test_render import write_fake_run  # noqa: E402

from overfocus.analysis.select import dominates, knee_epoch, pareto_front, select_run  # noqa: E402
from overfocus.errors import OverfocusError  # noqa: E402


def _brute_front(points, higher):
    """Epochs for which no other epoch is >= everywhere (in the better direction) and > somewhere."""
    out = []
    for e, p in points.items():
        beaten = False
        for f, q in points.items():
            if f == e:
                continue
            ge = all((a >= b) if h else (a <= b) for a, b, h in zip(q, p, higher))
            gt = any((a > b) if h else (a < b) for a, b, h in zip(q, p, higher))
            beaten |= ge and gt
        if not beaten:
            out.append(e)
    return sorted(out)


@pytest.mark.parametrize("seed", range(5))
def test_front_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    points = {e: tuple(np.round(rng.uniform(size=3), 1)) for e in range(25)}  # rounded: ties happen
    for higher in itertools.product([True, False], repeat=3):
        assert pareto_front(points, higher) == _brute_front(points, higher)


def test_dominance_and_knee_by_hand():
    assert dominates((0.9, 0.1), (0.8, 0.2), (True, False)) and not dominates((0.9, 0.3), (0.8, 0.2), (True, False))
    # scaled over the front: epoch 2 is (0.5, 0.9) of the way to the ideal (1, 1), the ends are (1, 0) and (0, 1)
    assert knee_epoch({1: (1.0, 0.0), 2: (0.5, 0.9), 3: (0.0, 1.0)}, (True, True)) == 2
    assert pareto_front({0: (math.nan, 1.0), 1: (0.5, 0.5)}, (True, True)) == [1]


def _run_with(tmp_path, acc, energy, area):
    """A fake run whose test accuracy and two summary means are the given per-epoch values."""
    run = write_fake_run(tmp_path / "run", epochs=range(len(acc)))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r["test_acc"] = acc[r["epoch"]]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = run / "analysis" / "summary.csv"
    lines = [summary.read_text().rstrip("\n")]
    for e in range(len(acc)):
        lines.append(f"{e},grad_cam,energy_pg_nondegenerate,{energy[e]},{energy[e] - 0.05},{energy[e] + 0.05},8")
        lines.append(f"{e},grad_cam,area_ratio_nondegenerate,{area[e]},{area[e] - 0.01},{area[e] + 0.01},8")
    summary.write_text("\n".join(lines) + "\n")
    manifest = json.loads((run / "run.json").read_text())
    manifest["dataset"] = {"test_size": 200}
    (run / "run.json").write_text(json.dumps(manifest))
    return run


def test_select_run_values_intervals_and_directions(tmp_path):
    acc = [0.2, 0.5, 0.7, 0.7, 0.6]
    energy = [0.3, 0.5, 0.6, 0.4, 0.6]
    area = [0.5, 0.7, 0.8, 0.9, 0.75]  # the registry: a higher area ratio (wider attention) is better
    result = select_run(_run_with(tmp_path, acc, energy, area), pick="knee")
    directions = {o["name"]: o["higher_is_better"] for o in result["objectives"]}
    assert directions == {"test_acc": True, "energy_pg_nondegenerate": True, "area_ratio_nondegenerate": True}
    expected = _brute_front({e: (acc[e], energy[e], area[e]) for e in range(5)}, (True, True, True))
    assert [r["epoch"] for r in result["front"]] == expected == [2, 3]
    two = result["front"][0]["values"]
    assert two["energy_pg_nondegenerate"] == {"mean": 0.6, "ci_low": pytest.approx(0.55), "ci_high": pytest.approx(0.65)}
    lo, hi = two["test_acc"]["ci_low"], two["test_acc"]["ci_high"]
    assert lo < 0.7 < hi and hi - lo == pytest.approx(0.126, abs=0.005)  # Wilson on the 200 test images
    assert result["pick"] == {"rule": "knee", "epoch": knee_epoch({2: (0.7, 0.6, 0.8), 3: (0.7, 0.4, 0.9)},
                                                                  (True, True, True))}


def test_cli_prints_the_table_writes_select_json_and_the_explorer_marks_it(tmp_path, capsys):
    from overfocus.cli import main
    from overfocus.render.explore import build_page, ExploreOptions

    run = _run_with(tmp_path, [0.2, 0.5, 0.7, 0.7, 0.6], [0.3, 0.5, 0.6, 0.4, 0.6], [0.5, 0.7, 0.8, 0.9, 0.75])
    assert main(["select", str(run), "--pick", "knee"]) == 0
    out = capsys.readouterr().out
    assert "area_ratio_nondegenerate higher is better" in out and "knee: epoch" in out
    lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(cells[0]) for cells in lines] == [2, 3]
    saved = json.loads((run / "analysis" / "select.json").read_text())
    assert [r["epoch"] for r in saved["front"]] == [2, 3] and saved["pick"]["rule"] == "knee"
    page = build_page([run], ExploreOptions())
    assert page["runs"][0]["select"]["epochs"] == [2, 3] and page["runs"][0]["select"]["knee"] == saved["pick"]["epoch"]
    assert main(["select", str(run), "--objectives", "test_acc,gap", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["objectives"][1]["higher_is_better"] is False


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from overfocus.cli import main

    run = write_fake_run(tmp_path / "run", epochs=range(3))
    (tmp_path / "bare").mkdir()
    for argv, words in ((["select", str(run), "--objectives", "test_acc,enrgy_pg"], "did you mean 'energy_pg'"),
                        (["select", str(tmp_path / "bare")], "overfocus analyze"),
                        (["select", str(run)], "energy_pg_nondegenerate"),  # the fake summary lacks it
                        (["select", str(run), "--objectives", "test_acc", "--method", "sgdop"], "did you mean"),
                        (["select", str(run), "--objectives", ","], "--objectives is empty")):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and words in err, (argv, err)
    assert not (run / "analysis" / "select.json").exists()
    with pytest.raises(OverfocusError, match="--pick"):
        select_run(run, ["test_acc"], pick="middle")
