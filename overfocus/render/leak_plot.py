"""The label-leak figure of a run (RUN/figures/leak.png): the leak columns of metrics.jsonl.

Two panels, the fixed train subset and the test split; per epoch the online network's accuracy
with the true label's mask, without a mask, with a wrong label's mask and with the mask of the
attribution network's predicted class (docs/methods.md, "The label leak"). A true-mask curve far
above the no-mask one is the leak: the classifier reads the class from where the mask fell.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np

from .plots import chance_line, float_or_nan, integer_epochs, new_figure, outside_legend, save_figure

# (column stem, legend label, colour, style): the four curves of each panel
CURVES = (("leak_true_mask_acc", "true label's mask (what training sees)", "#d62728", "o-"),
          ("leak_no_mask_acc", "no mask (what evaluation sees)", "#1f77b4", "s-"),
          ("leak_wrong_mask_acc", "a wrong label's mask", "#7f7f7f", "v--"),
          ("leak_pred_mask_acc", "predicted class's mask (label-free)", "#2ca02c", "^:"))
SPLITS = (("", "train subset"), ("_test", "test split"))


def has_leak_columns(rows: Sequence[Mapping]) -> bool:
    """Whether metrics.jsonl carries the leak diagnostic (a run of a label-masked regularizer)."""
    return any(r.get("leak_true_mask_acc") is not None for r in rows)


def plot_leak(rows: Sequence[Mapping], out: Path, title: str, chance: Optional[float] = None) -> Path:
    """Accuracy with and without the training mask per epoch, train subset beside test split.

    Example:
        >>> import tempfile
        >>> rows = [{"epoch": e, "leak_true_mask_acc": t, "leak_no_mask_acc": .2, "leak_wrong_mask_acc": .1,
        ...          "leak_pred_mask_acc": .2} for e, t in ((0, .1), (1, .6))]
        >>> plot_leak(rows, Path(tempfile.mkdtemp()) / "leak.pdf", "demo", chance=0.1).read_bytes()[:5]
        b'%PDF-'
    """
    rows = sorted((r for r in rows if "epoch" in r), key=lambda r: int(r["epoch"]))
    epochs = np.array([int(r["epoch"]) for r in rows])
    splits = [(s, name) for s, name in SPLITS if any(r.get("leak_true_mask_acc" + s) is not None for r in rows)]
    fig = new_figure(4.2 * len(splits) + 1.0, 4.4)
    axes: List = []
    for i, (suffix, name) in enumerate(splits):
        ax = fig.add_subplot(1, len(splits), i + 1, sharey=axes[0] if axes else None)
        for stem, label, colour, style in CURVES:
            values = np.array([float_or_nan(r.get(stem + suffix)) for r in rows])
            if np.isfinite(values).any():
                ax.plot(epochs, 100 * values, style, color=colour, label=label, markersize=4)
        chance_line(ax, chance)
        ax.set_title(name, fontsize="medium")
        ax.set_ylim(-2, 102)
        integer_epochs(ax)
        axes.append(ax)
    axes[0].set_ylabel("accuracy of the online network (%)")
    fig.suptitle(title)
    outside_legend(fig, axes, ncols=3)
    return save_figure(fig, out)
