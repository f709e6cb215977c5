"""Two-process gloo runs (launched with torchrun from the test) match one-process runs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from overfocus.distributed import GlobalBatchSampler, split_evenly
from overfocus.rundir import RunDir, load_checkpoint

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
