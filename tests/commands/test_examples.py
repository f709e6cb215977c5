"""The scripts of examples/ and the README's "Your own training" snippets run as written
(the examples with tiny settings; each in its own process and folder)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--epochs", "1", "--train", "48", "--test", "24", "--image-size", "32"]


def _run(args, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install \"overfocus[integrations]\")")


def _assert_analysed_and_rendered(run: Path, epochs) -> None:
    state = json.loads((run / "analysis" / "analysis.json").read_text())
    assert state["epochs_done"] == epochs
    assert (run / "figures" / "evolution_grad_cam.gif").is_file() and (run / "figures" / "gap.png").is_file()


@pytest.mark.slow
def test_own_loop_example(tmp_path):
    out = _run([str(ROOT / "examples" / "own_loop.py"), *TINY], tmp_path)
    assert "epoch 1: train" in out.stdout
    _assert_analysed_and_rendered(tmp_path / "runs" / "own_loop", [0, 1])


@pytest.mark.slow
def test_lightning_example(tmp_path):
    _needs("lightning")
    _run([str(ROOT / "examples" / "lightning_callback.py"), *TINY], tmp_path)
    run = tmp_path / "runs" / "lightning"
    _assert_analysed_and_rendered(run, [0, 1])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "val_acc" not in rows[1] and 0.0 <= rows[1]["test_acc"] <= 1.0  # the logged val_acc became test_acc


@pytest.mark.slow
def test_timm_folder_example(tmp_path):
    _needs("timm")
    help_text = _run(["-m", "overfocus", "analyze", "--help"], tmp_path).stdout
    if "--epoch-pattern" not in help_text:
        pytest.skip("`overfocus analyze FOLDER` (checkpoint folders) is not in this checkout")
    _run([str(ROOT / "examples" / "timm_folder.py"), *TINY], tmp_path)
    _assert_analysed_and_rendered(tmp_path / "runs" / "timm_folder" / "checkpoints" / "overfocus", [0, 1])


def readme_snippets(heading: str):
    """The python code blocks of one README section (up to the next `## ` heading)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_has_the_tracker_and_lightning_snippets():
    snippets = readme_snippets("Your own training")
    assert any("overfocus.Tracker(" in s for s in snippets)
    assert any("OverfocusCallback(" in s for s in snippets)


@pytest.mark.slow
@pytest.mark.parametrize("marker,run", [("overfocus.Tracker(", "runs/mine"), ("OverfocusCallback(", "runs/pl")])
def test_readme_snippet_runs_and_its_run_analyses(marker, run, tmp_path):
    if "Callback" in marker:
        _needs("lightning")
    snippet = next(s for s in readme_snippets("Your own training") if marker in s)
    (tmp_path / "snippet.py").write_text(snippet)
    _run(["snippet.py"], tmp_path)
    _run(["-m", "overfocus", "analyze", run, "--methods", "grad_cam", "--metrics", "area_ratio", "--limit", "16",
          "--device", "cpu"], tmp_path)
    state = json.loads((tmp_path / run / "analysis" / "analysis.json").read_text())
    assert state["epochs_done"] == [0, 1, 2, 3]
