"""Rendering: pure functions over what `overfocus analyze` wrote (RUN/analysis/) and metrics.jsonl.

Modules: figures (`render_run`: RUN/figures/), io (read the analysis), meta (titles, units, ranges
from analysis.json), overlay (image primitives and the public `overfocus.overlay`), frames (video
frames), filmstrip, encode (MP4/GIF/PNG writers), plots, compare (`compare_runs`), report (audit
HTML), explore (the explorer page), tensorboard and wandb (export and live writers). See
docs/rendering.md.
"""
from .figures import RenderOptions, RenderResult, render_run

__all__ = ["RenderOptions", "RenderResult", "render_run"]
