"""Image primitives: attribution overlay (and the public `overfocus.overlay` on tensors or arrays), boxes, legible text, colour bars (all RGB uint8).

Everything here is RGB: OpenCV is used only for drawing and resizing, never for colour
conversion, so no BGR swap can creep in.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError

Color = Tuple[int, int, int]
BOX_COLOR: Color = (0, 255, 0)
TEXT: Color = (20, 20, 20)
MUTED: Color = (90, 90, 90)
GOOD: Color = (0, 110, 40)
BAD: Color = (190, 20, 20)
BACKGROUND: Color = (255, 255, 255)

# What the colours mean: analyze stores each map divided by its own maximum, negatives set to 0
# (attribution.normalize_maps), so colours compare places within a map, not maps with each other.
NORMALISATION_NOTE = "colour: each map scaled to its own maximum (0 to 1)"
COLORBAR_LABEL = "attribution / map's max"
EMPTY_MAP = "empty map"  # written on a panel whose map is all zero (degenerate)


@functools.lru_cache(maxsize=16)
def colormap_lut(cmap: str) -> np.ndarray:
    """256 x 3 uint8 lookup table of a Matplotlib colormap (perceptual ones: inferno, viridis, magma).

    Example:
        >>> colormap_lut("inferno").shape
        (256, 3)
    """
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise OverfocusError(f"unknown colormap {cmap!r}: use a Matplotlib name such as inferno, viridis, "
                             "magma, cividis or turbo") from None
    return np.round(cm(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def resize(image: np.ndarray, width: int, height: int, smooth: bool = True) -> np.ndarray:
    """Resize with bicubic (smooth) or nearest interpolation; values stay in their dtype range."""
    import cv2

    if image.shape[1] == width and image.shape[0] == height:
        return image
    interp = cv2.INTER_CUBIC if smooth else cv2.INTER_NEAREST
    if image.dtype == np.uint8 or not smooth:
        return cv2.resize(image, (width, height), interpolation=interp)
    return cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def overlay_map(image: np.ndarray, attribution: np.ndarray, alpha: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """Blend a colour-mapped attribution map in [0, 1] over an RGB image.

    The map is resized (bilinear) to the image if the sizes differ; NaN counts as 0.

    Args:
        image: H x W x 3 uint8 RGB.
        attribution: h x w float map, expected in [0, 1] (clipped).
        alpha: opacity of the map (0 = image only, 1 = map only).
        cmap: Matplotlib colormap name.

    Example:
        >>> img = np.zeros((4, 4, 3), np.uint8)
        >>> overlay_map(img, np.ones((4, 4)), alpha=1.0)[0, 0].tolist()   # inferno's top colour
        [252, 255, 164]
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise OverfocusError(f"overlay_map needs an H x W x 3 image, got shape {tuple(image.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise OverfocusError(f"overlay opacity {alpha} is outside [0, 1]: use e.g. --alpha 0.5")
    amap = np.nan_to_num(np.asarray(attribution, np.float32)).clip(0.0, 1.0)
    amap = resize(amap, image.shape[1], image.shape[0]).clip(0.0, 1.0)
    colour = colormap_lut(cmap)[np.round(amap * 255).astype(np.int64)].astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colour
    return np.round(blended).clip(0, 255).astype(np.uint8)


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, color: Color = BOX_COLOR, thickness: int = 1,
               scale: float = 1.0) -> np.ndarray:
    """Draw (x0, y0, x1, y1) boxes (x = column, end exclusive) on a copy of an RGB image.

    Rows with negative coordinates (the -1 padding of probe/images.npz) or no area are skipped.
    `scale` maps box coordinates given in original pixels onto an upscaled image.

    Example:
        >>> out = draw_boxes(np.zeros((8, 8, 3), np.uint8), np.array([[2, 1, 6, 5]]))
        >>> out[1, 2].tolist(), out[4, 5].tolist(), out[3, 3].tolist()
        ([0, 255, 0], [0, 255, 0], [0, 0, 0])
    """
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if min(x0, y0, x1, y1) < 0 or x1 <= x0 or y1 <= y0:
            continue
        p0 = (int(round(x0 * scale)), int(round(y0 * scale)))
        p1 = (max(p0[0], int(round(x1 * scale)) - 1), max(p0[1], int(round(y1 * scale)) - 1))
        cv2.rectangle(out, p0, p1, tuple(int(c) for c in color), max(1, int(thickness)))
    return out


