"""One small registry type shared by models, datasets, regularizers, attributions and metrics."""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Generic, Iterable, Iterator, List, TypeVar

from .errors import OverfocusError, shorten

T = TypeVar("T")


def _folded(name: str) -> str:
    """Lower case without separators, so that resnet-18, ResNet18 and resnet_18 compare equal."""
    return "".join(c for c in str(name).lower() if c.isalnum())


def close_names(name: str, known: Iterable[str], n: int = 3) -> List[str]:
    """Known names that look like `name` (a spelling variant first, then difflib's close matches).

    Example:
        >>> close_names("resnet-18", ["resnet18", "resnet50", "vgg11"])
        ['resnet18']
        >>> close_names("hitratio", ["hit", "hit_ratio", "area_ratio"])
        ['hit_ratio']
    """
    known = list(known)
    same = [k for k in known if _folded(k) == _folded(name)]
    if same:
        return same[:n]
    by_fold = {}
    for k in known:
        by_fold.setdefault(_folded(k), k)
    close = difflib.get_close_matches(_folded(name), list(by_fold), n=n, cutoff=0.6)
    return [by_fold[c] for c in close]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' when a known name is close to `name`, else ''.

    The one place every "unknown name" message gets its suggestion from (registries, config keys,
    gates, thresholds).

    Example:
        >>> did_you_mean("gradcam", ["grad_cam", "sgdrop"])
        " (did you mean 'grad_cam'?)"
        >>> did_you_mean("zzz", ["grad_cam"])
        ''
    """
    close = close_names(name, known)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


class Registry(Generic[T]):
    """Maps names to objects; `register` is a decorator, duplicates are an error.

    Example:
        >>> MODELS = Registry("model")
        >>> @MODELS.register("tiny")
        ... def tiny(): return 1
        >>> MODELS.get("tiny")()
        1
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            hint = did_you_mean(name, self._items)
            raise OverfocusError(f"unknown {self.kind} {shorten(name)}{hint}: choose one of {known}")
        return self._items[name]

    def names(self) -> list:
        return sorted(self._items)

    def registered(self) -> list:
        """Names in the order they were registered (the order a table of them is shown in)."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
