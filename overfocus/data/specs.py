"""Dataset spec strings (`builtin`, `tiny-imagenet:PATH`, `cub:PATH`, ...) and the dataset registry.

A spec is `KIND[:PATH][?key=value&key=value]`. Each registered kind is a factory
`factory(path, split, image_size, augment, skip_bad, options) -> torch Dataset` whose samples
follow `overfocus.data.base` (image in [0, 1], label, boxes in model-input pixels, image_id), and
which has attributes `classes` (list of names) and `has_boxes` (bool).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from ..errors import OverfocusError, shorten
from ..fileio import load_scalar
from ..registry import Registry, did_you_mean

DATASETS: Registry = Registry("dataset kind")


@dataclass
class DataSpec:
    kind: str
    path: str = ""
    options: Dict[str, Any] = field(default_factory=dict)


def parse_spec(text: str) -> DataSpec:
    """Parse a `--data` spec string.

    Example:
        >>> parse_spec("tiny-imagenet:/data/tin?limit=100")
        DataSpec(kind='tiny-imagenet', path='/data/tin', options={'limit': 100})
        >>> parse_spec("builtin?classes=4").options
        {'classes': 4}
    """
    if not text:
        raise OverfocusError("empty --data spec: use e.g. --data builtin or --data tiny-imagenet:PATH")
    text = str(text)
    head, _, query = text.partition("?")
    kind, _, path = head.partition(":")
    options: Dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq:
            raise OverfocusError(f"data option {shorten(part)} in {shorten(text)} needs key=value")
        options[key] = load_scalar(value, f"data option {shorten(key)[1:-1]}")
    if kind not in DATASETS:
        raise OverfocusError(f"unknown dataset kind {shorten(kind)} in --data {shorten(text)}"
                             f"{did_you_mean(kind, DATASETS)}: "
                             "choose one of "
                             f"{', '.join(DATASETS.names())} (e.g. --data cub:/path/to/CUB_200_2011)")
    return DataSpec(kind, path, options)


def option_int(options: Dict, key: str, default: int, minimum: int = 0, maximum: int = 10 ** 9) -> int:
    """A whole-number spec option in [minimum, maximum], with a one-line error otherwise
    (a float such as 2.5, a string, a boolean or a number out of range).

    Example:
        >>> option_int({"test": 4}, "test", 500, minimum=1)
        4
        >>> option_int({"test": 0}, "test", 500, minimum=1)
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: data option test=0: use a whole number from 1 to 1000000000
    """
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise OverfocusError(f"data option {key}={shorten(value)}: use a whole number from {minimum} to {maximum}")
    return value


def open_dataset(spec: str, split: str, image_size: int = 64, augment: Optional[object] = None,
                 skip_bad: bool = False):
    """Open one split (`train` or `test`) of the dataset named by a spec string.

    Example:
        >>> ds = open_dataset("builtin?train=8&test=4", "test", 32)
        >>> len(ds), ds[0]["image"].shape
        (4, torch.Size([3, 32, 32]))
    """
    if split not in ("train", "test"):
        raise OverfocusError(f"unknown split {split!r}: use train or test")
    parsed = parse_spec(spec)
    factory = DATASETS.get(parsed.kind)
    return factory(parsed.path, split, image_size, augment, skip_bad, dict(parsed.options))
