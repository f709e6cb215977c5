"""Progress output: bars in a terminal or notebook, plain lines when stderr is a file."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from overfocus.progress import epoch_line, log_line, progress
for epoch in progress(range(1, 4), desc="train"):
    sum(progress(range(50), desc=f"epoch {epoch}"))
    epoch_line(epoch, prefix="train", train_acc=0.5 + 0.1 * epoch, test_acc=0.4, gap=0.1 * epoch, seconds=1.25)
log_line("done")
"""


def test_stderr_to_a_file_gets_one_plain_line_per_epoch_and_no_bar(tmp_path):
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "w") as fh:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=fh, stdout=subprocess.DEVNULL, env=env, check=True,
                       cwd=tmp_path, timeout=120)
    text = log.read_text()
    assert text.splitlines() == [
        "train: epoch 1: train_acc 0.6000, test_acc 0.4000, gap 0.1000, seconds 1.2",
        "train: epoch 2: train_acc 0.7000, test_acc 0.4000, gap 0.2000, seconds 1.2",
        "train: epoch 3: train_acc 0.8000, test_acc 0.4000, gap 0.3000, seconds 1.2",
        "done"]
    assert "\r" not in text and "it/s" not in text


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_bar_and_lines_above_it(monkeypatch):
    from overfocus import progress as p

    fake = _Tty()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr(p, "in_notebook", lambda: False)
    assert p.output_mode() == p.TERMINAL
    bar = p.progress(range(3), desc="x", file=fake)
    assert not bar.disable
    list(bar)
    p.epoch_line(0, seconds=3)
    assert "epoch 0: seconds 3.0" in fake.getvalue()
    assert p.progress(range(3), enabled=False, file=fake).disable  # enabled=False still silences the bar


def test_notebook_uses_tqdm_auto_with_ipywidgets_and_plain_lines_without(monkeypatch, capsys):
    from overfocus import progress as p

    monkeypatch.setattr(p, "in_notebook", lambda: True)
    monkeypatch.setattr(p, "has_ipywidgets", lambda: False)
    assert p.output_mode() == p.PLAIN
    assert p.progress(range(2)).disable
    p.log_line("plain")
    assert capsys.readouterr().err == "plain\n"
    monkeypatch.setattr(p, "has_ipywidgets", lambda: True)
    assert p.output_mode() == p.NOTEBOOK
    pytest.importorskip("ipywidgets")
    from tqdm.auto import tqdm as auto_tqdm

    bar = p.progress(range(2))
    assert isinstance(bar, auto_tqdm) and not bar.disable


def test_format_epoch_line_writes_nan_as_na():
    from overfocus.progress import format_epoch_line

    assert format_epoch_line(2, {"area_ratio": float("nan"), "hit": 0.5}) == "epoch 2: area_ratio n/a, hit 0.5000"
    assert format_epoch_line(2, {}) == "epoch 2"
