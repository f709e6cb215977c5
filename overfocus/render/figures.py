"""`render_run`: RUN/figures/ from what `overfocus analyze` wrote (RUN/analysis/) and metrics.jsonl.

Evolution videos (MP4, GIF), the generalization-gap plot, the metric curves (PNG, PDF or SVG),
filmstrips and the explorer page (explorer.html), optionally TensorBoard event files.
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
    plot_format: str = "png"                     # static plots (gap, metrics): png, pdf or svg
    filmstrip_epochs: Optional[List[int]] = None  # default: up to 6 evenly spread epochs
    probes: Optional[int] = None                 # first N probe images in videos (default all)
    filmstrip_images: int = 4
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
    from .encode import check_fps, check_plot_format
    from .frames import FrameStyle, check_style
    from .io import clean_stale_temps, load_analysis, select_methods

    opts = options or RenderOptions()
    if opts.tensorboard:
        from .tensorboard import require_tensorboard

        require_tensorboard()  # before the work, not after it
    analysis = load_analysis(run_dir)
    methods = select_methods(analysis.methods, opts.methods, analysis.run_dir)
    style = FrameStyle(opts.size, opts.alpha, opts.cmap)
    check_style(style)
    check_fps(opts.fps)
    plot_format = check_plot_format(opts.plot_format)
    if opts.metrics:  # a wrong name is refused before anything is written
        from .meta import order_metrics
        from .plots import chosen_panels, panel_metrics

        chosen_panels(opts.metrics, panel_metrics(order_metrics(analysis.meta, (r["metric"] for r in analysis.summary))),
                      analysis.run_dir)
    groups = [methods] if opts.side_by_side else [[m] for m in methods]
    result = RenderResult()
    figures = analysis.run_dir / "figures"
    clean_stale_temps(figures)  # debris of a killed render
    for group in groups:
        result.written += _videos(analysis, group, style, opts, figures)
        result.written.append(_filmstrip(analysis, group, style, opts, figures))
    _plots(analysis, methods, figures, result, plot_format, opts.metrics)
    if opts.explorer:
        from .explore import ExploreOptions, explore

        result.written.append(explore([analysis.run_dir], ExploreOptions(methods=methods, alpha=opts.alpha,
                                                                          cmap=opts.cmap, probes=opts.probes,
                                                                          out=figures / "explorer.html")))
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
    from .encode import write_video
    from .frames import evolution_frames

    frames = list(evolution_frames(analysis, group, _indices(analysis, opts.probes), style))
    return write_video(frames, figures / f"evolution_{file_stem(group)}", opts.fps, opts.formats)


def _filmstrip(analysis, group: List[str], style, opts: RenderOptions, figures: Path) -> Path:
    from .encode import write_png
    from .filmstrip import check_epochs, default_filmstrip_epochs, filmstrip

    epochs = (check_epochs(opts.filmstrip_epochs, analysis.epochs, analysis.run_dir) if opts.filmstrip_epochs
              else default_filmstrip_epochs(analysis.epochs))
    indices = _indices(analysis, opts.filmstrip_images, "--filmstrip-images")
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


def accuracy_sample(analysis) -> Optional[int]:
    """How many images each accuracy of metrics.jsonl was measured on: the test split analysed whole
    (the train accuracy uses a fixed subset of the same size); None when that is not known."""
    meta = analysis.meta
    subset = ((analysis.manifest.get("config") or {}).get("data") or {}).get("train_subset") or 0
    if meta.get("split", "test") != "test" or meta.get("limit") or subset:
        return None
    n = [r.get("n") for r in analysis.summary if r["metric"] == "correct" and r["method"] == "model"]
    return int(n[-1]) if n and n[-1] else None


def _plots(analysis, methods: List[str], figures: Path, result: RenderResult, fmt: str = "png",
           wanted: Optional[List[str]] = None) -> None:
    from .meta import order_metrics
    from .plots import chosen_panels, default_panels, panel_metrics, plot_gap, plot_metric_curves

    if any("train_acc" in r and "test_acc" in r for r in analysis.metrics):
        result.written.append(plot_gap(analysis.metrics, figures / f"gap.{fmt}",
                                       f"{analysis.name}: train vs test accuracy per epoch",
                                       chance=1.0 / len(analysis.probe.classes) if analysis.probe.classes else None,
                                       n_images=accuracy_sample(analysis)))
    else:
        result.skipped.append(f"gap.png: {analysis.run_dir / 'metrics.jsonl'} has no train/test accuracy")
    from .leak_plot import has_leak_columns, plot_leak

    if has_leak_columns(analysis.metrics):  # a label-masked regularizer's run: its leak diagnostic
        result.written.append(plot_leak(analysis.metrics, figures / f"leak.{fmt}",
                                        f"{analysis.name}: accuracy with and without the training mask",
                                        chance=1.0 / len(analysis.probe.classes) if analysis.probe.classes else None))
    available = panel_metrics(order_metrics(analysis.meta, (r["metric"] for r in analysis.summary)))
    metrics = chosen_panels(wanted, available, analysis.run_dir) if wanted else default_panels(available)
    if metrics:
        shown = ", ".join(analysis.method_title(m) for m in methods)
        title = f"{analysis.name}: metrics per epoch ({shown}), mean and 95% bootstrap CI"
        result.written.append(plot_metric_curves(analysis.summary, figures / f"metrics.{fmt}", metrics, title,
                                                 methods=methods, meta=analysis.meta, onset=analysis.onset))
    else:
        result.skipped.append(f"metrics.png: {analysis.run_dir / 'analysis' / 'summary.csv'} is missing or empty")
