"""One analyze per analysis folder (analysis/lock.py): a second call exits with one line, shards share."""
from __future__ import annotations


import pytest
from conftest import copy_run, hold_in_another_process, release

from overfocus.analysis import analyze
from overfocus.analysis.lock import AnalysisLock
from overfocus.cli import main
from overfocus.errors import OverfocusError

HOLD = ("import sys; from overfocus.analysis.lock import AnalysisLock; "
        "lock = AnalysisLock(sys.argv[1], shared=sys.argv[2] == 'shared').acquire(); "
        "print('held', flush=True); sys.stdin.read()")


def test_a_second_analyze_exits_with_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    holder = hold_in_another_process(HOLD, str(run / "analysis"), "exclusive")
    try:
        code = main(["analyze", str(run), "--device", "cpu", "--epochs", "1"])
        err = capsys.readouterr().err
    finally:
        release(holder)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "another `overfocus analyze` is writing" in err and f"pid {holder.pid}" in err
    assert sorted(p.name for p in (run / "analysis").iterdir()) == ["analysis.lock"]  # no work, no files
    # the holder has gone: the lock went with it, and the same call now works
    assert main(["analyze", str(run), "--device", "cpu", "--epochs", "1"]) == 0
    assert (run / "analysis" / "records" / "epoch_0001.csv").is_file()


def test_the_lock_is_released_after_an_error(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="1", metrics=["area_ratio"], device="cpu", show_progress=False)
    with pytest.raises(OverfocusError, match="force=True"):  # refused inside the call, with the lock held
        analyze(run, epochs="1", metrics=["area_ratio"], target="predicted", device="cpu", show_progress=False)
    with AnalysisLock(run / "analysis"):  # would raise if the failed call still held it
        pass


def test_shards_run_side_by_side_but_not_beside_a_merging_call(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    holder = hold_in_another_process(HOLD, str(run / "analysis"), "shared")  # another shard of the job array
    try:
        res = analyze(run, epochs="1", device="cpu", show_progress=False, shard="0/2", metrics=["area_ratio"])
        assert res.computed == [1]
        with pytest.raises(OverfocusError, match="another `overfocus analyze` is writing"):
            analyze(run, epochs="1", device="cpu", show_progress=False, metrics=["area_ratio"])
    finally:
        release(holder)
    analyze(run, epochs="1", device="cpu", show_progress=False, shard="1/2", metrics=["area_ratio"])
    assert analyze(run, epochs="1", device="cpu", show_progress=False, metrics=["area_ratio"]).computed == [1]
