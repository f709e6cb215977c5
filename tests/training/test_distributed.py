"""Two-process gloo runs (launched with torchrun from the test) match one-process runs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from overfocus.distributed import GlobalBatchSampler, split_evenly
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint

SETS = ["--set=data.spec=builtin?classes=3&train=90&test=24", "--set=data.image_size=32",
        "--set=data.batch_size=16", "--set=model.width=0.125", "--set=model.classifier_dropout=0",
        "--set=train.progress=false", "--epochs=2"]


def _train(out, nproc=0):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    extra = [f"--nproc={nproc}"] if nproc else []
    res = subprocess.run([sys.executable, "-m", "overfocus", "train", *SETS, *extra, "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_rank_slices_cover_the_same_global_batches():
    one = list(GlobalBatchSampler(37, 8, seed=5))
    two = [list(GlobalBatchSampler(37, 8, seed=5, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*two)] == one
    assert split_evenly(list(range(7)), 3, 2) == [5, 6]


def test_two_process_training_matches_one_process(tmp_path):
    _train(tmp_path / "one")
    _train(tmp_path / "two", nproc=2)
    a = load_checkpoint(RunDir(tmp_path / "one").checkpoint_path(2))["model"]
    b = load_checkpoint(RunDir(tmp_path / "two").checkpoint_path(2))["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in a)
    rows_a, rows_b = RunDir(tmp_path / "one").read_metrics(), RunDir(tmp_path / "two").read_metrics()
    for ra, rb in zip(rows_a, rows_b):
        assert ra["test_acc"] == rb["test_acc"] and ra["train_acc"] == rb["train_acc"]
        assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-4)
    assert RunDir(tmp_path / "two").read_manifest()["status"] == "complete"


def _cli(args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "overfocus", *args], capture_output=True, text=True, env=env,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]


def _weights(run, epoch):
    return RunDir(run).load_training_state(epoch)  # weights and regularizer state (the latest epoch's)


# saliency_guided's default random fill draws from each rank's own RNG (like dropout), so its
# deterministic `mean` fill is used to compare with one process.
@pytest.mark.parametrize("method", ["sgdrop", "guidance", "saliency_guided&replace=mean"])
def test_regularizers_train_under_ddp_with_identical_state(tmp_path, method):
    """Two ranks train with the method; SGDrop's EMA copy is the same on both (saved by rank 0 and
    equal to what a single process computes from the same global batches)."""
    name, _, option = method.partition("&")
    sets = [s.replace("--epochs=2", "--epochs=1") for s in SETS] + [f"--set=regularizer.name={name}"]
    sets += [f"--set=regularizer.{option}"] if option else []
    _cli(["train", *sets, "--out", str(tmp_path / "one")])
    _cli(["train", *sets, "--nproc=2", "--out", str(tmp_path / "two")])
    a, b = _weights(tmp_path / "one", 1), _weights(tmp_path / "two", 1)
    assert all(torch.allclose(a["model"][k], b["model"][k], atol=1e-4, rtol=1e-3) for k in a["model"])
    if name == "sgdrop":
        ema_a, ema_b = a["regularizer"]["ema"], b["regularizer"]["ema"]
        assert all(torch.allclose(ema_a[k], ema_b[k], atol=1e-4, rtol=1e-3) for k in ema_a)


def test_resume_under_ddp_matches_uninterrupted_ddp(tmp_path):
    sets = SETS + ["--set=regularizer.name=sgdrop"]
    _cli(["train", *sets, "--nproc=2", "--out", str(tmp_path / "full")])
    short = [s.replace("--epochs=2", "--epochs=1") for s in sets]
    _cli(["train", *short, "--nproc=2", "--out", str(tmp_path / "part")])
    _cli(["resume", str(tmp_path / "part"), "--epochs", "2", "--nproc", "2"])
    a, b = _weights(tmp_path / "full", 2), _weights(tmp_path / "part", 2)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["regularizer"]["ema"][k], b["regularizer"]["ema"][k]) for k in a["regularizer"]["ema"])
