"""Progress output that suits where it goes: bars in a terminal or a notebook, plain lines in logs.

- stderr is a terminal: tqdm bars (per-unit lines go through `tqdm.write`, above the bars);
- Jupyter with ipywidgets: tqdm's notebook bars (`tqdm.auto`);
- anything else (a file, a pipe, nohup, a cluster job, CI, Jupyter without ipywidgets): no bar,
  and `log_line` / `epoch_line` print one plain, flushed line per unit of work, so a log shows
  progress as it happens.

Example:
    >>> sum(progress(range(3), desc="demo"))
    3
    >>> format_epoch_line(3, {"train_acc": 0.91, "test_acc": 0.8, "gap": 0.11, "seconds": 12.3})
    'epoch 3: train_acc 0.9100, test_acc 0.8000, gap 0.1100, seconds 12.3'
"""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable, Mapping, Optional

TERMINAL, NOTEBOOK, PLAIN = "terminal", "notebook", "plain"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython's ZMQ shell), False in a terminal IPython or plain Python."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:  # noqa: BLE001  (a half-initialised IPython must not break progress output)
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def has_ipywidgets() -> bool:
    """Whether tqdm's notebook bars can be drawn (they need ipywidgets)."""
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def output_mode() -> str:
    """TERMINAL, NOTEBOOK or PLAIN: how progress is shown here (see the module docstring)."""
    if in_notebook():
        return NOTEBOOK if has_ipywidgets() else PLAIN
    isatty = getattr(sys.stderr, "isatty", None)
    return TERMINAL if callable(isatty) and isatty() else PLAIN


def progress(iterable: Optional[Iterable] = None, enabled: bool = True, **kwargs: Any):
    """A progress bar where one can be drawn (terminal, notebook with ipywidgets), else a silent one.

    Example:
        >>> sum(progress(range(3), desc="demo"))
        3
    """
    mode = output_mode()
    if mode == NOTEBOOK:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, disable=not (enabled and mode != PLAIN), dynamic_ncols=True, leave=False, **kwargs)


def log_line(text: str) -> None:
    """Print one line of progress to stderr, flushed (above any bar in a terminal).

    Example:
        >>> log_line("analysed epoch 3")   # goes to stderr
    """
    if output_mode() == TERMINAL:
        from tqdm import tqdm

        tqdm.write(str(text), file=sys.stderr)
    else:
        print(str(text), file=sys.stderr, flush=True)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def format_epoch_line(epoch: int, values: Mapping[str, Any], seconds_key: str = "seconds") -> str:
    """'epoch 3: train_acc 0.9100, test_acc 0.8000, ...' (seconds with one decimal, NaN as n/a).

    Example:
        >>> format_epoch_line(0, {"area_ratio": float("nan"), "seconds": 2})
        'epoch 0: area_ratio n/a, seconds 2.0'
    """
    parts = [f"{k} {float(v):.1f}" if k == seconds_key and v is not None else f"{k} {_value(v)}"
             for k, v in values.items()]
    return f"epoch {epoch}: " + ", ".join(parts) if parts else f"epoch {epoch}"


def epoch_line(epoch: int, prefix: str = "", **values: Any) -> None:
    """Print one line for a finished epoch, e.g. from train (accuracies, gap, seconds) or analyze
    (the main metrics); `prefix` names the stage.

    Example:
        >>> epoch_line(3, prefix="train", train_acc=0.91, test_acc=0.8, gap=0.11, seconds=12.3)  # stderr
    """
    line = format_epoch_line(epoch, values)
    log_line(f"{prefix}: {line}" if prefix else line)
