"""A second process never costs a run, a rewritten checkpoint is analysed again, a killed writer's
temporary files go at the next call, and a train killed before epoch 0 gets advice that works."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_run, hold_in_another_process, release

from overfocus.cli import main
from overfocus.fileio import temp_prefix
from overfocus.runs.rundir import RunDir, atomic_torch_save
from overfocus.checkpoint.files import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "builtin?classes=3&train=24&test=12", "--set", "data.image_size=32", "--set", "model.width=0.125",
        "--set", "train.progress=false", "--set", "data.batch_size=12"]
HOLD = ("import sys; from overfocus.runs.lock import run_lock; from pathlib import Path; "
        "lock = run_lock(Path(sys.argv[1])).acquire(); print('held', flush=True); sys.stdin.read()")


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_a_second_train_or_resume_exits_at_once_naming_the_holder(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    holder = hold_in_another_process(HOLD, str(run))
    try:
        for argv in (["train", *TINY, "--epochs", "1", "--force", "--out", str(run)],
                     ["resume", str(run), "--epochs", "3"],
                     ["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "fresh" / ".." / "run")]):
            assert main(argv) == 2
            _one_line(capsys.readouterr().err, "is writing", f"pid {holder.pid}")
    finally:
        release(holder)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # not a byte changed
    assert main(["resume", str(run), "--epochs", "3"]) == 0  # the holder has gone: free again
    assert RunDir(run).latest_epoch() == 3


def test_a_folder_taken_while_the_data_opened_is_not_set_aside_without_force(tmp_path, capsys, monkeypatch):
    """The reported race: both trains passed the first check; the second set the first's run aside."""
    import overfocus.training.engine as engine

    out = tmp_path / "run"
    opened = engine.open_datasets

    def open_and_lose_the_race(cfg):
        data = opened(cfg)
        out.mkdir()  # another train's run appears here meanwhile
        (out / "run.json").write_text(json.dumps({"schema": 1, "status": "running"}))
        return data

    monkeypatch.setattr(engine, "open_datasets", open_and_lose_the_race)
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, f"run directory {out}")
    assert json.loads((out / "run.json").read_text()) == {"schema": 1, "status": "running"}  # left alone
    assert not any(p.name.startswith(".run.replaced") for p in tmp_path.iterdir())


def test_two_trains_started_together_leave_one_run_and_one_refusal(tmp_path):
    """Real processes, no --force: exactly one writes the run, the other exits 2 (before: both exit 0)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "overfocus", "train", *TINY, "--epochs", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert len(refusal.strip().splitlines()) == 1 and ("is writing" in refusal or "already exists" in refusal)
    assert RunDir(out).read_manifest()["status"] == "complete" and RunDir(out).latest_epoch() == 1
    assert not [p for p in tmp_path.iterdir() if ".replaced-" in p.name]


def test_a_rewritten_checkpoint_is_analysed_again_with_one_line(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    args = ["--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio"]
    assert main(["analyze", str(run), *args]) == 0
    capsys.readouterr()
    state = json.loads((run / "analysis" / "analysis.json").read_text())
    assert set(state["checkpoints"]) == {"0", "1", "2"}
    assert state["checkpoints"]["2"]["sha256"] == RunDir(run).read_manifest()["epochs"][2]["sha256"]
    # a training rewrites epoch 2 (a rerun, a Tracker resumed from an earlier epoch)
    path = RunDir(run).checkpoint_path(2)
    payload = load_checkpoint(path)
    payload["model"] = {k: (v * 0.5 if v.is_floating_point() else v) for k, v in payload["model"].items()}
    atomic_torch_save(path, payload)
    os.utime(RunDir(run).checkpoint_path(1))  # merely touched: same bytes, not analysed again
    assert main(["analyze", str(run), *args]) == 0
    captured = capsys.readouterr()
    assert "analysed epochs 2;" in captured.out
    notes = [line for line in captured.err.splitlines() if "changed since" in line]
    assert len(notes) == 1 and f"checkpoint {path} changed since epoch 2 was analysed" in notes[0]
    # the rewritten epoch's numbers are those of a fresh analysis of the same files
    fresh = copy_run(run, tmp_path / "fresh")
    assert main(["analyze", str(fresh), *args]) == 0
    assert _epoch_rows(run, 2) == _epoch_rows(fresh, 2)
    assert main(["analyze", str(run), *args]) == 0 and "nothing new" in capsys.readouterr().out


def _epoch_rows(run: Path, epoch: int) -> list:
    lines = (run / "analysis" / "summary.csv").read_text().splitlines()
    return [line for line in lines[1:] if line.split(",")[0] == str(epoch)]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_files_go_at_the_next_call(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path / "run")
    dead = _dead_pid()

    def leftover(path: Path) -> Path:
        name = temp_prefix(path).replace(f"~{os.getpid()}~", f"~{dead}~") + "x1y2.tmp"
        target = path.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"half")
        return target

    live = run / (temp_prefix(run / "run.json") + "live.tmp")  # this process is alive: its file stays
    live.write_bytes(b"")
    train_debris = [leftover(run / "checkpoints" / "epoch_0003.pt")]
    analysis_debris = [leftover(run / "analysis" / "analysis.json"), leftover(run / "metrics.jsonl"),
                       leftover(run / "analysis" / "records" / "epoch_0001.csv")]
    assert main(["analyze", str(run), "--device", "cpu", "--epochs", "1", "--metrics", "area_ratio"]) == 0
    assert not any(p.exists() for p in analysis_debris) and all(p.exists() for p in train_debris)
    assert main(["resume", str(run), "--epochs", "3"]) == 0
    assert not any(p.exists() for p in train_debris) and live.exists()
    capsys.readouterr()


def test_a_train_killed_before_epoch_0_gets_advice_that_works(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "config": {}, "epochs": []}))
    assert main(["resume", str(out)]) == 2
    resume_err = capsys.readouterr().err
    _one_line(resume_err, "nothing to resume", "--force")
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 2
    train_err = capsys.readouterr().err
    _one_line(train_err, "stopped before its epoch 0", "--force")
    assert "overfocus resume" not in train_err  # no circle: both name the one command that works
    assert main(["train", *TINY, "--epochs", "1", "--force", "--out", str(out)]) == 0
    assert RunDir(out).latest_epoch() == 1


def test_a_killed_before_epoch_0_config_less_run_json_is_named(tmp_path, capsys):
    """resume of such a folder reads no config it does not have: the one line still points to train --force."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "epochs": []}))
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
