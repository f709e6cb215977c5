"""Shared test fixtures: every test runs on the CPU, seeded, with few threads."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

torch.set_num_threads(1)  # tiny models: threading costs more than it gives


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a run without its analysis (session fixtures are read by other tests)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("analysis"))
    return dst


def shared_data(name: str) -> Path:
    """Path of a folder of ../shared/data, or skip the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"../shared/data/{name} is not present on this machine")
    return path


def hold_in_another_process(code: str, *args: str) -> subprocess.Popen:
    """A second Python process running `code`, which takes a lock, prints "held" and waits on its
    stdin; it returns once the lock is held (`release` ends it)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    """End a `hold_in_another_process` holder (closing its stdin lets it exit, freeing the lock)."""
    proc.stdin.close()
    proc.wait(timeout=30)


def noise_class_folders(root: Path, train: int, test: int, ext: str = "png", seed: int = 0) -> Path:
    """train/ and val/ folders of classes a and b, `train` / `test` images of 24 x 24 noise each."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", test)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                cv2.imwrite(str(root / split / cls / f"{cls}_{i}.{ext}"), (rng.random((24, 24, 3)) * 255).astype(np.uint8))
    return root


def folder_with_a_bad_first_test_image(root: Path) -> Path:
    """`noise_class_folders` (6 train, 4 test a class) where val/a/a_0.png, the first test image
    (a probe pick), does not decode."""
    noise_class_folders(root, train=6, test=4)
    (root / "val" / "a" / "a_0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    return root


def heatmap_folder(root: Path) -> Path:
    """Six 40 x 40 photos (PNG), each with a bright square, and a human heatmap on that square
    (the `heatmaps:` layout)."""
    (root / "images").mkdir(parents=True)
    (root / "heatmaps").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = (rng.random((40, 40, 3)) * 80).astype(np.uint8)
        heat = np.zeros((40, 40), np.uint8)
        img[8:24, 4 * i:4 * i + 14] = 255
        heat[8:24, 4 * i:4 * i + 14] = 255
        cv2.imwrite(str(root / "images" / f"s{i}.png"), img)
        cv2.imwrite(str(root / "heatmaps" / f"s{i}.png"), heat)
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 2-epoch run on tiny builtin data (shared by tests that only read it)."""
    from overfocus.config import build_config
    from overfocus.training.engine import train

    cfg = build_config(overrides=["data.spec=builtin?classes=3&train=48&test=24", "data.image_size=32",
                                  "data.batch_size=16", "model.name=cifarnet", "model.width=0.125",
                                  "train.epochs=2", "train.progress=false"])
    return train(cfg, tmp_path_factory.mktemp("runs") / "tiny")
