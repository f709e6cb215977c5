"""Frames of the evolution videos: layout, header, colour bar and cells (encoding is in `encode.py`).

A frame is a header (run, epoch, accuracies, mean area ratio, a colour bar with the normalisation
note) above a grid of cells; a cell is one probe image: its ground-truth class above one panel per
method (or per run, in `overfocus compare`) and the prediction below (once when it is shared).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import OverfocusError
from .io import Analysis, EpochMaps
from .overlay import (BAD, COLORBAR_LABEL, Color, GOOD, MUTED, NORMALISATION_NOTE, TEXT, attribution_panel, blank,
                      colorbar, colormap_lut, draw_text, fit_caption)

MIN_PANEL = 40
MIN_SIDE_PANEL = 128  # panels side by side (methods, runs) must be large enough to compare by eye
TARGET_ASPECT = 4 / 3  # frames near 4:3 suit both screens and slides


@dataclass
class FrameStyle:
    """How frames look: width in pixels (even), map opacity, colormap."""

    width: int = 640
    alpha: float = 0.5
    cmap: str = "inferno"


MIN_FRAME_WIDTH, MAX_FRAME_WIDTH = 160, 4096  # a 4K video frame; wider ones only exhaust memory


def check_style(style: FrameStyle) -> None:
    """Refuse bad options before any work: odd or tiny width, opacity outside [0, 1], unknown colormap."""
    if not MIN_FRAME_WIDTH <= style.width <= MAX_FRAME_WIDTH or style.width % 2:
        raise OverfocusError(f"--size {style.width} must be an even number of pixels from {MIN_FRAME_WIDTH} to "
                             f"{MAX_FRAME_WIDTH} (e.g. --size 640)")
    if not 0.0 <= style.alpha <= 1.0:
        raise OverfocusError(f"--alpha {style.alpha} is outside [0, 1]: use e.g. --alpha 0.5")
    colormap_lut(style.cmap)


@dataclass
class Cell:
    """One probe image in a frame: a title (ground truth), panels, one caption per panel."""

    title: str
    panels: List[np.ndarray]
    captions: List[Tuple[str, Color]] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)  # one per panel (method or run) when there are several


@dataclass
class Layout:
    """Pixel geometry of a frame grid (computed once per video so every frame has the same size)."""

    width: int
    cols: int
    rows: int
    per_cell: int
    panel_w: int
    panel_h: int
    header_h: int
    font: int
    margin: int
    gap: int = 2
    caption_lines: int = 1  # 2 when several panels share a cell: a long class name wraps instead of being cut

    @property
    def label_lines(self) -> int:
        """A line over the panels naming each one's method (or run) when a cell has several."""
        return 1 if self.per_cell > 1 else 0

    @property
    def cell_w(self) -> int:
        return self.per_cell * self.panel_w + (self.per_cell - 1) * self.gap

    @property
    def cell_h(self) -> int:
        return self.panel_h + (1 + self.label_lines + self.caption_lines) * self.line_h

    @property
    def line_h(self) -> int:
        return int(round(self.font * 1.45))

    @property
    def col_step(self) -> int:
        return self.cell_w + 2 * self.margin

    @property
    def height(self) -> int:
        h = self.header_h + self.rows * (self.cell_h + self.margin) + self.margin
        return h + (h % 2)  # H.264 in yuv420p needs even dimensions

    def origin(self, index: int) -> Tuple[int, int]:
        row, col = divmod(index, self.cols)
        left = (self.width - self.cols * self.col_step) // 2 + self.margin
        return left + col * self.col_step, self.header_h + row * (self.cell_h + self.margin)


def min_panel(per_cell: int) -> int:
    """The narrowest panel a frame may have: 128 px when panels stand side by side, else 40 px."""
    return MIN_SIDE_PANEL if per_cell > 1 else MIN_PANEL


