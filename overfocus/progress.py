"""tqdm progress bars that stay quiet when output is not a terminal (logs, CI, pipes)."""
from __future__ import annotations

import sys
from typing import Any, Iterable, Optional

from tqdm.auto import tqdm


def progress(iterable: Optional[Iterable] = None, enabled: bool = True, **kwargs: Any):
    """A tqdm bar, disabled when stderr is not a TTY or `enabled` is False.

    Example:
        >>> sum(progress(range(3), desc="demo"))
        3
    """
    show = enabled and sys.stderr.isatty()
    return tqdm(iterable, disable=not show, dynamic_ncols=True, leave=False, **kwargs)
