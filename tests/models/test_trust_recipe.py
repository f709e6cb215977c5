"""A file never chooses code to run (docs/errors.md, "No code chosen by a file").

A checkpoint payload or a run.json may name its model by an import path (`module:callable`, what
a tracked run records). overfocus imports and calls it only when the user names the same path
(`--arch`, `arch=`) or passes `--trust-recipe` (`trust_recipe=True`); otherwise one line names the
path and how to allow it, exit 2, and nothing is imported or called. Registry names, `timm:NAME`
and torchvision names are data and stay automatic. Recorded arguments are type-checked first.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import overfocus
from overfocus.cli import main
from overfocus.errors import OverfocusError
from overfocus.models.build import ModelOptions
from overfocus.checkpoint.load import load_model
from overfocus.models import build_model
from overfocus.runs.rundir import RunDir

HOSTILE = ["os:abort", "sys:exit", "shutil:rmtree", "builtins:exec"]
AUDIT = ["--data", "builtin?classes=3&train=12&test=6", "--image-size", "32", "--limit", "4"]
SIDE_EFFECT_MODULE = '''
from pathlib import Path
Path({marker!r}).write_text("imported")
import torch.nn as nn

def Net(num_classes=3):
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
'''


def _payload(arch: str, **extra) -> dict:
    """A weights-only checkpoint as a tracked run writes it, its model named by an import path."""
    net = build_model("cifarnet", 3, width=0.125, small_input=True)
    return {"schema": 1, "epoch": 0, "model_name": arch, "num_classes": 3, "arch": arch,
            "model": net.state_dict(), **extra}


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def no_imports(monkeypatch):
    """Fail the test if overfocus imports any module for a model factory."""
    import types

    calls = []
    monkeypatch.setattr("overfocus.models.build.importlib", types.SimpleNamespace(
        import_module=lambda name, *a: calls.append(name)))  # loading's own handle only, not importlib's
    return calls


@pytest.mark.parametrize("arch", HOSTILE)
def test_a_checkpoint_naming_code_is_refused_before_any_import(arch, tmp_path, capsys, no_imports):
    path = tmp_path / "hostile.pt"
    torch.save(_payload(arch), path)
    code = main(["audit", str(path), *AUDIT, "--out", str(tmp_path / "audit")])
    err = capsys.readouterr().err
    assert code == 2
    _one_line(err, repr(arch), f"--arch {arch}", "--trust-recipe")
    assert no_imports == [] and not (tmp_path / "audit").exists()
    with pytest.raises(OverfocusError, match="trust_recipe=True"):  # the Python API says the same
        load_model(path, ModelOptions())


def test_os_abort_in_a_checkpoint_is_one_line_in_a_real_process(tmp_path):
    """The reported case end to end: before, the process died of SIGABRT with no output."""
    path = tmp_path / "abort.pt"
    torch.save(_payload("os:abort"), path)
    done = subprocess.run([sys.executable, "-m", "overfocus", "audit", str(path), *AUDIT, "--fail-under",
                           "accuracy=0.9", "--out", str(tmp_path / "audit")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr)
    _one_line(done.stderr, "'os:abort'")


def test_a_module_with_an_import_side_effect_is_never_imported(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker.txt"
    (tmp_path / "sidefx_net.py").write_text(SIDE_EFFECT_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "ckpt.pt"
    state = _side_effect_state(tmp_path)
    torch.save({**_payload("sidefx_net:Net"), "model": state}, path)
    assert main(["audit", str(path), *AUDIT, "--out", str(tmp_path / "a")]) == 2
    _one_line(capsys.readouterr().err, "'sidefx_net:Net'")
    assert not marker.exists() and "sidefx_net" not in sys.modules
    # the user names the same path: now it is theirs to run (the test can fail: the module is imported)
    assert main(["audit", str(path), *AUDIT, "--arch", "sidefx_net:Net", "--out", str(tmp_path / "b")]) in (0, 1)
    assert marker.exists() and (tmp_path / "b" / "report.json").is_file()
    marker.unlink()
    assert main(["audit", str(path), *AUDIT, "--trust-recipe", "--out", str(tmp_path / "c")]) in (0, 1)
    assert (tmp_path / "c" / "report.json").is_file()


def _side_effect_state(tmp_path: Path) -> dict:
    """The weights of sidefx_net:Net, made without importing the module (a copy of its layers)."""
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3))
    return net.state_dict()


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    """A one-epoch tracked run whose run.json names its model by an import path."""
    from test_tracker import small_net

    run_dir = tmp_path_factory.mktemp("trust") / "tracked"
    tracker = overfocus.Tracker(run_dir, data="builtin?classes=3&train=12&test=6", arch="test_tracker:small_net",
                                image_size=32, batch_size=6)
    tracker.start(small_net())
    tracker.finish()
    return run_dir


def _record_arch(run_dir: Path, arch: str) -> None:
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    manifest["config"]["model"]["arch"] = arch
    run.write_manifest(manifest)


@pytest.mark.parametrize("arch", HOSTILE)
def test_a_run_json_naming_code_is_refused_by_analyze_and_audit(arch, tracked_run, tmp_path, capsys, no_imports):
    import shutil

    run_dir = shutil.copytree(tracked_run, tmp_path / "run")
    _record_arch(run_dir, arch)
    before = (run_dir / "run.json").read_bytes()
    assert main(["analyze", str(run_dir), "--device", "cpu"]) == 2
    _one_line(capsys.readouterr().err, f"run.json names its model by the import path {arch!r}")
    assert main(["audit", str(run_dir), "--limit", "4", "--out", str(tmp_path / "audit")]) == 2
    _one_line(capsys.readouterr().err, repr(arch), "--trust-recipe")
    assert no_imports == [] and (run_dir / "run.json").read_bytes() == before
    assert not (run_dir / "analysis" / "analysis.json").exists()


def test_a_run_json_path_runs_when_named_or_trusted(tracked_run, tmp_path, capsys):
    import shutil

    run_dir = shutil.copytree(tracked_run, tmp_path / "run")
    assert main(["analyze", str(run_dir), "--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio",
                 "--arch", "test_tracker:other"]) == 2  # another path than the recorded one is no permission
    _one_line(capsys.readouterr().err, "'test_tracker:small_net'")
    assert main(["analyze", str(run_dir), "--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio",
                 "--arch", "test_tracker:small_net"]) == 0
    capsys.readouterr()
    assert json.loads((run_dir / "analysis" / "analysis.json").read_text())["epochs_done"] == [0]


def test_registry_timm_and_torchvision_names_stay_automatic(tmp_path, no_imports):
    path = tmp_path / "reg.pt"
    payload = _payload("x")
    payload.pop("arch")
    payload["model_name"] = "cifarnet"
    torch.save(payload, path)
    loaded = load_model(path, ModelOptions(width=0.125, small_input=True))
    assert loaded.kind == "run-checkpoint" and no_imports == []


@pytest.mark.parametrize("key, value, needle", [("num_classes", "3", "num_classes = '3'"),
                                                ("num_classes", True, "num_classes = True"),
                                                ("num_classes", 10 ** 12, "an integer from 1")])
def test_recorded_arguments_of_the_wrong_type_are_one_line(key, value, needle, tmp_path, capsys, no_imports):
    path = tmp_path / "bad.pt"
    payload = _payload("x")
    payload.pop("arch")
    payload.update({"model_name": "cifarnet", key: value})
    torch.save(payload, path)
    assert main(["audit", str(path), *AUDIT, "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys.readouterr().err, needle)


@pytest.mark.parametrize("key, value", [("width", "wide"), ("width", float("nan")), ("small_input", "false"),
                                        ("batch_norm", [1])])
def test_recorded_run_json_arguments_are_checked_before_any_build(key, value, tracked_run, tmp_path, capsys):
    import shutil

    run_dir = shutil.copytree(tracked_run, tmp_path / "run")
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    manifest["config"]["model"][key] = value
    run.manifest_path.write_text(json.dumps(manifest))  # NaN as JSON's NaN token: what a hostile file holds
    assert main(["analyze", str(run_dir), "--device", "cpu", "--trust-recipe"]) == 2
    _one_line(capsys.readouterr().err, f"run.json records {key} = ")


def test_arch_arguments_are_checked_against_the_signature_before_the_call(tmp_path, capsys):
    path = tmp_path / "w.pt"
    torch.save(build_model("cifarnet", 3, width=0.125, small_input=True).state_dict(), path)
    # math:pi is a number: nothing to call
    assert main(["audit", str(path), *AUDIT, "--arch", "math:pi", "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys.readouterr().err, "not a model factory")


def test_a_trusted_factory_that_exits_never_passes_a_gate(tmp_path, capsys):
    """sys:exit with --trust-recipe: the user allowed it, yet audit --fail-under must not exit 0."""
    path = tmp_path / "exit.pt"
    torch.save(_payload("sys:exit"), path)
    code = main(["audit", str(path), *AUDIT, "--trust-recipe", "--fail-under", "accuracy=0.9",
                 "--out", str(tmp_path / "audit")])
    assert code == 2 and not (tmp_path / "audit" / "report.json").exists()
    _one_line(capsys.readouterr().err, "SystemExit", "nothing was evaluated")


def test_system_exit_from_a_model_forward_is_exit_2_with_the_state_said(tmp_path, capsys, monkeypatch):
    """A forward that calls sys.exit (user code running inside a command) ends as exit 2, not 0."""
    path = tmp_path / "w.pt"
    torch.save(build_model("cifarnet", 3, width=0.125, small_input=True).state_dict(), path)

    def exiting_forward(self, x):
        raise SystemExit(0)

    monkeypatch.setattr("overfocus.models.zoo.CifarNet.forward", exiting_forward)
    code = main(["audit", str(path), *AUDIT, "--model", "cifarnet", "--width", "0.125", "--small-input",
                 "--fail-under", "accuracy=0.1", "--out", str(tmp_path / "audit")])
    assert code == 2 and not (tmp_path / "audit" / "report.json").exists()
    _one_line(capsys.readouterr().err, "raised SystemExit(0)", "no gate passed")


class _Shell:
    """Unpickling this calls os.system: the pickle names the global posix.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo unpickled > /dev/null",))


