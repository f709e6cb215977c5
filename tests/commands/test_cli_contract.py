"""The CLI's error contract (docs/errors.md), case by case through the real `overfocus.cli.main`.

Each case runs a command against a prepared folder and checks: the exit code (0 success, 2 bad
input or environment, 3 a bug, 130 interrupted), that a failure prints exactly one stderr line
without a traceback, naming what is wrong, and that every file that existed before is still
there, byte for byte. Disk-full and read-only are simulated by making the write itself raise
(tests run as root, which ignores file permissions).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import torch

from overfocus.cli import main
from test_render import write_fake_run

MAX_ERROR_LINE = 330  # "overfocus COMMAND: error: " + about 300 characters (errors.one_line)
TINY = ["--data", "builtin?classes=3&train=24&test=12", "--set", "data.image_size=32", "--set", "model.width=0.125",
        "--set", "train.progress=false", "--set", "data.batch_size=12"]


def tree_hashes(root: Path) -> Dict[str, str]:
    """relative path -> sha256 of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(argv: List[str], capsys) -> tuple:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line(err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert "Traceback" not in err
    assert needle.lower() in err.lower(), f"{needle!r} not in {err!r}"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """One finished 1-epoch run, copied by every case that needs one."""
    out = tmp_path_factory.mktemp("contract") / "base"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


def fail_writes(monkeypatch, err: int) -> None:
    """Every atomic write and folder creation fails as on a full disk (ENOSPC) or a read-only folder."""
    def refuse(*_a, **_k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr("overfocus.fileio.tempfile.mkstemp", refuse)
    monkeypatch.setattr("overfocus.render.io.tempfile.mkstemp", refuse)
    monkeypatch.setattr("overfocus.render.tensorboard.tempfile.mkdtemp", refuse)


@dataclass
class Case:
    """argv uses {run} (a copy of base_run), {fake} (an analysed fake run) and {tmp} placeholders."""

    name: str
    argv: List[str]
    code: int
    needle: str = ""
    prepare: Optional[Callable[[Path, pytest.MonkeyPatch], None]] = None
    absent: List[str] = field(default_factory=list)  # paths (under tmp) that must not exist afterwards


def _write(rel: str, data: bytes) -> Callable:
    def prepare(tmp: Path, _mp) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return prepare


def _both(*steps: Callable) -> Callable:
    def prepare(tmp: Path, mp) -> None:
        for step in steps:
            step(tmp, mp)
    return prepare


def _writes_fail(err: int) -> Callable:
    return lambda _tmp, mp: fail_writes(mp, err)


def _dataset_folder(tmp: Path, _mp) -> None:
    for cls in ("a", "b"):
        (tmp / "D" / cls).mkdir(parents=True)
        (tmp / "D" / cls / "x.txt").write_text("the user's precious data")


def _fsync_enospc(_tmp, mp) -> None:
    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    mp.setattr("overfocus.fileio.os.fsync", full)


def _torchscript(tmp: Path, _mp) -> None:
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp / "scripted.pt"))


def _pickled_module(tmp: Path, _mp) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp / "module.pt")


def _bug(_tmp, mp) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("an unexpected failure")
    mp.setattr("overfocus.training.engine.train", boom)


def _interrupt(_tmp, mp) -> None:
    def ctrl_c(*_a, **_k):
        raise KeyboardInterrupt
    mp.setattr("overfocus.training.engine.train", ctrl_c)


