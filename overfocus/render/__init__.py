"""Rendering: pure functions over what `overfocus analyze` wrote (RUN/analysis/) and metrics.jsonl.

`render_run` writes RUN/figures/: evolution videos (MP4, GIF), the generalization-gap plot, the
metric curves and filmstrips; `overfocus.render.compare.compare_runs` compares several runs;
`overfocus.render.tensorboard.export` writes TensorBoard event files. See docs/rendering.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["RenderOptions", "RenderResult", "render_run"]


@dataclass
class RenderOptions:
    """Options of `overfocus render` (defaults = the command's defaults)."""

    methods: Optional[List[str]] = None          # default: every analysed method
    side_by_side: bool = False                   # one video with the methods side by side
    fps: float = 2.0
    size: int = 640                              # frame width in pixels (even)
    alpha: float = 0.5                           # opacity of the attribution overlay
    cmap: str = "inferno"
    formats: Sequence[str] = ("mp4", "gif")
    filmstrip_epochs: Optional[List[int]] = None  # default: up to 6 evenly spread epochs
    probes: Optional[int] = None                 # first N probe images in videos (default all)
    filmstrip_images: int = 4
    tensorboard: bool = False


@dataclass
class RenderResult:
    written: List[Path] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)


def render_run(run_dir: Path | str, options: Optional[RenderOptions] = None) -> RenderResult:
    """Write RUN/figures/: evolution videos, gap plot, metric curves, filmstrips (and TensorBoard).

    Example:
        >>> res = render_run("runs/demo", RenderOptions(methods=["grad_cam"], formats=["gif"]))  # doctest: +SKIP
        >>> sorted(p.name for p in res.written)                                                 # doctest: +SKIP
        ['evolution_grad_cam.gif', 'filmstrip_grad_cam.png', 'gap.png', 'metrics.png']
    """
    from .io import clean_stale_temps, load_analysis, select_methods
    from .video import FrameStyle, check_fps, check_style

    opts = options or RenderOptions()
    if opts.tensorboard:
        from .tensorboard import require_tensorboard

        require_tensorboard()  # before the work, not after it
    analysis = load_analysis(run_dir)
    methods = select_methods(analysis.methods, opts.methods, analysis.run_dir)
    style = FrameStyle(opts.size, opts.alpha, opts.cmap)
    check_style(style)
    check_fps(opts.fps)
    groups = [methods] if opts.side_by_side else [[m] for m in methods]
    result = RenderResult()
    figures = analysis.run_dir / "figures"
    clean_stale_temps(figures)  # debris of a killed render
    for group in groups:
        result.written += _videos(analysis, group, style, opts, figures)
        result.written.append(_filmstrip(analysis, group, style, opts, figures))
    _plots(analysis, methods, figures, result)
    if opts.tensorboard:
        from .tensorboard import export

        result.written.append(export(analysis.run_dir))
    return result


def _indices(analysis, count: Optional[int], option: str = "--probes") -> List[int]:
    from ..errors import OverfocusError

    total = len(analysis.probe)
    if count is not None and count < 1:
        raise OverfocusError(f"{option} {count} must be at least 1")
    return list(range(min(total, count or total)))


def _videos(analysis, group: List[str], style, opts: RenderOptions, figures: Path) -> List[Path]:
    from .video import evolution_frames, write_video

    frames = list(evolution_frames(analysis, group, _indices(analysis, opts.probes), style))
    return write_video(frames, figures / f"evolution_{'-'.join(group)}", opts.fps, opts.formats)


def _filmstrip(analysis, group: List[str], style, opts: RenderOptions, figures: Path) -> Path:
    from .video import check_epochs, default_filmstrip_epochs, filmstrip, write_png

    epochs = (check_epochs(opts.filmstrip_epochs, analysis.epochs, analysis.run_dir) if opts.filmstrip_epochs
              else default_filmstrip_epochs(analysis.epochs))
    indices = _indices(analysis, opts.filmstrip_images, "--filmstrip-images")
    image = filmstrip(analysis, group, epochs, indices, style, panel=max(96, opts.size // 5))
    return write_png(image, figures / f"filmstrip_{'-'.join(group)}.png")


def _plots(analysis, methods: List[str], figures: Path, result: RenderResult) -> None:
    from .plots import order_metrics, plot_gap, plot_metric_curves
    from .io import method_name

    if any("train_acc" in r and "test_acc" in r for r in analysis.metrics):
        result.written.append(plot_gap(analysis.metrics, figures / "gap.png",
                                       f"{analysis.name}: train vs test accuracy per epoch"))
    else:
        result.skipped.append(f"gap.png: {analysis.run_dir / 'metrics.jsonl'} has no train/test accuracy")
    metrics = order_metrics(r["metric"] for r in analysis.summary)
    if metrics:
        shown = ", ".join(method_name(m) for m in methods)
        title = f"{analysis.name}: metrics per epoch ({shown}), mean and 95% bootstrap CI"
        result.written.append(plot_metric_curves(analysis.summary, figures / "metrics.png", metrics, title,
                                                 methods=methods))
    else:
        result.skipped.append(f"metrics.png: {analysis.run_dir / 'analysis' / 'summary.csv'} is missing or empty")
