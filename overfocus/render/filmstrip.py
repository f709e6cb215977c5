"""Filmstrips: one still image of the probe set over training (rows: images; columns: epochs).

With several methods, each epoch column holds one panel per method side by side (titled once at
the top) and the prediction, which does not depend on the method, is written once under them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np

from ..errors import OverfocusError
from ..registry import did_you_mean
from .frames import FrameStyle, check_methods, prediction_caption
from .io import Analysis, EpochMaps
from .overlay import (NORMALISATION_NOTE, TEXT, attribution_panel, blank, colorbar_legend, draw_lines, draw_text,
                      fit_caption, text_width, wrap_text)



def film_legend(has_boxes: bool) -> str:
    """The filmstrip's legend; the green box is named only where the data has boxes."""
    return ("green box: true object; " if has_boxes else "") + "below: prediction (green right, red wrong)"


CLASS_PREFIX, ID_PREFIX = "class:", "id:"


def choose_rows(probe, wanted: Sequence[str], where) -> List[int]:
    """The probe images of `render --filmstrip-rows`: `class:NAME` takes the next probe image of that
    class (give it twice for two), `id:ID` (or a bare ID) that image; in the order given.

    Example:
        >>> from types import SimpleNamespace
        >>> probe = SimpleNamespace(image_ids=["a0", "b0", "a1"], labels=[0, 1, 0], classes=["cat", "dog"])
        >>> choose_rows(probe, ["class:cat", "class:dog", "class:cat"], "run"), choose_rows(probe, ["id:b0"], "run")
        ([0, 1, 2], [1])
    """
    chosen: List[int] = []
    for item in wanted:
        if item.startswith(CLASS_PREFIX):
            name = item[len(CLASS_PREFIX):]
            if name not in probe.classes:
                raise OverfocusError(f"--filmstrip-rows {item!r}: no class {name!r} in {where}"
                                     f"{did_you_mean(name, probe.classes)}; the classes: {', '.join(probe.classes)}")
            index = probe.classes.index(name)
            free = [i for i, label in enumerate(probe.labels) if int(label) == index and i not in chosen]
            if not free:
                have = sum(int(label) == index for label in probe.labels)
                raise OverfocusError(f"--filmstrip-rows {item!r}: the probe set of {where} has {have} image(s) of "
                                     f"class {name!r}, all already chosen: ask for it at most {have} time(s)")
            chosen.append(free[0])
        else:
            image_id = item[len(ID_PREFIX):] if item.startswith(ID_PREFIX) else item
            if image_id not in probe.image_ids:
                raise OverfocusError(f"--filmstrip-rows {item!r}: no probe image {image_id!r} in {where}"
                                     f"{did_you_mean(image_id, probe.image_ids)}; use class:NAME or one of "
                                     f"{', '.join(probe.image_ids[:4])}, ...")
            chosen.append(probe.image_ids.index(image_id))
    return chosen


def default_filmstrip_epochs(epochs: Sequence[int], count: int = 6) -> List[int]:
    """Up to `count` analysed epochs spread evenly, always the first and the last.

    Example:
        >>> default_filmstrip_epochs(list(range(11)), 4)
        [0, 3, 7, 10]
    """
    idx = np.unique(np.round(np.linspace(0, len(epochs) - 1, min(count, len(epochs)))).astype(int))
    return [epochs[i] for i in idx]


def check_epochs(requested: Sequence[int], analysed: Sequence[int], where: Path) -> List[int]:
    missing = [e for e in requested if e not in analysed]
    if missing:
        raise OverfocusError(f"epoch {missing[0]} was not analysed in {where}: choose from "
                             f"{', '.join(map(str, analysed))}")
    return list(requested)