class FixedSizeNet(torch.nn.Module):
    """A LeNet-like model whose classifier only fits 32 px inputs (what audit's --image-size is for)."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.MaxPool2d(4))
        self.classifier = torch.nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def _fixed_size_weights(tmp: Path, _mp) -> None:
    torch.save(FixedSizeNet(3).state_dict(), tmp / "fixed32.pt")


def _no_audit_work(_tmp, mp) -> None:
    def must_not_run(*_a, **_k):
        raise AssertionError("audit computed before checking its output folder")
    mp.setattr("overfocus.audit.flow.audit", must_not_run)


class _CallsOsSystem:
    """A pickle that runs os.system when loaded without weights_only (the global posix.system)."""

    def __reduce__(self):
        return (os.system, ("true",))


def _pickle_with_global(tmp: Path, _mp) -> None:
    torch.save({"model": _CallsOsSystem()}, tmp / "shell.pt")


def _checkpoint_naming_code(arch: str) -> Callable:
    def prepare(tmp: Path, mp) -> None:
        from overfocus.models import build_model

        net = build_model("cifarnet", 3, width=0.125, small_input=True)
        torch.save({"schema": 1, "epoch": 0, "model_name": arch, "arch": arch, "num_classes": 3,
                    "model": net.state_dict()}, tmp / "recipe.pt")
        mp.setattr("overfocus.models.build.importlib", None)  # any import attempt would fail the case as a bug
    return prepare


def _stopped_before_epoch_0(tmp: Path, _mp) -> None:
    (tmp / "half").mkdir()
    (tmp / "half" / "run.json").write_text(json.dumps({"schema": 1, "status": "running", "epochs": []}))


def fixed_head_net():
    """A factory without num_classes: its head is its own (3 outputs), whatever --num-classes says."""
    return FixedSizeNet(3)


ALIAS_BOMB = "".join(f"{k}: &{k} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
                     for k, p in zip("abcdefgh", ["", *"abcdefg"])) + "i: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
LONG_NAME = "n" * 300  # a path component over 255 bytes
LONG_PATH = "/".join(["d" * 200] * 25)  # over 4096 bytes in all


def _data_format(make: str, rel: str, data: bytes) -> Callable:
    """A dataset of tests/test_data_formats.py (`make_coco`, `make_yolo`, `make_voc`) with one file
    replaced by `data`."""
    def prepare(tmp: Path, _mp) -> None:
        import test_data_formats

        root = getattr(test_data_formats, make)(tmp / "ds")
        (root / rel).write_bytes(data)
    return prepare


def _coco_edit(edit: Callable[[dict], None]) -> Callable:
    def prepare(tmp: Path, _mp) -> None:
        from test_data_formats import coco_with

        coco_with(tmp / "ds", edit)
    return prepare


def _coco_bbox(value) -> Callable:
    return _coco_edit(lambda data: data["annotations"][0].update(bbox=value))


def _nan_tiff(tmp: Path, _mp) -> None:
    import cv2
    import numpy as np
    from test_data_formats import make_folder_split

    root = make_folder_split(tmp / "ds")
    cv2.imwrite(str(root / "train" / "cat" / "nan.tif"), np.full((8, 8, 3), np.nan, np.float32))


JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000") + b"\x00" * 64 + b"\xff\xd9"
CASES = [
    # no code chosen by a file; a pickle needing a global is named as such; advice after a kill before epoch 0
    *[Case(f"audit-checkpoint-names-{arch.replace(':', '-')}", ["audit", "{tmp}/recipe.pt", "--data", "builtin",
                                                                "--out", "{tmp}/audit"], 2, f"--arch {arch}",
           _checkpoint_naming_code(arch), absent=["audit"])
      for arch in ("os:abort", "sys:exit", "shutil:rmtree", "builtins:exec")],
    Case("audit-pickle-needing-a-global", ["audit", "{tmp}/shell.pt", "--data", "builtin"], 2,
         "needs the Python global posix.system", _pickle_with_global),
    Case("train-stopped-before-epoch-0", ["train", *TINY, "--out", "{tmp}/half"], 2, "--force", _stopped_before_epoch_0),
    Case("resume-stopped-before-epoch-0", ["resume", "{tmp}/half"], 2, "nothing to resume", _stopped_before_epoch_0),
    # --force never deletes before data and model open, and only deletes a run directory
    Case("force-bad-model-keeps-run", ["train", *TINY, "--model", "nosuch", "--out", "{run}", "--force"], 2,
         "unknown model"),
    Case("force-bad-data-keeps-run", ["train", "--data", "folder:{tmp}/nowhere", "--out", "{run}", "--force"], 2,
         "nowhere"),
    Case("force-refuses-non-run-folder", ["train", "--data", "folder:{tmp}/D", "--out", "{tmp}/D", "--force"], 2,
         "no run.json", _dataset_folder),
    Case("occupied-without-force", ["train", *TINY, "--out", "{run}"], 2, "already exists"),
    Case("out-is-a-file", ["train", *TINY, "--out", "{tmp}/file.txt"], 2, "existing file", _write("file.txt", b"x")),
    Case("failed-train-leaves-no-folder", ["train", *TINY, "--model", "nosuch", "--out", "{tmp}/new/sub"], 2,
         "unknown model", absent=["new"]),
    Case("enospc-fresh-train-leaves-no-folder", ["train", *TINY, "--epochs", "1", "--out", "{tmp}/fresh"], 2,
         "disk is full", _fsync_enospc, absent=["fresh"]),
    Case("enospc-force-keeps-old-run", ["train", *TINY, "--epochs", "1", "--out", "{run}", "--force"], 2,
         "disk is full", _fsync_enospc),
    # bad values, one line each
    Case("negative-epochs", ["train", *TINY, "--epochs", "-2", "--out", "{tmp}/x"], 2, "train.epochs", absent=["x"]),
    Case("negative-lr", ["train", *TINY, "--set", "optim.lr=-1", "--out", "{tmp}/x"], 2, "optim.lr", absent=["x"]),
    Case("nan-lr", ["train", *TINY, "--set", "optim.lr=nan", "--out", "{tmp}/x"], 2, "optim.lr", absent=["x"]),
    Case("zero-batch", ["train", *TINY, "--set", "data.batch_size=0", "--out", "{tmp}/x"], 2, "data.batch_size"),
    Case("zero-width", ["train", *TINY, "--set", "model.width=0", "--out", "{tmp}/x"], 2, "model.width"),
    Case("string-for-int", ["train", *TINY, "--set", "data.batch_size=many", "--out", "{tmp}/x"], 2, "batch_size"),
    Case("unknown-key", ["train", *TINY, "--set", "optim.lrr=0.1", "--out", "{tmp}/x"], 2, "unknown config key"),
    Case("argparse-bad-int", ["train", "--epochs", "abc", "--out", "{tmp}/x"], 2, "invalid int value"),
    Case("argparse-unknown-flag", ["render", "{fake}", "--no-such-flag"], 2, "unrecognized arguments"),
    Case("argparse-long-value", ["train", "--epochs", "x" * 5000, "--out", "{tmp}/x"], 2, "invalid int value"),
    Case("resume-negative-epochs", ["resume", "{run}", "--epochs", "-1"], 2, "--epochs -1"),
    Case("resume-negative-lr", ["resume", "{run}", "--lr", "-1"], 2, "optim.lr"),
    Case("resume-not-a-run", ["resume", "{tmp}"], 2, "not an overfocus run directory"),
    Case("resume-deep-run-json", ["resume", "{run}"], 2, "nested too deeply",
         _write("run/run.json", b"[" * 100000 + b"]" * 100000)),
    Case("resume-list-run-json", ["resume", "{run}"], 2, "holds a list", _write("run/run.json", b"[1, 2]")),
    Case("analyze-deep-analysis-json", ["analyze", "{run}", "--device", "cpu"], 2, "not an analysis.json",
         _write("run/analysis/analysis.json", b"[" * 100000 + b"]" * 100000)),
    Case("resume-corrupt-metrics", ["resume", "{run}", "--epochs", "2"], 2, "metrics.jsonl line 2",
         _write("run/metrics.jsonl", b'{"epoch": 0}\n{"epoch": 1, "train_lo')),
    Case("resume-read-only", ["resume", "{run}", "--epochs", "2"], 2, "cannot write", _writes_fail(errno.EACCES)),
    # analysis files damaged or unwritable: render, compare, tensorboard
    Case("render-corrupt-summary", ["render", "{fake}", "--formats", "gif"], 2, "summary.csv",
         _write("fake/analysis/summary.csv", b"epoch,method,metric,mean,ci_low,ci_high,n\n0,grad_cam,hit,0.5,0.1")),
    Case("render-truncated-probe-npz", ["render", "{fake}", "--formats", "gif"], 2, "images.npz",
         lambda tmp, _mp: _truncate(tmp / "fake/analysis/probe/images.npz")),
    Case("render-truncated-epoch-npz", ["render", "{fake}", "--formats", "gif"], 2, "epoch_0001.npz",
         lambda tmp, _mp: _truncate(tmp / "fake/analysis/probe/epoch_0001.npz")),
    Case("render-read-only", ["render", "{fake}", "--formats", "gif"], 2, "read-only", _writes_fail(errno.EROFS)),
    Case("render-disk-full", ["render", "{fake}", "--formats", "gif"], 2, "disk is full", _writes_fail(errno.ENOSPC)),
    Case("compare-out-is-file", ["compare", "{fake}", "{fake}", "--labels", "a,b", "--out", "{tmp}/file.txt",
                                 "--formats", "gif"], 2, "existing file", _write("file.txt", b"x")),
    Case("compare-corrupt-summary", ["compare", "{fake}", "{fake}", "--labels", "a,b", "--out", "{tmp}/cmp"], 2,
         "summary.csv", _write("fake/analysis/summary.csv", b"epoch,method,metric,mean,ci_low,ci_high,n\nx,y,z,1,2,3,4\n")),
    Case("tensorboard-read-only", ["tensorboard", "{fake}"], 2, "read-only", _writes_fail(errno.EROFS)),
    # checkpoints of the wrong kind get their own diagnosis
    Case("audit-jpeg", ["audit", "{tmp}/photo.pt", "--model", "cifarnet", "--data", "builtin"], 2, "JPEG image", _write("photo.pt", JPEG)),
    Case("audit-text", ["audit", "{tmp}/notes.pt", "--model", "cifarnet", "--data", "builtin"], 2, "text file",
         _write("notes.pt", b"not a checkpoint\n")),
    Case("audit-empty", ["audit", "{tmp}/empty.pt", "--model", "cifarnet", "--data", "builtin"], 2, "empty file", _write("empty.pt", b"")),
    Case("audit-pickled-module", ["audit", "{tmp}/module.pt", "--data", "builtin"], 2, "--trust-pickle", _pickled_module),
    Case("audit-truncated", ["audit", "{run}/checkpoints/epoch_0001.pt", "--data", "builtin", "--out", "{tmp}/a"], 2, "corrupt",
         lambda tmp, _mp: _truncate(tmp / "run/checkpoints/epoch_0001.pt")),
    # analyze: asked epochs and batch sizes are checked, never silently replaced
    Case("analyze-epoch-beyond-run", ["analyze", "{run}", "--epochs", "9", "--device", "cpu"], 2, "no epoch 9",
         absent=["run/analysis"]),
    Case("analyze-negative-epoch", ["analyze", "{run}", "--epochs=-1", "--device", "cpu"], 2, "epochs are 0",
         absent=["run/analysis"]),
    Case("analyze-negative-range", ["analyze", "{run}", "--epochs=-3:1", "--device", "cpu"], 2, "START",
         absent=["run/analysis"]),
    Case("analyze-zero-batch", ["analyze", "{run}", "--batch-size", "0", "--device", "cpu"], 2, "--batch-size 0",
         absent=["run/analysis"]),
    # unknown names: one line with a suggestion
    Case("did-you-mean-model", ["train", *TINY, "--model", "resnet-18", "--out", "{tmp}/x"], 2,
         "did you mean 'resnet18'", absent=["x"]),
    Case("did-you-mean-regularizer", ["train", *TINY, "--set", "regularizer.name=sg-drop", "--out", "{tmp}/x"], 2,
         "did you mean 'sgdrop'", absent=["x"]),
    Case("did-you-mean-config-key", ["train", *TINY, "--set", "optim.momentun=0.5", "--out", "{tmp}/x"], 2,
         "did you mean 'momentum'", absent=["x"]),
    Case("did-you-mean-dataset", ["train", "--data", "bultin", "--out", "{tmp}/x"], 2, "did you mean 'builtin'",
         absent=["x"]),
    Case("did-you-mean-method", ["analyze", "{run}", "--methods", "gradcam", "--device", "cpu"], 2,
         "did you mean 'grad_cam'", absent=["run/analysis"]),
    Case("did-you-mean-metric", ["analyze", "{run}", "--metrics", "arearatio", "--device", "cpu"], 2,
         "did you mean 'area_ratio'", absent=["run/analysis"]),
    Case("did-you-mean-captum-class", ["analyze", "{run}", "--methods", "captum:Oclusion", "--device", "cpu"], 2,
         "did you mean 'Occlusion'", absent=["run/analysis"]),
    Case("captum-class-missing-argument", ["analyze", "{run}", "--methods", "captum:Occlusion", "--device", "cpu"], 2,
         "needs sliding_window_shapes", absent=["run/analysis"]),
    Case("did-you-mean-method-argument", ["analyze", "{run}", "--methods", "score_cam", "--method-args",
                                          "score_cam.batchsize=8", "--device", "cpu"], 2,
         "did you mean 'batch_size'", absent=["run/analysis"]),
    Case("method-args-of-another-method", ["audit", "{run}", "--method-args", "score_cam.batch_size=8",
                                           "--out", "{tmp}/a"], 2, "not among the methods", absent=["a"]),
    Case("method-args-without-value", ["analyze", "{run}", "--method-args", "score_cam", "--device", "cpu"], 2,
         "neither METHOD.KEY=VALUE nor a file", absent=["run/analysis"]),
    Case("did-you-mean-gate-metric", ["audit", "{run}", "--fail-under", "hitratio=0.3", "--out", "{tmp}/a"], 2,
         "did you mean 'hit_ratio'", absent=["a"]),
    Case("did-you-mean-gate", ["audit", "{run}", "--fail-under", "acuracy=0.5", "--out", "{tmp}/a"], 2,
         "did you mean 'accuracy'", absent=["a"]),
    Case("did-you-mean-command", ["analyse", "{run}"], 2, "did you mean 'analyze'"),
    Case("did-you-mean-render-method", ["render", "{fake}", "--methods", "gradcam"], 2, "did you mean 'grad_cam'"),
    Case("did-you-mean-human-kind", ["analyze", "{run}", "--human", "osi:{tmp}", "--device", "cpu"], 2,
         "did you mean 'osie'", absent=["run/analysis"]),
    Case("torchvision-name-mentions-arch", ["audit", "{run}/checkpoints/epoch_0001.pt", "--model", "resnet34",
                                            "--data", "builtin", "--out", "{tmp}/a"], 2, "--arch", absent=["a"]),
    Case("int-grammar", ["train", *TINY, "--set", "train.epochs=many", "--out", "{tmp}/x"], 2, "must be an integer",
         absent=["x"]),
    # audit: the input size is the user's, and an unwritable report folder is refused before any work
    Case("audit-wrong-image-size", ["audit", "{tmp}/fixed32.pt", "--arch", "test_cli_contract:FixedSizeNet",
                                    "--num-classes", "3", "--data", "builtin?classes=3&test=8", "--out", "{tmp}/a"],
         2, "--image-size", _fixed_size_weights, absent=["a"]),
    Case("audit-read-only-before-work", ["audit", "{run}", "--out", "{tmp}/a"], 2, "read-only",
         _both(_writes_fail(errno.EROFS), _no_audit_work), absent=["a"]),
    # every configuration value validated before any work (issue 19, item 3)
    Case("width-below-one-channel", ["train", *TINY, "--set", "model.width=0.0001", "--out", "{tmp}/x"], 2,
         "model.width", absent=["x"]),
    Case("width-beyond-memory", ["train", *TINY, "--model", "vgg16", "--set", "model.width=8", "--set",
                                 "model.small_input=false", "--out", "{tmp}/x"], 2, "billion parameters", absent=["x"]),
    Case("rho-nan", ["train", *TINY, "--set", "regularizer.name=sgdrop", "--set", "regularizer.rho=nan",
                     "--out", "{tmp}/x"], 2, "finite number", absent=["x"]),
    Case("rho-one", ["train", *TINY, "--set", "regularizer.name=sgdrop", "--set", "regularizer.rho=1",
                     "--out", "{tmp}/x"], 2, "[0, 1)", absent=["x"]),
    Case("inf-momentum", ["train", *TINY, "--set", "optim.momentum=.inf", "--out", "{tmp}/x"], 2, "finite",
         absent=["x"]),
    Case("unknown-latent-layer", ["train", *TINY, "--set", "model.latent_layer=block9", "--out", "{tmp}/x"], 2,
         "model.latent_layer 'block9'", absent=["x"]),
    Case("builtin-test-zero", ["train", *TINY, "--data", "builtin?classes=3&train=24&test=0", "--out", "{tmp}/x"],
         2, "test=0", absent=["x"]),
    Case("builtin-negative-size", ["train", *TINY, "--data", "builtin?train=-3", "--out", "{tmp}/x"], 2,
         "train=-3", absent=["x"]),
    Case("builtin-float-size", ["train", *TINY, "--data", "builtin?train=2.5", "--out", "{tmp}/x"], 2,
         "whole number", absent=["x"]),
    Case("builtin-string-classes", ["train", *TINY, "--data", "builtin?classes=many", "--out", "{tmp}/x"], 2,
         "classes='many'", absent=["x"]),
    Case("seed-2-64", ["train", *TINY, "--set", f"train.seed={2 ** 64}", "--out", "{tmp}/x"], 2, "train.seed",
         absent=["x"]),
    Case("seed-1e15", ["train", *TINY, "--seed", "1000000000000000", "--out", "{tmp}/x"], 2, "2^32", absent=["x"]),
    Case("seed-float", ["train", *TINY, "--set", "train.seed=1.0e+15", "--out", "{tmp}/x"], 2,
         "must be an integer", absent=["x"]),
    Case("image-size-huge", ["train", *TINY, "--set", "data.image_size=200000", "--out", "{tmp}/x"], 2,
         "data.image_size", absent=["x"]),
    Case("input-batch-beyond-memory", ["train", *TINY, "--set", "data.image_size=4096", "--set",
                                       "data.batch_size=1024", "--out", "{tmp}/x"], 2, "GiB", absent=["x"]),
    Case("num-classes-below-data", ["train", *TINY, "--set", "model.num_classes=2", "--out", "{tmp}/x"], 2,
         "the data has 3 classes", absent=["x"]),
    Case("config-deep-yaml", ["train", *TINY, "--config", "{tmp}/deep.yaml", "--out", "{tmp}/x"], 2,
         "nests deeper", _write("deep.yaml", b"a: " + b"[" * 5000 + b"]" * 5000), absent=["x"]),
    Case("config-deep-json", ["train", *TINY, "--config", "{tmp}/deep.json", "--out", "{tmp}/x"], 2,
         "nests deeper", _write("deep.json", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"), absent=["x"]),
    Case("config-not-utf8", ["train", *TINY, "--config", "{tmp}/latin.yaml", "--out", "{tmp}/x"], 2,
         "not UTF-8 text (byte 0xe9 at line 2)", _write("latin.yaml", "data:\n  spec: caf\xe9\n".encode("latin-1")),
         absent=["x"]),
    Case("config-alias-bomb", ["train", *TINY, "--config", "{tmp}/bomb.yaml", "--out", "{tmp}/x"], 2,
         "YAML alias (*a)", _write("bomb.yaml", ALIAS_BOMB.encode()), absent=["x"]),
    Case("set-alias-bomb", ["train", *TINY, "--set", "data.spec={{" + ALIAS_BOMB.replace("\n", ", ") + "}}",
                            "--out", "{tmp}/x"], 2, "--set data.spec uses a YAML alias", absent=["x"]),
    Case("config-too-big", ["train", *TINY, "--config", "{tmp}/big.yaml", "--out", "{tmp}/x"], 2,
         "more than the 1,048,576", _write("big.yaml", b"# " + b"x" * (2 << 20)), absent=["x"]),
    Case("long-value-shortened", ["train", *TINY, "--model", "x" * 5000, "--out", "{tmp}/x"], 2, "choose one of",
         absent=["x"]),
    Case("long-spec-option", ["train", *TINY, "--data", "builtin?classes=" + "9" * 5000, "--out", "{tmp}/x"], 2,
         "use a whole number", absent=["x"]),
    Case("audit-gate-nan", ["audit", "{run}", "--fail-under", "hit_ratio=nan", "--out", "{tmp}/a"], 2, "finite",
         absent=["a"]),
    Case("analyze-interval-nan", ["analyze", "{run}", "--watch", "--interval", "nan"], 2, "not a finite number",
         absent=["run/analysis"]),
    Case("render-size-huge", ["render", "{fake}", "--size", "100000"], 2, "--size 100000"),
    Case("audit-image-size-huge", ["audit", "{run}", "--image-size", "100000", "--out", "{tmp}/a"], 2,
         "--image-size 100000", absent=["a"]),
    Case("resume-epochs-huge", ["resume", "{run}", "--epochs", str(10 ** 12)], 2, "train.epochs"),
    Case("audit-num-classes-not-taken", ["audit", "{tmp}/fixed32.pt", "--arch", "test_cli_contract:fixed_head_net",
                                         "--num-classes", "5", "--image-size", "32", "--data",
                                         "builtin?classes=3&test=8", "--out", "{tmp}/a"], 2, "has 3 outputs",
         _fixed_size_weights, absent=["a"]),
    Case("audit-num-classes-mismatch", ["audit", "{run}/checkpoints/epoch_0001.pt", "--num-classes", "5",
                                        "--data", "builtin?classes=3&test=8", "--out", "{tmp}/a"], 2,
         "shape mismatches", absent=["a"]),
    # every data format's bad entry named (item 4)
    Case("coco-bbox-3-values", ["data", "info", "coco:{tmp}/ds"], 2, "annotation 0 (id 0): bbox has 3 values",
         _coco_bbox([1, 2, 3])),
    Case("coco-bbox-string", ["data", "info", "coco:{tmp}/ds"], 2, "bbox is '1 2 3 4'", _coco_bbox("1 2 3 4")),
    Case("coco-bbox-null", ["data", "info", "coco:{tmp}/ds"], 2, "bbox is None", _coco_bbox(None)),
    Case("coco-no-category", ["data", "info", "coco:{tmp}/ds"], 2, "no category_id",
         _coco_edit(lambda d: d["annotations"][1].pop("category_id"))),
    Case("coco-images-dict", ["data", "info", "coco:{tmp}/ds"], 2, "`images` must be a list",
         _coco_edit(lambda d: d.update(images={"1": d["images"][0]}))),
    Case("coco-duplicate-ids", ["data", "info", "coco:{tmp}/ds"], 2, "share id 1",
         _coco_edit(lambda d: d["images"][1].update(id=1))),
    Case("yolo-latin1-label", ["data", "info", "yolo:{tmp}/ds"], 2, "p1.txt is not UTF-8",
         _data_format("make_yolo", "labels/train/p1.txt", "1 0.3 0.5 0.5 0.8 # \xe9t\xe9\n".encode("latin-1"))),
    Case("yolo-bad-line", ["data", "info", "yolo:{tmp}/ds"], 2, "p1.txt line 1",
         _data_format("make_yolo", "labels/train/p1.txt", b"one 0.3 0.5 0.5 0.8\n")),
    Case("yolo-data-yaml-invalid", ["data", "info", "yolo:{tmp}/ds"], 2, "data.yaml is not valid YAML",
         _data_format("make_yolo", "data.yaml", b"names: [a, b\n")),
    Case("yolo-data-yaml-list", ["data", "info", "yolo:{tmp}/ds"], 2, "holds a list",
         _data_format("make_yolo", "data.yaml", b"- ant\n- bee\n")),
    Case("yolo-names-string-keys", ["data", "info", "yolo:{tmp}/ds"], 2, "class numbers",
         _data_format("make_yolo", "data.yaml", b"names:\n  a: ant\n  b: bee\n  c: cow\n")),
    Case("voc-empty-name", ["data", "info", "voc:{tmp}/ds"], 2, "a1.xml object 0: its <name> is empty",
         _data_format("make_voc", "Annotations/a1.xml",
                      b"<annotation><filename>a1.jpg</filename><object><name> </name><bndbox><xmin>1</xmin>"
                      b"<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")),
    Case("nan-tiff-named", ["train", "--data", "folder:{tmp}/ds", "--epochs", "1", "--set", "data.image_size=32",
                            "--set", "model.width=0.125", "--set", "train.progress=false", "--out", "{tmp}/x"], 2,
         "non-finite pixel values", _nan_tiff),  # met in training: the run stays, failed and resumable
    # environment failures named (item 5)
    Case("out-name-too-long", ["train", *TINY, "--out", "{tmp}/" + LONG_NAME], 2, "name is too long"),
    Case("out-path-too-long", ["train", *TINY, "--out", "{tmp}/" + LONG_PATH], 2, "name is too long"),
    Case("data-name-too-long", ["train", *TINY, "--data", "folder:{tmp}/" + LONG_NAME, "--out", "{tmp}/x"], 2,
         "name is too long", absent=["x"]),
    Case("config-name-too-long", ["train", *TINY, "--config", "{tmp}/" + LONG_NAME, "--out", "{tmp}/x"], 2,
         "name is too long", absent=["x"]),
    Case("analyze-disk-full", ["analyze", "{run}", "--device", "cpu"], 2, "disk is full", _writes_fail(errno.ENOSPC)),
    Case("force-read-only", ["train", *TINY, "--epochs", "1", "--out", "{run}", "--force"], 2, "read-only",
         _writes_fail(errno.EROFS)),
    Case("fetch-cache-is-a-file", ["data", "fetch", "x", "--url", "http://127.0.0.1:9/x.tgz", "--cache",
                                   "{tmp}/file.txt", "--quiet"], 2, "is an existing file", _write("file.txt", b"x")),
    Case("fetch-cache-read-only", ["data", "fetch", "x", "--url", "http://127.0.0.1:9/x.tgz", "--cache",
                                   "{tmp}/cache", "--quiet"], 2, "read-only", _writes_fail(errno.EROFS),
         absent=["cache"]),
    # the rest of the contract: bugs and Ctrl-C
    Case("bug-exit-3", ["train", *TINY, "--out", "{tmp}/x"], 3, "internal error", _bug),
    Case("ctrl-c-exit-130", ["train", *TINY, "--out", "{tmp}/x"], 130, "interrupted", _interrupt),
]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_contract(case: Case, base_run, tmp_path, capsys, monkeypatch):
    shutil.copytree(base_run, tmp_path / "run")
    write_fake_run(tmp_path / "fake")
    if case.prepare:
        case.prepare(tmp_path, monkeypatch)
    before = tree_hashes(tmp_path)
    argv = [a.format(run=tmp_path / "run", fake=tmp_path / "fake", tmp=tmp_path) for a in case.argv]
    code, err = run_cli(argv, capsys)
    monkeypatch.undo()
    assert code == case.code, err
    assert_one_line(err, case.needle)
    assert len(err.strip()) <= MAX_ERROR_LINE, f"{len(err.strip())} characters: {err[:400]!r}"
    after = tree_hashes(tmp_path)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"changed or deleted: {changed}"
    assert not [a for a in case.absent if (tmp_path / a).exists()]
    assert not list(tmp_path.glob(".*")), "a hidden temporary or set-aside folder was left behind"
    if code == 3:
        crash = Path(err.split("the full traceback is in ")[1].strip())
        assert "RuntimeError: an unexpected failure" in crash.read_text()
        crash.unlink()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit deprecation notes
def test_torchscript_checkpoint_is_named_as_such(tmp_path):
    from overfocus.errors import OverfocusError
    from overfocus.checkpoint.files import load_checkpoint

    _torchscript(tmp_path, None)
    with pytest.raises(OverfocusError, match="TorchScript archive") as info:
        load_checkpoint(tmp_path / "scripted.pt")
    assert "trust-pickle" not in str(info.value)


def test_good_values_accepted_lr_as_yaml_1e_3(tmp_path, capsys):
    (tmp_path / "cfg.yaml").write_text("optim:\n  lr: 1e-3\n")
    out = tmp_path / "ok"
    code, err = run_cli(["train", *TINY, "--epochs", "1", "--config", tmp_path / "cfg.yaml",
                         "--set", "optim.momentum=5e-1", "--out", out], capsys)
    assert code == 0, err
    config = json.loads((out / "run.json").read_text())["config"]["optim"]
    assert config["lr"] == 1e-3 and config["momentum"] == 0.5


def test_force_replaces_a_run_and_leaves_nothing_aside(base_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    (run / "marker").write_text("old")
    code, err = run_cli(["train", *TINY, "--epochs", "1", "--set", "train.seed=3", "--out", run, "--force"], capsys)
    assert code == 0, err
    assert not (run / "marker").exists() and (run / "checkpoints" / "epoch_0001.pt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_divergence_stops_with_one_line_and_resume_continues(tmp_path, capsys):
    run = tmp_path / "div"
    code, err = run_cli(["train", *TINY, "--epochs", "2", "--set", "optim.lr=1e12", "--out", run], capsys)
    assert code == 2
    assert_one_line(err, "diverged at epoch 1")
    assert "optim.lr" in err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]  # strict JSON
    assert [r["epoch"] for r in rows] == [0]
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch_0000.pt"
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    code, err = run_cli(["resume", run, "--lr", "0.001"], capsys)
    assert code == 0, err
    assert (run / "checkpoints" / "latest").read_text().strip() == "epoch_0002.pt"
    state = torch.load(run / "checkpoints" / "epoch_0002.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_metrics_jsonl_writes_non_finite_as_null(tmp_path):
    from overfocus.runs.rundir import RunDir

    run = RunDir(tmp_path)
    run.write_metrics([{"epoch": 0, "train_loss": float("nan"), "test_loss": float("inf"), "lr": 0.1}])
    assert json.loads(run.metrics_path.read_text()) == {"epoch": 0, "train_loss": None, "test_loss": None, "lr": 0.1}


def test_killed_render_debris_is_cleaned_by_the_next_render(tmp_path, capsys):
    fake = write_fake_run(tmp_path / "fake")
    figures = fake / "figures"
    figures.mkdir()
    stale = figures / ".evolution_grad_cam.mp4.k1ll3d.tmp.mp4"  # what atomic_output leaves under kill -9
    stale.write_bytes(b"half a video")
    (figures / ".notes").write_text("not ours")  # hidden but not a temp file: kept
    code, err = run_cli(["render", fake, "--formats", "gif", "--methods", "grad_cam"], capsys)
    assert code == 0, err
    assert not stale.exists() and (figures / ".notes").exists()


def test_interrupted_video_write_leaves_no_temp_file(tmp_path, capsys, monkeypatch):
    fake = write_fake_run(tmp_path / "fake")

    def write_then_interrupt(frames, path, fps):
        from overfocus.render.io import atomic_output

        with atomic_output(path) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt

    monkeypatch.setattr("overfocus.render.encode.write_gif", write_then_interrupt)
    code, err = run_cli(["render", fake, "--formats", "gif", "--methods", "grad_cam"], capsys)
    assert code == 130
    assert_one_line(err, "interrupted")
    assert not [p for p in (fake / "figures").iterdir() if p.name.startswith(".")]


def test_metrics_jsonl_nan_token_is_named(tmp_path):
    from overfocus.errors import OverfocusError
    from overfocus.runs.rundir import RunDir

    (tmp_path / "metrics.jsonl").write_text('{"epoch": 0, "x": 1}\nnot json\n')
    with pytest.raises(OverfocusError, match="line 2"):
        RunDir(tmp_path).read_metrics()


def _options_without_help(parser, path: str) -> List[str]:
    import argparse

    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                missing += _options_without_help(child, f"{path} {name}")
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help():
    from overfocus.cli import build_parser

    assert _options_without_help(build_parser(), "overfocus") == []


def test_did_you_mean_lives_in_the_registry():
    from overfocus.registry import close_names, did_you_mean

    assert close_names("ResNet_18", ["resnet18", "resnet50"]) == ["resnet18"]
    assert did_you_mean("gradcam", ["grad_cam", "sgdrop"]) == " (did you mean 'grad_cam'?)"
    assert did_you_mean("entirely-else", ["grad_cam", "sgdrop"]) == ""


def test_disk_full_while_taking_the_analysis_lock_is_one_line(base_run, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)

    class FullFile:
        """An open file of a full disk: opening works, writing does not."""

        def __init__(self, path, *args, **kwargs):
            self._fh = open(path, *args, **kwargs)

        def write(self, _text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self._fh, name)

    monkeypatch.setattr("overfocus.runs.lock.open", FullFile, raising=False)
    code, err = run_cli(["analyze", run, "--device", "cpu"], capsys)
    assert code == 2
    assert_one_line(err, "disk is full")
    assert "analysis.lock" in err


@pytest.mark.parametrize("spec", ["coco", "yolo"])
def test_skip_bad_trains_past_bad_entries_with_one_warning_each(tmp_path, capsys, spec):
    from test_data_formats import make_coco, make_yolo

    if spec == "coco":
        root = make_coco(tmp_path / "ds")
        path = root / "annotations" / "instances_train2017.json"
        data = json.loads(path.read_text())
        data["annotations"][1]["bbox"] = [0, 0, 5]  # image 2's small bus: the kite stays its label
        path.write_text(json.dumps(data))
    else:
        root = make_yolo(tmp_path / "ds")
        (root / "labels" / "train" / "p2.txt").write_bytes(b"\xff\xfe not text\n")
    code, err = run_cli(["train", "--data", f"{spec}:{root}", "--skip-bad", "--epochs", "1", "--set",
                         "data.image_size=32", "--set", "model.width=0.125", "--set", "train.progress=false",
                         "--out", tmp_path / "run"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "--skip-bad skipped a bad entry" in line]
    assert len(warnings) == 1, err


def test_non_utf8_locale_reads_non_ascii_paths_and_class_names(tmp_path):
    """Under LC_ALL=C without Python's UTF-8 mode or locale coercion, file names are ASCII to
    Python: a UTF-8 config naming the folder `dätä` (classes `café`, `naïve`) could not be opened.
    The CLI runs itself again in UTF-8 mode, so it reads as under a UTF-8 locale."""
    import subprocess
    import sys

    from test_data_formats import write_image

    root = tmp_path / "dätä"
    for split in ("train", "val"):
        for cls in ("café", "naïve"):
            write_image(root / split / cls / "ü.png", w=8, h=8)
    config = tmp_path / "cfg.yaml"
    config.write_bytes(f'data:\n  spec: "folder:{root}"\n  image_size: 32\nmodel:\n  width: 0.125\n'
                       "train:\n  progress: false\n".encode("utf-8"))
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "rün"
    done = subprocess.run([sys.executable, "-m", "overfocus", "train", "--config", str(config), "--epochs", "0",
                           "--out", str(run)], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["dataset"]["classes"] == ["café", "naïve"]
