"""Shared test fixtures: every test runs on the CPU, seeded, with few threads."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

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
