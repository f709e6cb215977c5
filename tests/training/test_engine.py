"""The engine: run directory contents, determinism, resume after SIGKILL, config errors."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from overfocus.config import build_config
from overfocus.errors import OverfocusError
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint
from overfocus.training.engine import train

TINY = ["data.spec=builtin?classes=3&train=48&test=24", "data.image_size=32", "data.batch_size=16",
        "model.name=cifarnet", "model.width=0.125", "train.progress=false"]


def test_run_directory_has_a_checkpoint_per_epoch(tiny_run):
    run = RunDir(tiny_run)
    assert run.checkpoint_epochs() == [0, 1, 2]
    assert run.latest_epoch() == 2
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(abs(r["gap"] - (r["train_acc"] - r["test_acc"])) < 1e-12 for r in rows)
    manifest = run.read_manifest()
    assert manifest["status"] == "complete"
    assert [e["epoch"] for e in manifest["epochs"]] == [0, 1, 2]
    assert manifest["config"]["model"]["name"] == "cifarnet"
    assert len(manifest["probe_ids"]) == 16


def test_checkpoint_loads_with_weights_only(tiny_run):
    ckpt = torch.load(RunDir(tiny_run).checkpoint_path(1), weights_only=True)
    assert ckpt["epoch"] == 1 and "model" in ckpt and "optimizer" not in ckpt  # weights only: the state is apart
    state = torch.load(RunDir(tiny_run).state_path(2), weights_only=True)
    assert {"optimizer", "scheduler", "regularizer", "rng", "rng_per_rank"} <= set(state)


def test_epoch_zero_is_the_initial_weights(tiny_run, tmp_path):
    from overfocus.models import build_model

    torch.manual_seed(0)
    fresh = build_model("cifarnet", 3, 0.125, True).state_dict()
    saved = load_checkpoint(RunDir(tiny_run).checkpoint_path(0))["model"]
    assert all(torch.equal(fresh[k], saved[k]) for k in fresh)


def test_training_is_deterministic(tmp_path):
    cfg = build_config(overrides=TINY + ["train.epochs=1"])
    a = train(cfg, tmp_path / "a")
    b = train(cfg, tmp_path / "b")
    wa = load_checkpoint(RunDir(a).checkpoint_path(1))["model"]
    wb = load_checkpoint(RunDir(b).checkpoint_path(1))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_existing_run_directory_is_not_overwritten(tiny_run):
    cfg = build_config(overrides=TINY + ["train.epochs=1"])
    before = RunDir(tiny_run).checkpoint_path(2).read_bytes()
    with pytest.raises(OverfocusError, match="already exists"):
        train(cfg, tiny_run)
    assert RunDir(tiny_run).checkpoint_path(2).read_bytes() == before


def test_bad_set_key_and_type_are_errors():
    with pytest.raises(OverfocusError, match="unknown config key 'optim.lrr' \\(did you mean 'lr'\\?\\)"):
        build_config(overrides=["optim.lrr=0.1"])
    with pytest.raises(OverfocusError, match="must be an integer"):
        build_config(overrides=["train.epochs=many"])
    with pytest.raises(OverfocusError, match="key=value"):
        build_config(overrides=["train.epochs"])


def _run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "overfocus", *args], capture_output=True, text=True, **kw)


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """Kill a run in the middle of an epoch, resume it, compare with an uninterrupted run."""
    sets = [f"--set={s}" for s in TINY] + ["--set=data.spec=builtin?classes=3&train=480&test=24",
                                           "--set=regularizer.name=dropout", "--set=regularizer.p=0.3"]
    ref = _run_cli(["train", "--epochs", "3", "--out", str(tmp_path / "ref"), *sets])
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen([sys.executable, "-m", "overfocus", "train", "--epochs", "3",
                             "--out", str(tmp_path / "killed"), *sets], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_run = RunDir(tmp_path / "killed")
    deadline = time.time() + 120
    while time.time() < deadline and (killed_run.latest_epoch() or 0) < 1:
        time.sleep(0.05)
    time.sleep(0.3)  # now in the middle of epoch 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed_run.latest_epoch() in (1, 2), "the kill should land before the run finished"
    res = _run_cli(["resume", str(tmp_path / "killed")])
    assert res.returncode == 0, res.stderr
    wa = load_checkpoint(RunDir(tmp_path / "ref").checkpoint_path(3))["model"]
    wb = load_checkpoint(killed_run.checkpoint_path(3))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ref_rows = RunDir(tmp_path / "ref").read_metrics()
    assert [r["test_acc"] for r in killed_run.read_metrics()] == [r["test_acc"] for r in ref_rows]


@pytest.mark.parametrize("args, message", [
    (["train", "--out", "X", "--data", "nosuchkind:/x"], "unknown dataset kind"),
    (["train", "--out", "X", "--model", "nosuchnet"], "unknown model"),
    (["train", "--out", "X", "--set", "optim.nope=1"], "unknown config key"),
    (["resume", "/nonexistent/run"], "not an overfocus run directory"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "X" else a for a in args]
    res = _run_cli(args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
