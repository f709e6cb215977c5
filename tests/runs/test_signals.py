"""Signals at random moments: SIGINT, SIGTERM or SIGKILL (chosen and timed by a seed) hit train,
resume, analyze, render, compare and audit in a real process. Afterwards the state from before the
call is intact (or, for `train --force`, the documented aside copy `.NAME.replaced-*` holds the old
run, or the new run's epoch 0 is durable), and the documented next call (the same command, or
`resume` for a train with a durable epoch) gives the files of an uninterrupted call: the same
weights and metrics, the same analysis, the same figure and report files, and no temporary file of
the killed writer is left.

The default run kills each command once (seconds per command); `-m slow` runs many seeds.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import torch

from overfocus.cli import main
from overfocus.fileio import _is_temp
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--data", "builtin?classes=3&train=24&test=12", "--set", "data.image_size=32", "--set", "model.width=0.125",
        "--set", "train.progress=false", "--set", "data.batch_size=12"]
ANALYZE = ["--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio"]
RENDER = ["--formats", "gif", "--size", "320"]  # compare: two panels of at least 128 px side by side
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
MARKER = "OLD_RUN_MARKER"


@dataclass
class World:
    """The uninterrupted results every killed call is compared with, and how long calls take."""

    root: Path
    run: Path  # train, 2 epochs
    analysed: Path  # the run analysed
    rendered: List[str]  # file names render writes
    compared: List[str]  # file names compare writes
    report: Dict  # audit's report.json, without its time fields
    seconds: Dict[str, float]  # in-process duration of each reference call
    startup: float  # seconds a fresh process needs before it starts the work


def _timed(argv: List[str]) -> float:
    start = time.perf_counter()
    assert main([str(a) for a in argv]) in (0, 1), argv
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("signals")
    seconds = {"train": _timed(["train", *TINY, "--epochs", "2", "--out", root / "run"])}
    seconds["resume"] = seconds["train"] / 2
    # the same training keeping every epoch's full state: what a train killed after epoch 1 has on disk
    _timed(["train", *TINY, "--epochs", "2", "--set", "train.keep_full_every=1", "--out", root / "run_full"])
    shutil.copytree(root / "run", root / "analysed")
    seconds["analyze"] = _timed(["analyze", root / "analysed", *ANALYZE])
    shutil.copytree(root / "analysed", root / "rendered")
    seconds["render"] = _timed(["render", root / "rendered", *RENDER])
    shutil.copytree(root / "analysed", root / "analysed2")
    seconds["compare"] = _timed(["compare", root / "analysed", root / "analysed2", "--out", root / "compared",
                                 *RENDER])
    seconds["audit"] = _timed(["audit", root / "run", "--limit", "8", "--out", root / "audit"])
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, overfocus.cli, overfocus.training.engine, overfocus.analysis.runner"],
                   check=True, env=_env())
    startup = time.perf_counter() - start
    return World(root, root / "run", root / "analysed", _names(root / "rendered" / "figures"),
                 _names(root / "compared"), _report(root / "audit", root / "run"), seconds, startup)


def _env() -> Dict[str, str]:
    """The test process's environment; one thread, as conftest sets for this process, so that the
    killed process computes bit for bit what the in-process reference computed."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _names(folder: Path) -> List[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _report(folder: Path, run: Path) -> Dict:
    """report.json without its time fields, the audited run's path written as <run>."""
    report = json.loads((folder / "report.json").read_text().replace(str(run), "<run>"))
    for volatile in ("created", "seconds"):
        report.pop(volatile, None)
    return report


def _temps(folder: Path) -> List[Path]:
    return [p for p in folder.rglob(".*") if p.is_file() and _is_temp(p.name)]