@pytest.mark.parametrize("obj, global_name", [({"model": _Shell()}, "posix.system"),
                                              (torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear")])
def test_a_pickle_needing_a_global_is_named_never_corrupt(obj, global_name, tmp_path, capsys):
    path = tmp_path / "p.pt"
    torch.save(obj, path)
    assert main(["audit", str(path), *AUDIT, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    _one_line(err, f"needs the Python global {global_name}", "runs code", "--trust-pickle")
    assert "corrupt" not in err


class _Escape(BaseException):
    """Neither an Exception nor SystemExit: what a hostile or careless model may raise."""


def test_any_base_exception_from_a_model_is_exit_2_never_a_traceback(tmp_path, capsys, monkeypatch):
    path = tmp_path / "w.pt"
    torch.save(build_model("cifarnet", 3, width=0.125, small_input=True).state_dict(), path)

    def escaping_forward(self, x):
        raise _Escape()

    monkeypatch.setattr("overfocus.models.zoo.CifarNet.forward", escaping_forward)
    code = main(["audit", str(path), *AUDIT, "--model", "cifarnet", "--width", "0.125", "--small-input",
                 "--fail-under", "accuracy=0.1", "--out", str(tmp_path / "audit")])
    assert code == 2 and not (tmp_path / "audit" / "report.json").exists()
    _one_line(capsys.readouterr().err, "raised _Escape", "no gate passed")
