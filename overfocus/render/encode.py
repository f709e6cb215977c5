"""Encoding finished frames into files: MP4 (H.264), GIF (one global palette), PNG, and plot formats.

Frame composition lives in `frames.py`; this module only turns RGB uint8 arrays into bytes on disk,
written atomically (a failed write leaves the previous file in place).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List, Sequence

import numpy as np

from ..errors import OverfocusError
from ..fileio import atomic_write_bytes
from .io import atomic_output

VIDEO_FORMATS = ("mp4", "gif")
PLOT_FORMATS = ("png", "pdf", "svg")
GIF_COLORS = 256
_PALETTE_SAMPLE = 200_000  # pixels drawn from all frames to build the one GIF palette


def check_fps(fps: float) -> None:
    if not fps > 0:
        raise OverfocusError(f"--fps {fps} must be positive (e.g. --fps 2)")


def parse_formats(text: str) -> List[str]:
    """Video formats of `--formats` ('mp4,gif').

    Example:
        >>> parse_formats("GIF, mp4")
        ['gif', 'mp4']
    """
    formats = [f.strip().lower() for f in str(text).split(",") if f.strip()]
    bad = [f for f in formats if f not in VIDEO_FORMATS]
    if bad or not formats:
        raise OverfocusError(f"unknown video format {bad[0] if bad else text!r}: use mp4, gif or mp4,gif")
    return list(dict.fromkeys(formats))


def check_plot_format(fmt: str) -> str:
    """The file format of static plots (`--format`): png, pdf or svg.

    Example:
        >>> check_plot_format("PDF")
        'pdf'
    """
    fmt = str(fmt).strip().lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise OverfocusError(f"unknown plot format {fmt!r}: use --format png, pdf or svg")
    return fmt


def write_video(frames: Sequence[np.ndarray], stem: Path, fps: float, formats: Sequence[str]) -> List[Path]:
    """Write the frames as `stem`.mp4 and/or `stem`.gif; return the paths written.

    Example:
        >>> import tempfile
        >>> f = [np.zeros((8, 8, 3), np.uint8)] * 2
        >>> [p.name for p in write_video(f, Path(tempfile.mkdtemp()) / "x", 2, ["gif"])]
        ['x.gif']
    """
    check_fps(fps)
    if not frames:
        raise OverfocusError("no frame to write: the analysis has no epoch")
    writers = {"mp4": write_mp4, "gif": write_gif}
    out = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        writers[fmt](frames, path, fps)
        out.append(path)
    return out


def write_mp4(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """H.264 MP4 (yuv420p, +faststart) through imageio-ffmpeg's bundled ffmpeg: plays in browsers."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise OverfocusError("MP4 needs ffmpeg: pip install imageio-ffmpeg, or use --formats gif") from None
    h, w = frames[0].shape[:2]
    if h % 2 or w % 2:
        raise OverfocusError(f"H.264 needs even frame sizes, got {w} x {h}: use an even --size")
    with atomic_output(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=2, quality=8, ffmpeg_log_level="error",
                                             output_params=["-movflags", "+faststart"])
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        writer.close()
    return path


def global_palette(frames: Sequence[np.ndarray], colors: int = GIF_COLORS):
    """One PIL palette image for all frames, from an even sample of every frame's pixels.

    A palette per frame makes the same colour jump between frames (banding that flickers); one
    palette keeps every colour where it was.

    Example:
        >>> global_palette([np.zeros((4, 4, 3), np.uint8)]).mode
        'P'
    """
    from PIL import Image

    pixels = np.concatenate([np.asarray(f, np.uint8).reshape(-1, 3) for f in frames])
    step = max(1, len(pixels) // _PALETTE_SAMPLE)
    sample = np.ascontiguousarray(pixels[::step][None])
    return Image.fromarray(sample).quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)


def write_gif(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path:
    """Looping GIF with one global palette (see `global_palette`), written atomically."""
    from PIL import Image

    palette = global_palette(frames)
    # error diffusion against the one palette: smooth ramps (maps, colour bar) without bands; with
    # the same palette everywhere, regions that do not change between frames keep their colours
    images = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)).quantize(
        palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
    buffer = io.BytesIO()
    # `palette=` makes Pillow write it once as the global table (else it adds a local table per frame)
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], optimize=False,
                   palette=bytes(palette.getpalette()),
                   duration=max(20, int(round(1000 / fps))), loop=0)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def write_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return path
