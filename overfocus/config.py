"""Configuration: dataclasses per stage, loaded from YAML/JSON plus dotted `--set a.b=v` overrides.

Unknown keys, values of the wrong type and values out of range (`validate`) are errors
(OverfocusError), so a typo never silently falls back to a default. A float field also takes a
numeric string: YAML 1.1 reads `1e-3` (no dot) as the string "1e-3"; it must be finite (NaN and
infinity are refused for every float key, a regularizer's included). Files and `--set` values are
read through `fileio.read_yaml_file` / `load_scalar` (size, nesting, UTF-8 and alias bounds); messages quote values shortened.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .errors import OverfocusError, shorten
from .fileio import load_scalar, read_yaml_file
from .registry import did_you_mean
from .models import MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Which data, and the preprocessing applied identically by train, analyze and audit."""

    spec: str = "builtin"
    image_size: int = 64
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    batch_size: int = 64
    num_workers: int = 0
    augment: bool = False
    train_subset: int = 0  # size of the fixed eval-mode train subset; 0 = same size as test
    skip_bad: bool = False
    limit: int = 0  # use at most this many training images (0 = all); handy for smoke runs


@dataclass
class ModelConfig:
    name: str = "cifarnet"
    width: float = 1.0
    small_input: bool = True
    num_classes: int = 0  # 0 = from the dataset
    latent_layer: str = ""  # "" = the model's declared latent layer
    classifier_dropout: float = -1.0  # p of the classifier's own Dropout layers; -1 = the architecture's
    batch_norm: Optional[bool] = None  # VGG only; None = as before (BN if small_input); false = the seed's VGG


@dataclass
class OptimConfig:
    """The optimizer: adam | adamw | sgd. A model family may declare other defaults (the vision
    transformers: AdamW, weight decay 0.05, 5 warm-up epochs, cosine): `family_optim_defaults`."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"  # none | step | cosine
    step_size: int = 10
    gamma: float = 0.1
    warmup_epochs: int = 0  # linear warm-up of the learning rate over the first N epochs, then the schedule


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    amp: bool = False
    channels_last: bool = False
    progress: bool = True
    # checkpoints: epoch_NNNN.pt holds the weights only (in this dtype); the full training state
    # (optimizer, scheduler, regularizer, RNG) is kept for the latest epoch and every keep_full_every-th
    checkpoint_dtype: str = "float32"  # float32 | float16 | bfloat16 (weights files only; resume stays exact)
    keep_every: int = 1  # keep the weights of every N-th epoch (epoch 0 and the last are always kept)
    keep_full_every: int = 0  # also keep the full training state of every N-th epoch (0: the latest only)
    leak_images: int = 256  # images per split of the label-leak diagnostic (label-masked regularizers); 0 = off


@dataclass
class RegularizerConfig:
    """`name` picks the method; `params` is validated by that method's own dataclass."""

    name: str = "none"
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)


def to_dict(cfg: Any) -> Dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: Dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys and wrong types.

    Example:
        >>> from_dict(OptimConfig, {"lr": 0.1}).lr
        0.1
    """
    if not isinstance(data, dict):
        raise OverfocusError(f"config section {where or cls.__name__} must be a mapping, got {shorten(data)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            hint = did_you_mean(key, names)
            raise OverfocusError(f"unknown config key {shorten(path)}{hint}: known keys here are {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    """Check `value` against the type hint, converting only where no information is lost."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    origin = typing.get_origin(hint)
    if origin in (dict, Dict) or hint is dict:
        if not isinstance(value, dict):
            raise OverfocusError(f"config key {path!r} must be a mapping, got {shorten(value)}")
        return dict(value)
    if origin in (tuple, Tuple, list, List):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise OverfocusError(f"config key {path!r} must be a list, got {shorten(value)}")
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        items = [_coerce(inner, v, path) for v in value]
        return tuple(items) if origin in (tuple, Tuple) else items
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, path)
    return _coerce_scalar(hint, value, path)


def _coerce_scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise OverfocusError(f"config key {path!r} must be true or false, got {shorten(value)}")
    if hint is float:
        return _finite_float(value, path)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise OverfocusError(f"config key {path!r} must be {_a_type(hint)}, got {shorten(value)}")