@dataclass
class FilmGeometry:
    """Pixel geometry: a label column, then per epoch a group of one panel per method.

    Example:
        >>> g = FilmGeometry(panel=100, panel_h=100, columns=3, per_group=2)
        >>> g.group_w, g.column_x(1) - g.column_x(0)
        (204, 216)
    """

    panel: int
    panel_h: int
    columns: int
    per_group: int = 1
    margin: int = 10
    gap: int = 4
    label_w: int = 0

    @property
    def font(self) -> int:
        return int(min(16, max(11, self.panel // 9)))

    @property
    def line(self) -> int:
        return int(round(self.font * 1.45))

    @property
    def group_w(self) -> int:
        return self.per_group * self.panel + (self.per_group - 1) * self.gap

    @property
    def group_gap(self) -> int:
        return 3 * self.gap if self.per_group > 1 else self.gap  # groups of panels must read as groups

    @property
    def width(self) -> int:
        return 2 * self.margin + self.label_w + self.columns * (self.group_w + self.group_gap)

    @property
    def row_h(self) -> int:
        return self.panel_h + self.line + self.gap

    def column_x(self, c: int) -> int:
        return self.margin + self.label_w + c * (self.group_w + self.group_gap)


def _label_width(analysis: Analysis, indices: Sequence[int], font: int, panel: int) -> int:
    probe = analysis.probe
    texts = [probe.image_ids[i] for i in indices] + [f"gt: {probe.class_name(int(probe.labels[i]))}" for i in indices]
    return min(max(panel, max(text_width(t, font, bold=True) for t in texts) + 12), 2 * panel)


def filmstrip(analysis: Analysis, methods: Sequence[str], epochs: Sequence[int], indices: Sequence[int],
              style: FrameStyle, panel: int = 128) -> np.ndarray:
    """A still image: one row per probe image, one column per epoch (one panel per method inside it).

    Example:
        >>> img = filmstrip(load_analysis("runs/demo"), ["grad_cam"], [0, 5], [0, 1], FrameStyle())  # doctest: +SKIP
    """
    images = analysis.probe.images
    g = FilmGeometry(panel, int(round(panel * images.shape[1] / images.shape[2])), len(epochs), len(methods))
    g.label_w = _label_width(analysis, indices, g.font, panel)
    text_w = g.width - 2 * g.margin
    titles = ", ".join(analysis.method_title(m) for m in methods)
    lines = [(t, g.font + 2, True) for t in wrap_text(f"{analysis.name} - {titles}: attribution over training",
                                                       g.font + 2, text_w, bold=True)]
    for text in (film_legend(analysis.probe.has_boxes), NORMALISATION_NOTE):
        lines += [(t, g.font - 1, False) for t in wrap_text(text, g.font - 1, text_w)]
    legend = colorbar_legend(min(240, text_w), style.cmap, g.font - 1)
    bar_y = int(round(1.3 * sum(size for _, size, _ in lines))) + g.margin + 2
    top = bar_y + legend.shape[0] + 8
    heads = 2 if len(methods) > 1 else 1
    body = top + heads * g.line + 4
    canvas = blank(g.width, body + len(indices) * g.row_h + g.margin)
    draw_lines(canvas, g.margin, g.margin, lines, text_w)
    canvas[bar_y:bar_y + legend.shape[0], g.margin:g.margin + legend.shape[1]] = legend
    _column_heads(canvas, analysis, methods, epochs, top, g)
    loaded = {e: analysis.load_epoch(e) for e in epochs}
    for r, i in enumerate(indices):
        _filmstrip_row(canvas, analysis, [loaded[e] for e in epochs], methods, i, body + r * g.row_h, g, style)
    return canvas


def _column_heads(canvas: np.ndarray, analysis: Analysis, methods: Sequence[str], epochs: Sequence[int], y: int,
                  g: FilmGeometry) -> None:
    """'epoch N' over each group and, with several methods, each method's title over its panel."""
    for c, epoch in enumerate(epochs):
        x = g.column_x(c)
        draw_text(canvas, (x + g.group_w // 2, y), f"epoch {epoch}", g.font, TEXT, True, anchor="ma")
        if len(methods) > 1:
            for j, method in enumerate(methods):
                (text, *_), size = fit_caption(analysis.method_title(method), g.font - 1, g.panel, max_lines=1)
                draw_text(canvas, (x + j * (g.panel + g.gap) + g.panel // 2, y + g.line), text, size, TEXT,
                          anchor="ma")


def _filmstrip_row(canvas: np.ndarray, analysis: Analysis, loaded: Sequence[EpochMaps], methods: Sequence[str],
                   i: int, y: int, g: FilmGeometry, style: FrameStyle) -> None:
    probe = analysis.probe
    label_lines = [(probe.image_ids[i], g.font, True), (f"gt: {probe.class_name(int(probe.labels[i]))}", g.font, False)]
    if len(methods) == 1:
        label_lines.append((analysis.method_title(methods[0]), g.font, False))
    draw_lines(canvas, g.margin, y + 4, label_lines, g.label_w - 8)
    for c, maps in enumerate(loaded):
        check_methods(maps, methods, analysis)
        x = g.column_x(c)
        for j, method in enumerate(methods):
            img = attribution_panel(probe.images[i], maps.maps[method][i], probe.boxes_of(i), g.panel, style.alpha,
                                    style.cmap)
            px = x + j * (g.panel + g.gap)
            canvas[y:y + img.shape[0], px:px + g.panel] = img
        text, color = prediction_caption(int(maps.pred[i]), float(maps.conf[i]), int(probe.labels[i]), probe.classes)
        (line, *_), size = fit_caption(text, g.font, g.group_w, max_lines=1)
        draw_text(canvas, (x, y + g.panel_h + 2), line, size, color)
