"""`render_run`: RUN/figures/ from what `overfocus analyze` wrote (RUN/analysis/) and metrics.jsonl.

Evolution videos (MP4, GIF), the generalization-gap plot, the metric curves (PNG, PDF or SVG),
filmstrips and the explorer page (explorer.html), optionally TensorBoard event files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from ..errors import OverfocusError
from ..fileio import clean_stale_temps
from .encode import check_fps, check_plot_format, write_png, write_video
from .explore import ExploreOptions, explore
from .filmstrip import check_epochs, choose_rows, default_filmstrip_epochs, filmstrip
from .frames import EPOCH_HEADER_LINES, FrameStyle, check_panels_fit, check_style, evolution_frames, fitting_cells
from .io import load_analysis, select_methods
from .leak_plot import has_leak_columns, plot_leak
from .meta import order_metrics
from .plots import chosen_panels, default_panels, panel_metrics, plot_gap, plot_metric_curves
from .tensorboard import export, require_tensorboard

__all__ = ["RenderOptions", "RenderResult", "render_run", "run_plots"]


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
    plot_format: str = "png"                     # static plots (gap, metrics): png, pdf or svg
    filmstrip_epochs: Optional[List[int]] = None  # default: up to 6 evenly spread epochs
    probes: Optional[int] = None                 # first N probe images in videos (default all; side by side: as many as fit)
    filmstrip_images: int = 4
    filmstrip_rows: Optional[List[str]] = None   # class:NAME / id:ID per row (filmstrip.choose_rows); default the first images
    tensorboard: bool = False
    explorer: bool = True                        # figures/explorer.html (render/explore.py)
    metrics: Optional[List[str]] = None          # panels of metrics.png (default: at most 6, see plots.default_panels)


@dataclass
class RenderResult:
    written: List[Path] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)


def render_run(run_dir: Path | str, options: Optional[RenderOptions] = None) -> RenderResult:
    """Write RUN/figures/: evolution videos, gap plot, metric curves, filmstrips (and TensorBoard).

    Example:
        >>> res = render_run("runs/demo", RenderOptions(methods=["grad_cam"], formats=["gif"]))  # doctest: +SKIP
        >>> sorted(p.name for p in res.written)                                                 # doctest: +SKIP
        ['evolution_grad_cam.gif', 'explorer.html', 'filmstrip_grad_cam.png', 'gap.png', 'metrics.png']
    """
    opts = options or RenderOptions()
    if opts.tensorboard:
        require_tensorboard()  # before the work, not after it
    analysis = load_analysis(run_dir)
    methods = select_methods(analysis.methods, opts.methods, analysis.run_dir)
    style = FrameStyle(opts.size, opts.alpha, opts.cmap)
    check_style(style)
    check_fps(opts.fps)
    plot_format = check_plot_format(opts.plot_format)
    if opts.metrics:  # a wrong name is refused before anything is written
        chosen_panels(opts.metrics, panel_metrics(order_metrics(analysis.meta, (r["metric"] for r in analysis.summary))),
                      analysis.run_dir)
    if opts.side_by_side:
        check_panels_fit(len(methods), style.width)
    groups = [methods] if opts.side_by_side else [[m] for m in methods]
    result = RenderResult()
    figures = analysis.run_dir / "figures"
    clean_stale_temps(figures)  # debris of a killed render
    for group in groups:
        result.written += _videos(analysis, group, style, opts, figures)
        result.written.append(_filmstrip(analysis, group, style, opts, figures))
    plots = run_plots(analysis, methods, figures, plot_format, opts.metrics)
    result.written += plots.written
    result.skipped += plots.skipped
    if opts.explorer:
        result.written.append(explore([analysis.run_dir], ExploreOptions(methods=methods, alpha=opts.alpha,
                                                                          cmap=opts.cmap, probes=opts.probes,
                                                                          out=figures / "explorer.html")))
    if opts.tensorboard:
        result.written.append(export(analysis.run_dir))
    return result


def _indices(analysis, count: Optional[int], option: str = "--probes") -> List[int]:
    total = len(analysis.probe)
    if count is not None and count < 1:
        raise OverfocusError(f"{option} {count} must be at least 1")
    return list(range(min(total, count or total)))


def _videos(analysis, group: List[str], style, opts: RenderOptions, figures: Path) -> List[Path]:
    count = opts.probes
    if count is None and len(group) > 1:  # side by side: as many images as fit at a readable panel size
        images = analysis.probe.images
        count = fitting_cells(len(group), style.width, images.shape[1] / images.shape[2], EPOCH_HEADER_LINES)
    frames = list(evolution_frames(analysis, group, _indices(analysis, count), style))
    return write_video(frames, figures / f"evolution_{file_stem(group)}", opts.fps, opts.formats)


def _filmstrip(analysis, group: List[str], style, opts: RenderOptions, figures: Path) -> Path:
    epochs = (check_epochs(opts.filmstrip_epochs, analysis.epochs, analysis.run_dir) if opts.filmstrip_epochs
              else default_filmstrip_epochs(analysis.epochs))
    indices = (choose_rows(analysis.probe, opts.filmstrip_rows, analysis.run_dir) if opts.filmstrip_rows
               else _indices(analysis, opts.filmstrip_images, "--filmstrip-images"))
    image = filmstrip(analysis, group, epochs, indices, style, panel=max(96, opts.size // 5))
    return write_png(image, figures / f"filmstrip_{file_stem(group)}.png")


def file_stem(methods: Sequence[str]) -> str:
    """The part of a figure's file name naming its methods; `captum:X` becomes `captum_X` (a colon
    in a file name breaks on Windows, in scp and in URLs).

    Example:
        >>> file_stem(["grad_cam", "captum:Occlusion"])
        'grad_cam-captum_Occlusion'
    """
    return "-".join(m.replace(":", "_") for m in methods)


def run_plots(analysis, methods: List[str], folder: Path, fmt: str = "png",
              wanted: Optional[List[str]] = None) -> RenderResult:
    """The run's static plots into `folder`: gap.FMT (train and test accuracy with a chance line and
    95% intervals) and metrics.FMT (the `wanted` panels, by default at most six). The one place
    these figures are made: `render` and the audit report (its run history) both call it.

    Example:
        >>> from overfocus.render.io import load_analysis
        >>> res = run_plots(load_analysis("runs/demo"), ["grad_cam"], Path("out"))  # doctest: +SKIP
        >>> [p.name for p in res.written]                                            # doctest: +SKIP
        ['gap.png', 'metrics.png']
    """
    result = RenderResult()
    if any("train_acc" in r and "test_acc" in r for r in analysis.metrics):
        result.written.append(plot_gap(analysis.metrics, folder / f"gap.{fmt}",
                                       f"{analysis.name}: train vs test accuracy per epoch",
                                       chance=analysis.chance(), counts=analysis.accuracy_counts()))
    else:
        result.skipped.append(f"gap.{fmt}: {analysis.run_dir / 'metrics.jsonl'} has no train/test accuracy")
    if has_leak_columns(analysis.metrics):  # a label-masked regularizer's run: its leak diagnostic
        result.written.append(plot_leak(analysis.metrics, folder / f"leak.{fmt}",
                                        f"{analysis.name}: accuracy with and without the training mask",
                                        chance=analysis.chance()))
    available = panel_metrics(order_metrics(analysis.meta, (r["metric"] for r in analysis.summary)))
    metrics = chosen_panels(wanted, available, analysis.run_dir) if wanted else default_panels(available)
    if metrics:
        shown = ", ".join(analysis.method_title(m) for m in methods)
        title = f"{analysis.name}: metrics per epoch ({shown}), mean and 95% bootstrap CI"
        result.written.append(plot_metric_curves(analysis.summary, folder / f"metrics.{fmt}", metrics, title,
                                                 methods=methods, meta=analysis.meta, onset=analysis.onset))
    else:
        result.skipped.append(f"metrics.{fmt}: {analysis.run_dir / 'analysis' / 'summary.csv'} is missing or empty")
    return result