def attribution_panel(image: np.ndarray, attribution: np.ndarray, boxes: np.ndarray, width: int,
                      alpha: float, cmap: str) -> np.ndarray:
    """Upscale a small probe image (bicubic) and its map, overlay them and draw the boxes.

    Upscaling BEFORE drawing keeps box lines one crisp line wide instead of a blurred block.
    """
    h, w = image.shape[:2]
    height = max(1, int(round(width * h / w)))
    big = resize(image, width, height)
    panel = overlay_map(big, attribution, alpha=alpha, cmap=cmap)
    panel = draw_boxes(panel, boxes, thickness=max(1, width // 96), scale=width / w)
    if not np.nan_to_num(np.asarray(attribution, np.float32)).max() > 0:
        # an all-zero (degenerate) map would otherwise look like a uniformly low one
        lines, size = empty_map_label(width)
        for k, line in enumerate(lines):
            draw_text(panel, (3, 2 + k * int(round(size * 1.25))), line, size, (255, 255, 255), bold=True)
    return panel


def empty_map_label(width: int) -> Tuple[List[str], int]:
    """Lines and type size of the "empty map" mark on a panel `width` pixels wide: smaller type,
    then two lines where the panel is narrow, never cut ("empty ...").

    Example:
        >>> empty_map_label(128)
        (['empty map'], 14)
    """
    return fit_caption(EMPTY_MAP, max(9, min(14, width // 9)), width - 6, max_lines=2, bold=True)


# --- text ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def font(size: int, bold: bool = False):
    """DejaVu Sans (shipped with Matplotlib, so the same glyphs everywhere) at `size` pixels."""
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), int(size))


def text_width(text: str, size: int, bold: bool = False) -> int:
    return int(np.ceil(font(size, bold).getlength(text)))


def fit_text(text: str, size: int, width: int, bold: bool = False) -> str:
    """`text`, shortened with an ellipsis until it fits in `width` pixels."""
    if text_width(text, size, bold) <= width:
        return text
    while len(text) > 1 and text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text + "…"


def wrap_text(text: str, size: int, width: int, bold: bool = False) -> List[str]:
    """Split `text` at spaces into lines that fit in `width` pixels (a too-long word stays whole).

    Example:
        >>> wrap_text("a b c", 12, 10_000)
        ['a b c']
    """
    lines: List[str] = []
    for word in text.split():
        if lines and text_width(f"{lines[-1]} {word}", size, bold) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def draw_text(canvas: np.ndarray, xy: Tuple[int, int], text: str, size: int, color: Color = TEXT,
              bold: bool = False, max_width: Optional[int] = None, anchor: str = "la") -> None:
    """Draw text in place on an RGB uint8 canvas (PIL anchor: 'la' left-top, 'ma' centred-top, 'ra' right-top).

    Only the text's bounding box goes through PIL, so drawing stays cheap on large frames.
    """
    from PIL import Image, ImageDraw

    if max_width is not None:
        text = fit_text(text, size, max_width, bold)
    f = font(size, bold)
    left, top, right, bottom = f.getbbox(text, anchor=anchor)
    x0, y0 = max(0, xy[0] + int(left) - 1), max(0, xy[1] + int(top) - 1)
    x1, y1 = min(canvas.shape[1], xy[0] + int(right) + 2), min(canvas.shape[0], xy[1] + int(bottom) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    patch = Image.fromarray(np.ascontiguousarray(canvas[y0:y1, x0:x1]))
    ImageDraw.Draw(patch).text((xy[0] - x0, xy[1] - y0), text, fill=tuple(color), font=f, anchor=anchor)
    canvas[y0:y1, x0:x1] = np.asarray(patch)


def fit_caption(text: str, size: int, width: int, max_lines: int = 2, min_size: int = 7,
                bold: bool = False) -> Tuple[List[str], int]:
    """Lines and font size that show all of `text` in `width` pixels: wrap at spaces, then shrink.

    Example:
        >>> fit_caption("triangle 93%", 12, 60)
        (['triangle', '93%'], 12)
    """
    for s in range(int(size), min_size - 1, -1):
        if text_width(text, s, bold) <= width:
            return [text], s  # as written (wrapping would fold runs of spaces)
        lines = wrap_text(text, s, width, bold)
        if len(lines) <= max_lines and all(text_width(line, s, bold) <= width for line in lines):
            return lines, s
    return [fit_text(text, min_size, width, bold)], min_size  # last resort only for tiny --size values


def draw_lines(canvas: np.ndarray, x: int, y: int, lines: Sequence[Tuple[str, int, bool]],
               max_width: int, spacing: float = 1.3) -> int:
    """Draw (text, size, bold) lines downwards from (x, y); return the y below the last line."""
    for text, size, bold in lines:
        draw_text(canvas, (x, y), text, size, bold=bold, max_width=max_width)
        y += int(round(size * spacing))
    return y


def colorbar(width: int, height: int, cmap: str) -> np.ndarray:
    """A horizontal colour bar image (low values left) of the colormap."""
    lut = colormap_lut(cmap)
    idx = np.round(np.linspace(0, 255, width)).astype(np.int64)
    return np.ascontiguousarray(np.broadcast_to(lut[idx][None], (height, width, 3)))


def colorbar_legend(width: int, cmap: str, size: int = 12, label: str = COLORBAR_LABEL) -> np.ndarray:
    """A labelled colour bar image: the label, the bar, and its 0 and 1 ticks (for stills and tiles).

    Example:
        >>> colorbar_legend(200, "inferno").shape[1]
        200
    """
    line = int(round(size * 1.35))
    bar_h = max(6, size)
    out = blank(width, 2 * line + bar_h + 2)
    draw_text(out, (0, 0), label, size, MUTED, max_width=width)
    out[line:line + bar_h] = colorbar(width, bar_h, cmap)
    draw_text(out, (0, line + bar_h + 2), "0", size, MUTED)
    draw_text(out, (width - 1, line + bar_h + 2), "1", size, MUTED, anchor="ra")
    return out


def blank(width: int, height: int, color: Color = BACKGROUND) -> np.ndarray:
    return np.full((height, width, 3), color, np.uint8)


def overlay(image, attribution_map, alpha: float = 0.5, cmap: str = "inferno") -> np.ndarray:
    """An attribution map blended over its image: H x W x 3 uint8 RGB (save with PIL or cv2 in RGB order).

    Args:
        image: 3 x H x W tensor in [0, 1] (as given to `attribute`), or H x W x 3 uint8 / float array.
        attribution_map: H x W map in [0, 1] (one entry of `attribute`'s result), tensor or array.
        alpha: the map's opacity; cmap: a Matplotlib colormap name.

    Example:
        >>> import numpy as np
        >>> overlay(np.zeros((3, 8, 8)), np.ones((8, 8))).shape
        (8, 8, 3)
    """
    return overlay_map(_rgb_uint8(image), _array(attribution_map), alpha=alpha, cmap=cmap)


def _array(value) -> np.ndarray:
    """A numpy array from a tensor (any device, any float type) or an array-like; no torch import here."""
    return value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def _rgb_uint8(image) -> np.ndarray:
    """H x W x 3 uint8 from a C x H x W tensor in [0, 1] or an H x W x 3 array (uint8, or float in [0, 1])."""
    arr = _array(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise OverfocusError(f"overlay needs a 3 x H x W or H x W x 3 image, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
