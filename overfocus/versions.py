"""Versions of the software a run was made with (recorded in run.json and audit reports)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Dict

from . import __version__


def software_versions() -> Dict[str, str]:
    import torch


    versions = {"python": platform.python_version(), "torch": torch.__version__, "overfocus": __version__}
    try:
        import captum

        versions["captum"] = captum.__version__
    except ImportError:  # analysis needs it, training does not
        versions["captum"] = "missing"
    versions["git_sha"] = _git_sha()
    return versions


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
