"""Checkpoints that fit on a disk: epoch_NNNN.pt holds the weights only (optionally in half
precision), the full training state is kept for the latest epoch (and every keep_full_every-th),
resume stays bit-exact, and the analysis of float32 weights is what it was with full checkpoints."""
from __future__ import annotations

import io
import shutil

import pytest
import torch

from conftest import copy_run
from overfocus.analysis import analyze, read_records
from overfocus.config import build_config
from overfocus.errors import OverfocusError
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint
from overfocus.training.engine import resume, train

TINY = ["data.spec=builtin?classes=3&train=48&test=24", "data.image_size=32", "data.batch_size=16",
        "model.name=cifarnet", "model.width=0.125", "train.progress=false"]


def nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def test_only_the_latest_epoch_keeps_the_full_state(tiny_run):
    run = RunDir(tiny_run)
    assert sorted(p.name for p in run.checkpoints.glob("training_state_*.pt")) == ["training_state_0002.pt"]
    weights = load_checkpoint(run.checkpoint_path(2))
    state = load_checkpoint(run.state_path(2))
    assert set(weights) == {"schema", "epoch", "model_name", "num_classes", "model", "dtype"}
    assert "model" not in state  # float32 weights are not stored twice
    # an epoch now costs its weights; before, the weights with the optimizer and the rest of the state
    before = nbytes({**weights, **state, "model": weights["model"]})
    assert run.checkpoint_path(1).stat().st_size <= before / 2.5  # Adam keeps two moments per weight


def test_keep_every_and_keep_full_every(tmp_path):
    cfg = build_config(overrides=TINY + ["train.epochs=5", "train.keep_every=2", "train.keep_full_every=2"])
    run = RunDir(train(cfg, tmp_path / "run"))
    assert run.checkpoint_epochs() == [0, 2, 4, 5]  # epoch 0 and the last always
    assert sorted(p.name for p in run.checkpoints.glob("training_state_*.pt")) == [
        "training_state_0002.pt", "training_state_0004.pt", "training_state_0005.pt"]
    entries = {e["epoch"]: e for e in run.read_manifest()["epochs"]}
    assert entries[1]["pruned"] and "file" not in entries[1] and not entries[2].get("pruned")
    result = analyze(run.root, methods=["grad_cam"], metrics=["area_ratio"], device="cpu", show_progress=False)
    assert result.epochs_done == [0, 2, 4, 5] and result.skipped == []
    with pytest.raises(OverfocusError, match=r"epoch 3 .* was not kept \(train.keep_every\).* \(2, 4, 5\)"):
        run.load_training_state(3)
    # a later state replaces the earlier ones it does not keep; resume continues from the latest
    resume(run.root, epochs=7)
    assert sorted(p.name for p in run.checkpoints.glob("training_state_*.pt")) == [
        "training_state_0002.pt", "training_state_0004.pt", "training_state_0006.pt", "training_state_0007.pt"]
    assert run.checkpoint_epochs() == [0, 2, 4, 6, 7]


def test_weights_only_epoch_refuses_resume_with_one_line(tmp_path):
    run = RunDir(train(build_config(overrides=TINY + ["train.epochs=2"]), tmp_path / "run"))
    run.set_latest(1)  # as if epoch 2 had not happened: epoch 1 kept no state
    with pytest.raises(OverfocusError, match=r"epoch 1 of .* kept its weights only.*\(2\)"):
        resume(run.root)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_resume_bit_exact(tmp_path, dtype):
    sets = TINY + ["regularizer.name=sgdrop", "regularizer.rho=0.05", "regularizer.tau=0.9",
                   f"train.checkpoint_dtype={dtype}"]
    ref = RunDir(train(build_config(overrides=sets + ["train.epochs=2"]), tmp_path / "ref"))
    part = RunDir(train(build_config(overrides=sets + ["train.epochs=1"]), tmp_path / "part"))
    resume(part.root, epochs=2)
    half = load_checkpoint(ref.checkpoint_path(2))["model"]
    assert all(v.dtype == getattr(torch, dtype) for v in half.values() if v.is_floating_point())
    a, b = ref.load_training_state(2), part.load_training_state(2)
    assert all(a["model"][k].dtype != torch.float16 and torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["regularizer"]["ema"][k], b["regularizer"]["ema"][k]) for k in a["regularizer"]["ema"])
    assert all(torch.equal(half[k], load_checkpoint(part.checkpoint_path(2))["model"][k]) for k in half)
    # half-precision weights are about half the bytes of float32 ones
    full = {k: v.float() if v.is_floating_point() else v for k, v in half.items()}
    assert ref.checkpoint_path(2).stat().st_size < 0.6 * nbytes({"model": full})
    result = analyze(ref.root, methods=["grad_cam"], metrics=["area_ratio"], device="cpu", show_progress=False)
    assert result.epochs_done == [0, 1, 2]


def test_analysis_of_float32_weights_is_the_same_as_with_full_checkpoints(tiny_run, tmp_path):
    """The epochs' checkpoints as they were before the split (weights + the whole training state)."""
    new = copy_run(tiny_run, tmp_path / "new")
    old = copy_run(tiny_run, tmp_path / "old")
    run = RunDir(old)
    state = load_checkpoint(run.state_path(2))
    for epoch in (0, 1, 2):
        payload = load_checkpoint(run.checkpoint_path(epoch))
        payload.pop("dtype")
        torch.save({**payload, **{k: v for k, v in state.items() if k not in ("schema", "epoch")}},
                   run.checkpoint_path(epoch))
    run.state_path(2).unlink()
    analyze(old, device="cpu", show_progress=False)
    analyze(new, device="cpu", show_progress=False)
    assert (old / "analysis" / "summary.csv").read_text() == (new / "analysis" / "summary.csv").read_text()
    assert read_records(old) == read_records(new)
    shutil.rmtree(old / "analysis")
    resume(old, epochs=3)  # an old-style run still resumes (its state is in epoch_0002.pt)
    assert RunDir(old).state_path(3).is_file()