def _finite_float(value: Any, path: str) -> float:
    """A number (or numeric string) as a finite float; NaN, infinity and non-numbers are refused."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) or abs(value) < 1e308 else math.inf
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
    if number is None:
        raise OverfocusError(f"config key {path!r} must be a number, got {shorten(value)}")
    if not math.isfinite(number):
        raise OverfocusError(f"config key {path!r} is {shorten(value)}: it must be a finite number")
    return number


def _a_type(hint: Any) -> str:
    """'an integer', 'a number', 'a string': the words a message uses for a type."""
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return words.get(hint, f"a {getattr(hint, '__name__', hint)}")


def parse_override(text: str) -> Tuple[List[str], Any]:
    """Split `a.b=value` into (["a", "b"], parsed value); values are read as YAML scalars.

    Example:
        >>> parse_override("regularizer.rho=0.01")
        (['regularizer', 'rho'], 0.01)
    """
    if "=" not in text:
        raise OverfocusError(f"--set {shorten(text)} needs the form key=value, e.g. --set optim.lr=0.01")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise OverfocusError(f"--set {shorten(text)}: the key is empty; write e.g. --set train.epochs=5")
    return key.split("."), load_scalar(raw, f"--set {shorten(key)[1:-1]}")


def apply_overrides(data: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """Apply dotted overrides to a nested dict. `regularizer.X` (X not `name`) goes to params."""
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "regularizer" and len(keys) == 2 and keys[1] not in ("name", "params"):
            keys = ["regularizer", "params", keys[1]]
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise OverfocusError(f"--set {shorten(text)}: {shorten(key)} is not a section")
        node[keys[-1]] = value
    return data


def load_file(path: str) -> Dict[str, Any]:
    """Read a YAML or JSON configuration file into a dict; a run's run.json gives its resolved config.

    A run directory is accepted too (its run.json), so `--config runs/demo` trains like that run.
    """
    p = Path(path)
    if p.is_dir() and (p / "run.json").is_file():
        p = p / "run.json"
    if not p.is_file():
        raise OverfocusError(f"config file {path} does not exist: check the path given to --config")
    data = read_yaml_file(p, "config file") or {}
    if not isinstance(data, dict):
        raise OverfocusError(f"config file {path} must hold a mapping of sections (data, model, ...)")
    if "schema" in data and isinstance(data.get("config"), dict):  # a run.json: its resolved configuration
        return data["config"]
    return data


def build_config(config_file: Optional[str] = None, overrides: Optional[List[str]] = None,
                 base: Optional[Dict[str, Any]] = None) -> RunConfig:
    """Resolve base dict + file + overrides into a validated RunConfig.

    Example:
        >>> build_config(overrides=["train.epochs=3", "regularizer.name=sgdrop"]).train.epochs
        3
    """
    data: Dict[str, Any] = dict(base or {})
    if config_file:
        data = _deep_merge(data, _without_other_params(load_file(config_file), list(overrides or [])))
    data = apply_overrides(data, list(overrides or []))
    return validate(from_dict(RunConfig, family_optim_defaults(data)))


def family_optim_defaults(data: Dict[str, Any]) -> Dict[str, Any]:
    """`data` with the optimizer defaults its model declares (`register_model(..., optim=...)`, the
    vision transformers' AdamW + warm-up) filled in for the optim keys the user did not set; none
    when the user named the optimizer (`optim.name`): their choice keeps the plain defaults.

    Example:
        >>> family_optim_defaults({"model": {"name": "vit_tiny"}})["optim"]["name"]
        'adamw'
        >>> family_optim_defaults({"model": {"name": "vit_tiny"}, "optim": {"name": "sgd"}})["optim"]
        {'name': 'sgd'}
    """
    model = data.get("model")
    optim = data.get("optim", {})
    if not isinstance(model, dict) or not isinstance(optim, dict) or "name" in optim:
        return data
    name = model.get("name", ModelConfig.name)
    defaults = MODELS.get(name).optim if isinstance(name, str) and name in MODELS else None
    if not defaults:
        return data
    return {**data, "optim": {**defaults, **optim}}


MAX_IMAGE_SIZE = 4096  # pixels per side: a 4096 x 4096 input is 200 MB as floats before any layer
MAX_BATCH_INPUT_BYTES = 8 << 30  # one batch of float32 inputs; above it the first forward cannot fit
MIN_WIDTH = 1 / 64  # the smallest base layer has 64 channels: below 1/64 a layer would get under one channel
SEED_LIMIT = 2 ** 32  # numpy and the DataLoader generators take seeds in [0, 2^32)

# (section.key, test, what it must be): checked after types, so the tests see real numbers
RULES = [
    ("data.image_size", lambda v: 8 <= v <= MAX_IMAGE_SIZE, f"from 8 to {MAX_IMAGE_SIZE} (pixels per side)"),
    ("data.batch_size", lambda v: 1 <= v <= 1 << 20, "from 1 to 1048576"),
    ("data.num_workers", lambda v: 0 <= v <= 256, "from 0 to 256"),
    ("data.train_subset", lambda v: v >= 0, "0 (same size as test) or more"),
    ("train.leak_images", lambda v: v >= 0, "0 (no leak diagnostic) or more, e.g. 256"),
    ("data.limit", lambda v: v >= 0, "0 (all images) or more"),
    ("data.mean", lambda v: len(v) == 3, "three finite numbers"),
    ("data.std", lambda v: len(v) == 3 and all(x > 0 for x in v), "three positive numbers"),
    ("model.width", lambda v: MIN_WIDTH <= v <= 8, f"from {MIN_WIDTH:g} (1/64: below it a layer has under "
     "one channel) to 8, e.g. 0.25 or 1"),
    ("model.num_classes", lambda v: 0 <= v <= 100_000, "0 (from the dataset) or a count up to 100000"),
    ("model.classifier_dropout", lambda v: v == -1 or 0 <= v < 1, "-1 (the architecture's) or in [0, 1)"),
    ("optim.lr", lambda v: v > 0, "a positive number, e.g. 0.001"),
    ("optim.momentum", lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.9"),
    ("optim.weight_decay", lambda v: v >= 0, "0 or more"),
    ("optim.step_size", lambda v: 1 <= v <= 1_000_000, "from 1 to 1000000 (epochs)"),
    ("optim.gamma", lambda v: v > 0, "a positive number, e.g. 0.1"),
    ("optim.warmup_epochs", lambda v: 0 <= v <= 1_000_000, "from 0 (no warm-up) to 1000000 (epochs)"),
    ("train.epochs", lambda v: 0 <= v <= 1_000_000, "from 0 to 1000000"),
    ("train.seed", lambda v: 0 <= v < SEED_LIMIT, f"from 0 to {SEED_LIMIT - 1} (2^32 - 1)"),
    ("train.checkpoint_dtype", lambda v: v in ("float32", "float16", "bfloat16"), "float32, float16 or bfloat16"),
    ("train.keep_every", lambda v: 1 <= v <= 1_000_000, "from 1 (the weights of every epoch) to 1000000"),
    ("train.keep_full_every", lambda v: 0 <= v <= 1_000_000, "0 (the latest epoch's full state only) to 1000000"),
]


def validate(cfg: RunConfig) -> RunConfig:
    """Refuse values out of range with one line naming the key and what it must be; return cfg.

    Floats are already finite (`_coerce_scalar`); the rules add each key's range, and the input
    batch must fit in memory (`data.batch_size` x `data.image_size`).

    Example:
        >>> validate(from_dict(RunConfig, {"optim": {"lr": -1}}))
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: config key 'optim.lr' is -1.0: it must be a positive number, e.g. 0.001 (--set optim.lr=...)
    """
    for path, ok, must in RULES:
        section, key = path.split(".")
        value = getattr(getattr(cfg, section), key)
        if not ok(value):
            shown = list(value) if isinstance(value, tuple) else value
            raise OverfocusError(f"config key {path!r} is {shorten(shown)}: it must be {must} (--set {path}=...)")
    batch_bytes = cfg.data.batch_size * 3 * cfg.data.image_size ** 2 * 4
    if batch_bytes > MAX_BATCH_INPUT_BYTES:
        raise OverfocusError(f"data.batch_size={cfg.data.batch_size} with data.image_size={cfg.data.image_size}: one "
                             f"batch of inputs alone takes {batch_bytes / 2 ** 30:.1f} GiB (limit "
                             f"{MAX_BATCH_INPUT_BYTES >> 30} GiB): use a smaller batch or image size")
    return cfg


def _without_other_params(data: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """A file's regularizer params belong to its regularizer: `--set regularizer.name=X` naming
    another one starts from X's defaults (`train --like RUN --set regularizer.name=sgdrop`)."""
    reg = data.get("regularizer")
    if not isinstance(reg, dict):
        return data
    for text in overrides:
        keys, value = parse_override(text)
        if keys == ["regularizer", "name"] and value != reg.get("name"):
            return {**data, "regularizer": {k: v for k, v in reg.items() if k != "params"}}
    return data


def _deep_merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