def _same_training(run: Path, reference: Path) -> None:
    """Weights of every epoch and the metrics (time aside) are those of the uninterrupted run."""
    a, b = RunDir(run), RunDir(reference)
    assert a.checkpoint_epochs() == b.checkpoint_epochs() and a.latest_epoch() == b.latest_epoch()
    for epoch in b.checkpoint_epochs():
        got, want = load_checkpoint(a.checkpoint_path(epoch))["model"], load_checkpoint(b.checkpoint_path(epoch))["model"]
        assert all(torch.equal(got[k], want[k]) for k in want), f"epoch {epoch} weights differ"
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a.read_metrics()) == strip(b.read_metrics())
    assert a.read_manifest()["status"] == "complete"


def _tree(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- one scene per command: the state before, the call, the checks after the kill, the rerun ----
@dataclass
class Scene:
    prepare: Callable[[World, Path], None]
    argv: Callable[[Path], List]
    after_kill: Callable[[World, Path], None]
    recover: Callable[[World, Path], None]


def _prepare_train(w: World, tmp: Path) -> None:
    shutil.copytree(w.run, tmp / "x")
    (tmp / "x" / MARKER).write_text("the run --force replaces")


def _after_train(w: World, tmp: Path) -> None:
    x = tmp / "x"
    asides = [p for p in tmp.iterdir() if p.name.startswith(".x.replaced-")]
    old_here = (x / MARKER).is_file()
    old_aside = any((a / MARKER).is_file() for a in asides)
    new_durable = x.is_dir() and not old_here and RunDir(x).latest_epoch() is not None
    assert old_here or old_aside or new_durable, "the old run is lost and the new one has no durable epoch"
    if old_here:
        assert _tree(x) == _tree(w.run) | {MARKER: b"the run --force replaces"}  # intact, byte for byte


def _recover_train(w: World, tmp: Path) -> None:
    x = tmp / "x"
    durable_new = x.is_dir() and not (x / MARKER).exists() and RunDir(x).latest_epoch() is not None
    argv = ["resume", x] if durable_new else ["train", *TINY, "--epochs", "2", "--force", "--out", x]
    assert main([str(a) for a in argv]) == 0, argv
    _same_training(x, w.run)


def _prepare_resume(w: World, tmp: Path) -> None:
    """The run as a train killed after epoch 1 leaves it (epoch 1's full training state still there:
    only the latest epoch's is kept, so it comes from the run that keeps every epoch's)."""
    shutil.copytree(w.root / "run_full", tmp / "x")
    run = RunDir(tmp / "x")
    run.checkpoint_path(2).unlink()
    run.state_path(2).unlink()
    run.write_metrics([r for r in run.read_metrics() if r["epoch"] <= 1])
    manifest = run.read_manifest()
    manifest["epochs"] = [e for e in manifest["epochs"] if e["epoch"] <= 1]
    manifest["status"] = "running"
    run.write_manifest(manifest)
    run.set_latest(1)


def _after_resume(w: World, tmp: Path) -> None:
    run, ref = RunDir(tmp / "x"), RunDir(w.run)
    assert run.latest_epoch() in (1, 2)
    for epoch in range(run.latest_epoch() + 1):  # what was durable stays what it was
        assert run.checkpoint_path(epoch).read_bytes() == ref.checkpoint_path(epoch).read_bytes() or epoch == 2


def _recover_resume(w: World, tmp: Path) -> None:
    assert main(["resume", str(tmp / "x")]) == 0
    _same_training(tmp / "x", w.run)


def _copy_of(name: str):
    def prepare(w: World, tmp: Path) -> None:
        shutil.copytree(w.root / name, tmp / "x", ignore=shutil.ignore_patterns("figures"))
        if name == "analysed":
            shutil.copytree(w.root / "analysed2", tmp / "y")
    return prepare


def _after_analyze(w: World, tmp: Path) -> None:
    state = tmp / "x" / "analysis" / "analysis.json"
    if state.exists():
        json.loads(state.read_text())  # whole, never half written
    assert _tree(tmp / "x" / "checkpoints") == _tree(w.run / "checkpoints")


def _recover_analyze(w: World, tmp: Path) -> None:
    assert main(["analyze", str(tmp / "x"), *ANALYZE]) == 0
    got, want = tmp / "x" / "analysis", w.analysed / "analysis"
    assert (got / "summary.csv").read_text() == (want / "summary.csv").read_text()
    assert _tree(got / "records") == _tree(want / "records")


def _inputs_untouched(w: World, tmp: Path) -> None:
    assert _tree(tmp / "x" / "analysis") == _tree(w.analysed / "analysis")


def _recover_render(w: World, tmp: Path) -> None:
    assert main(["render", str(tmp / "x"), *RENDER]) == 0
    assert _names(tmp / "x" / "figures") == w.rendered


def _recover_compare(w: World, tmp: Path) -> None:
    assert main(["compare", str(tmp / "x"), str(tmp / "y"), "--out", str(tmp / "c"), *RENDER]) == 0
    assert _names(tmp / "c") == w.compared


def _after_audit(w: World, tmp: Path) -> None:
    report = tmp / "a" / "report.json"
    if report.exists():
        json.loads(report.read_text())
    assert _tree(tmp / "x") == _tree(w.run)


def _recover_audit(w: World, tmp: Path) -> None:
    assert main(["audit", str(tmp / "x"), "--limit", "8", "--out", str(tmp / "a")]) in (0, 1)
    assert _report(tmp / "a", tmp / "x") == w.report


SCENES = {
    "train": Scene(_prepare_train, lambda t: ["train", *TINY, "--epochs", "2", "--force", "--out", t / "x"],
                   _after_train, _recover_train),
    "resume": Scene(_prepare_resume, lambda t: ["resume", t / "x"], _after_resume, _recover_resume),
    "analyze": Scene(_copy_of("run"), lambda t: ["analyze", t / "x", *ANALYZE], _after_analyze, _recover_analyze),
    "render": Scene(_copy_of("analysed"), lambda t: ["render", t / "x", *RENDER], _inputs_untouched, _recover_render),
    "compare": Scene(_copy_of("analysed"), lambda t: ["compare", t / "x", t / "y", "--out", t / "c", *RENDER],
                     _inputs_untouched, _recover_compare),
    "audit": Scene(_copy_of("run"), lambda t: ["audit", t / "x", "--limit", "8", "--out", t / "a"], _after_audit,
                   _recover_audit),
}


def kill_at_random(world: World, command: str, seed: int, tmp: Path) -> None:
    """Start the command, signal it at a seeded moment of its life, check, recover, compare."""
    rng = random.Random(f"{command}-{seed}")
    sig = SIGNALS[seed % len(SIGNALS)] if seed < len(SIGNALS) else rng.choice(SIGNALS)
    # from late in the start-up to past the work's end: most kills land while the command works
    delay = rng.uniform(0.7 * world.startup, world.startup + 1.2 * world.seconds[command])
    scene = SCENES[command]
    scene.prepare(world, tmp)
    proc = subprocess.Popen([sys.executable, "-m", "overfocus", *map(str, scene.argv(tmp))], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    code = proc.wait(timeout=300)
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    if code == -signal.SIGINT:  # it landed before Python had set up its Ctrl-C handler: nothing ran
        assert err == "", err
    assert code in (0, 1, 130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL), (code, err)
    if code == 130:
        assert len(err.strip().splitlines()) <= 2 and "interrupted" in err  # the one line (after any progress line)
    scene.after_kill(world, tmp)
    scene.recover(world, tmp)
    assert _temps(tmp) == [], "a temporary file outlived the next call"


@pytest.mark.parametrize("command", list(SCENES))
def test_a_signal_at_a_random_moment_keeps_the_state_and_the_rerun_gives_the_same_files(world, command, tmp_path):
    kill_at_random(world, command, seed=list(SCENES).index(command), tmp=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("command", list(SCENES))
def test_many_signals_at_random_moments(world, command, seed, tmp_path):
    kill_at_random(world, command, seed, tmp_path)