def compute_layout(n_cells: int, per_cell: int, width: int, aspect: float = 1.0, header_lines: int = 3) -> Layout:
    """Choose the number of columns whose frame is closest to 4:3 with readable panels (at least
    `min_panel(per_cell)` pixels wide).

    Args:
        n_cells: probe images shown.
        per_cell: panels per image (methods side by side, or runs in a comparison).
        width: frame width in pixels (rounded down to even).
        aspect: probe image height / width.
        header_lines: text lines in the header.

    Example:
        >>> lay = compute_layout(16, 1, 640)
        >>> lay.cols, lay.width, lay.height % 2
        (6, 640, 0)
        >>> compute_layout(4, 2, 640).panel_w >= 128
        True
    """
    width = int(width) - int(width) % 2
    least = min_panel(per_cell)
    best = None
    for cols in range(1, n_cells + 1):
        lay = _layout_for(cols, n_cells, per_cell, width, aspect, header_lines)
        if lay.panel_w < least and best is not None:
            break
        score = abs(math.log(lay.width / lay.height / TARGET_ASPECT))
        if best is None or score < best[0]:
            best = (score, lay)
    lay = best[1]
    if lay.panel_w < least:
        need = least * per_cell + (per_cell - 1) * lay.gap + 3 * lay.margin
        raise OverfocusError(f"frame width {width} px is too small for {per_cell} panels of at least {least} px side "
                             f"by side: use --size {need + need % 2} or more" if per_cell > 1 else
                             f"frame width {width} px is too small for {n_cells} probe images: use a larger --size "
                             f"(e.g. {least * 4 + 64}) or fewer --probes")
    return lay


def check_panels_fit(per_cell: int, width: int) -> None:
    """Refuse, before any work, a frame too narrow for `per_cell` panels side by side (one line
    naming the --size that fits)."""
    compute_layout(1, per_cell, width)


