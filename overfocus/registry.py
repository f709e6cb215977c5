"""One small registry type shared by models, datasets, regularizers, attributions and metrics."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
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
        self._families: Dict[str, "Family[T]"] = {}
        self._made: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def add_family(self, prefix: str, factory: Callable[[str], T], members: Callable[[], List[str]],
                   pattern: str) -> None:
        """Names `prefix:NAME` are made on first use by `factory(NAME)` (which raises
        OverfocusError for a NAME it cannot make); `members()` lists the names `overfocus list`
        shows; `pattern` is how an error message spells the family, e.g. `captum:ClassName`.

        Example:
            >>> R = Registry("thing")
            >>> R.add_family("x", lambda n: n.upper(), lambda: ["a"], "x:NAME")
            >>> R.get("x:a"), "x:a" in R, R.family_names()
            ('A', True, ['x:a'])
        """
        self._families[prefix] = Family(prefix, factory, members, pattern)

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        prefix, sep, rest = str(name).partition(":")
        if sep and prefix in self._families:
            if name not in self._made:
                self._made[name] = self._families[prefix].factory(rest)
            return self._made[name]
        known = ", ".join(sorted(self._items) + [f.pattern for f in self._families.values()])
        hint = did_you_mean(name, self._items)
        raise OverfocusError(f"unknown {self.kind} {shorten(name)}{hint}: choose one of {known}")

    def family_names(self) -> List[str]:
        """The `prefix:NAME` members of every family (what `overfocus list` shows below the names)."""
        return [f"{f.prefix}:{n}" for f in self._families.values() for n in f.members()]

    def names(self) -> list:
        return sorted(self._items)

    def registered(self) -> list:
        """Names in the order they were registered (the order a table of them is shown in)."""
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        if name in self._items or name in self._made:
            return True
        prefix, sep, _rest = str(name).partition(":")
        if not (sep and prefix in self._families):
            return False
        try:
            self.get(name)
        except OverfocusError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


@dataclass(frozen=True)
class Family(Generic[T]):
    """Registry names made on demand: `prefix:NAME` -> factory(NAME) (e.g. captum:Occlusion)."""

    prefix: str
    factory: Callable[[str], T]
    members: Callable[[], List[str]]
    pattern: str
