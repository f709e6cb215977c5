"""With output to a file (nohup, a cluster job, CI), train and analyze print one line per epoch."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _logged(argv, log: Path) -> None:
    """Run the CLI with stdout and stderr going to a file, as under nohup."""
    with open(log, "w") as fh:
        code = subprocess.call([sys.executable, "-m", "overfocus", *argv], cwd=ROOT, stdout=fh, stderr=fh,
                               env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"), timeout=300)
    assert code == 0, log.read_text()[-2000:]


def test_train_and_analyze_logged_to_a_file_print_a_line_per_epoch(tmp_path):
    run = tmp_path / "run"
    _logged(["train", "--data", "builtin?classes=3&train=24&test=12", "--set", "data.image_size=32",
             "--set", "model.width=0.125", "--set", "data.batch_size=12", "--epochs", "2", "--out", str(run)],
            tmp_path / "train.log")
    lines = [line for line in (tmp_path / "train.log").read_text().splitlines() if line.startswith("train: epoch")]
    assert [line.split(":")[1].strip() for line in lines] == ["epoch 0", "epoch 1", "epoch 2"]
    assert all(re.search(r"train_acc [\d.]+, test_acc [\d.]+, gap -?[\d.]+, seconds [\d.]+$", line) for line in lines)
    _logged(["analyze", str(run), "--device", "cpu", "--methods", "grad_cam"], tmp_path / "analyze.log")
    lines = [line for line in (tmp_path / "analyze.log").read_text().splitlines() if line.startswith("analyze: epoch")]
    assert len(lines) == 3 and all("accuracy" in line and "grad_cam.area_ratio" in line for line in lines)