def fitting_cells(per_cell: int, width: int, aspect: float = 1.0, header_lines: int = 3) -> int:
    """How many probe images a frame of `width` shows by default when panels stand side by side:
    as many as fit, with panels of at least 128 px, in a frame no taller than it is wide (at
    least one; `--probes N` asks for more, in a taller frame).

    Example:
        >>> fitting_cells(2, 640), fitting_cells(2, 1280)
        (4, 16)
    """
    width = int(width) - int(width) % 2
    least = min_panel(per_cell)
    cols = 1
    while _layout_for(cols + 1, cols + 1, per_cell, width, aspect, header_lines).panel_w >= least:
        cols += 1
    lay = _layout_for(cols, cols, per_cell, width, aspect, header_lines)
    rows = max(1, (width - lay.header_h - lay.margin) // (lay.cell_h + lay.margin))
    return cols * rows


def _layout_for(cols: int, n_cells: int, per_cell: int, width: int, aspect: float, header_lines: int) -> Layout:
    margin = max(4, width // 100)
    gap = 2
    panel_w = (width - 2 * margin * cols - margin - cols * (per_cell - 1) * gap) // (cols * per_cell)
    panel_w = max(panel_w, 1)
    font = int(min(16, max(10, round(panel_w / 8))))
    hfont = header_font(width)
    header_h = int(round(hfont * 1.35 * header_lines)) + 2 * margin
    return Layout(width, cols, math.ceil(n_cells / cols), per_cell, panel_w, max(1, round(panel_w * aspect)),
                  header_h, font, margin, gap, caption_lines=2 if per_cell > 1 else 1)


def header_font(width: int) -> int:
    return int(min(22, max(11, round(width / 48))))


def compose_frame(layout: Layout, cells: Sequence[Cell], header: Sequence[str], cmap: str) -> np.ndarray:
    """Draw the header and the cells into one RGB frame of `layout`'s size.

    Args:
        layout: geometry from compute_layout.
        cells: one per probe image, each with `layout.per_cell` panels of the layout's panel size.
        header: lines of text; the first is drawn bold (the title), the last two muted (legend, colour note); a
            line too long for the frame is drawn in smaller type, never cut.
        cmap: colormap of the colour bar drawn at the top right.

    Example:
        >>> lay = compute_layout(1, 1, 320, header_lines=1)
        >>> p = np.zeros((lay.panel_h, lay.panel_w, 3), np.uint8)
        >>> compose_frame(lay, [Cell("gt: a", [p], [("pred a 90%", GOOD)])], ["title"], "inferno").shape[1]
        320
    """
    frame = blank(layout.width, layout.height)
    text_right = _draw_colorbar(frame, layout, cmap)
    hfont, y = header_font(layout.width), layout.margin
    muted_from = max(1, len(header) - 2)  # legend and colour note: muted
    fitted = []
    for i, line in enumerate(header):
        size = hfont if i == 0 else max(10, hfont - 2)
        width = (text_right if i < 3 else layout.width - layout.margin) - layout.margin
        fitted.append((size, fit_caption(line, size, width, max_lines=1, bold=i == 0)))  # smaller, never cut
    # the body lines (one per run in a compare) share one type size, so no line looks less important
    body = [f for _, (_, f) in fitted[1:muted_from]]
    for i, (size, ((text, *_), own)) in enumerate(fitted):
        shown = min(body) if body and 0 < i < muted_from else own
        draw_text(frame, (layout.margin, y), text, shown, MUTED if i >= muted_from else TEXT, bold=i == 0)
        y += int(round(size * 1.35))
    for i, cell in enumerate(cells):
        _draw_cell(frame, layout, layout.origin(i), cell)
    return frame


def _draw_colorbar(frame: np.ndarray, layout: Layout, cmap: str) -> int:
    """Colour bar with 0 / 1 ticks at the top right; return the x where header text must stop."""
    size = max(10, header_font(layout.width) - 3)
    bar_w = max(80, layout.width // 5)
    x = layout.width - layout.margin - bar_w
    y = layout.margin
    (label, *_), fitted = fit_caption(COLORBAR_LABEL, size, bar_w, max_lines=1)
    draw_text(frame, (x, y), label, fitted, MUTED)
    y += int(size * 1.4)
    frame[y:y + size, x:x + bar_w] = colorbar(bar_w, size, cmap)
    draw_text(frame, (x, y + size + 2), "0", size, MUTED)
    draw_text(frame, (x + bar_w, y + size + 2), "1", size, MUTED, anchor="ra")
    return x - layout.margin


def _draw_cell(frame: np.ndarray, layout: Layout, origin: Tuple[int, int], cell: Cell) -> None:
    x, y = origin
    draw_text(frame, (x, y + 2), cell.title, layout.font, TEXT, bold=True, max_width=layout.cell_w)
    py = y + layout.line_h
    if layout.label_lines:  # which method (or run) each panel shows, centred over it, never cut
        for j, label in enumerate(cell.labels):
            (text, *_), size = fit_caption(label, layout.font - 1, layout.panel_w, max_lines=1)
            draw_text(frame, (x + j * (layout.panel_w + layout.gap) + layout.panel_w // 2, py + 2), text, size,
                      MUTED, anchor="ma")
        py += layout.label_lines * layout.line_h
    for j, panel in enumerate(cell.panels):
        px = x + j * (layout.panel_w + layout.gap)
        frame[py:py + layout.panel_h, px:px + layout.panel_w] = panel[:layout.panel_h, :layout.panel_w]
    shared = len(set(cell.captions)) == 1  # the same prediction under every panel: write it once
    for j, (text, color) in enumerate(cell.captions[:1] if shared else cell.captions):
        px = x + j * (layout.panel_w + layout.gap)
        width = layout.cell_w if shared else layout.panel_w
        lines, size = fit_caption(text, layout.font, width, layout.caption_lines)
        for k, line in enumerate(lines):
            draw_text(frame, (px, py + layout.panel_h + 2 + k * layout.line_h), line, size, color)


def prediction_caption(pred: int, conf: float, label: int, classes: Sequence[str]) -> Tuple[str, Color]:
    """'pred circle 93%', green when it is the ground truth, red otherwise."""
    name = classes[pred] if 0 <= pred < len(classes) else str(pred)
    return f"{name} {conf:.0%}", GOOD if int(pred) == int(label) else BAD


def probe_cells(analysis: Analysis, maps: EpochMaps, methods: Sequence[str], indices: Sequence[int],
                layout: Layout, style: FrameStyle) -> List[Cell]:
    """Cells of one epoch: per probe image, one panel per method with the same prediction below."""
    probe, cells = analysis.probe, []
    for i in indices:
        caption = prediction_caption(int(maps.pred[i]), float(maps.conf[i]), int(probe.labels[i]), probe.classes)
        panels = [attribution_panel(probe.images[i], maps.maps[m][i], probe.boxes_of(i), layout.panel_w,
                                    style.alpha, style.cmap) for m in methods]
        cells.append(Cell(f"{probe.class_name(int(probe.labels[i]))}", panels, [caption] * len(methods),
                          [analysis.method_title(m) for m in methods]))
    return cells


def fmt_pct(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"


def fmt_num(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def epoch_header(analysis: Analysis, epoch: int, methods: Sequence[str]) -> List[str]:
    """Title, accuracy line and mean area ratio line of one epoch's frame."""
    row = analysis.metrics_row(epoch) or {}
    gap = row.get("gap")
    gap_txt = "n/a" if gap is None else f"{100 * gap:+.1f} pts"
    shown = " | ".join(analysis.method_title(m) for m in methods)
    order = " (left to right)" if len(methods) > 1 else ""
    areas = ", ".join(f"{analysis.method_title(m)} {fmt_num(analysis.summary_value(epoch, m, HEADER_METRIC))}"
                      f"{empty_text(analysis.empty_maps(epoch, m))}" for m in methods)
    at_layer = any(m in analysis.meta.get("layer_methods", ()) for m in methods)
    return [f"{analysis.name} - {shown}{order}{layer_text(analysis.meta) if at_layer else ''}",
            f"epoch {epoch}   train acc {fmt_pct(row.get('train_acc'))}   test acc {fmt_pct(row.get('test_acc'))}"
            f"   gap {gap_txt}",
            f"mean {analysis.metric_info(HEADER_METRIC).title}: {areas}", legend_line(analysis.probe.has_boxes),
            NORMALISATION_NOTE]


HEADER_METRIC = "area_ratio"  # the one number per method in a frame header: how much of the image is lit
EPOCH_HEADER_LINES = 5  # title, accuracies, mean area ratio, legend, colour note (epoch_header)


def layer_text(meta) -> str:
    """' at layer blocks.11.norm1 (8 x 8 token grid)': the layer the maps explain, as analysis.json
    records it (the header shows it beside the methods listed in `layer_methods`).

    Example:
        >>> layer_text({"layer": "blocks.11.norm1", "layer_reshape": "tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8"})
        ' at layer blocks.11.norm1 (8 x 8 token grid)'
        >>> layer_text({"layer": "features"}), layer_text({})
        (' at layer features', '')
    """
    layer = (meta or {}).get("layer")
    if not layer:
        return ""
    reshape = str(meta.get("layer_reshape") or "")
    grid = reshape.rsplit("-> ", 1)[-1].replace("B x C x ", "") if "->" in reshape else ""
    return f" at layer {layer}" + (f" ({grid} token grid)" if grid else "")


def empty_text(counts: Optional[tuple]) -> str:
    """' (12/48 empty)': the degenerate maps behind a header's mean (they count as 0 in it).

    Example:
        >>> empty_text((12, 48)), empty_text(None)
        (' (12/48 empty)', '')
    """
    return "" if counts is None else f" ({counts[0]}/{counts[1]} empty)"


def legend_line(has_boxes: bool, whose: str = "prediction") -> str:
    """The frame's legend; the green box is named only where the data has boxes.

    Example:
        >>> legend_line(False)
        'above: true class; below: prediction (green right, red wrong)'
    """
    boxes = "green box: object; " if has_boxes else ""
    return f"above: true class; {boxes}below: {whose} (green right, red wrong)"


def evolution_frames(analysis: Analysis, methods: Sequence[str], indices: Sequence[int],
                     style: FrameStyle) -> Iterable[np.ndarray]:
    """One frame per analysed epoch, in epoch order."""
    aspect = analysis.probe.images.shape[1] / analysis.probe.images.shape[2]
    layout = compute_layout(len(indices), len(methods), style.width, aspect, header_lines=EPOCH_HEADER_LINES)
    for epoch in analysis.epochs:
        maps = analysis.load_epoch(epoch)
        check_methods(maps, methods, analysis)
        cells = probe_cells(analysis, maps, methods, indices, layout, style)
        yield compose_frame(layout, cells, epoch_header(analysis, epoch, methods), style.cmap)


def check_methods(maps: EpochMaps, methods: Sequence[str], analysis: Analysis) -> None:
    absent = [m for m in methods if m not in maps.maps]
    if absent:
        raise OverfocusError(f"probe maps of epoch {maps.epoch} in {analysis.run_dir} lack {absent[0]!r}: "
                             f"re-run `overfocus analyze {analysis.run_dir}`")


