"""Building a model from a name or recipe: our registry, torchvision's names, `timm:NAME`, or an
import path `package.module:Factory` (run only when the user allows it: `allow_recorded_arch`), and
the checks of recorded model arguments (`check_recipe_args`). Used by audit, `analyze FOLDER`, the
Tracker and `RunInfo.build_model`; the weights are put in by `overfocus.checkpoint`.
"""
from __future__ import annotations

import importlib
import inspect
import math
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch.nn as nn

from ..errors import OverfocusError, first_line, shorten, shorten_text
from ..registry import did_you_mean
from .registry import MODELS, build_model


@dataclass
class ModelOptions:
    """How to turn a file into a model (the audit's --model/--arch/... options)."""

    model: Optional[str] = None
    arch: Optional[str] = None
    layer: Optional[str] = None
    num_classes: Optional[int] = None
    width: float = 1.0
    small_input: bool = False
    trust_pickle: bool = False
    batch_norm: Optional[bool] = None  # model.batch_norm (None = the architecture's default)
    strip_prefix: Optional[str] = None  # key prefix to remove; None = the one that makes keys match
    trust_recipe: bool = False  # build an import path a file records (else only the one named in `arch`)


# ---- building the target model ----------------------------------------------------------------------
def build_target(opts: ModelOptions, num_classes: int) -> Tuple[nn.Module, str, Optional[str], Optional[str]]:
    """(model, description, gradcam layer, latent layer) from --model or --arch."""
    if opts.model and opts.arch:
        raise OverfocusError("pass either --model or --arch, not both")
    if opts.model and opts.model.startswith("timm:"):
        return build_timm(opts.model.removeprefix("timm:"), num_classes), f"{opts.model} ({num_classes} classes)", \
            None, None
    if opts.model:
        if opts.model not in MODELS and opts.model in torchvision_names():
            model = build_arch(f"torchvision.models:{opts.model}", num_classes)
            return model, f"torchvision {opts.model} ({num_classes} classes)", None, None
        if opts.model not in MODELS:
            raise OverfocusError(f"unknown model {opts.model!r}{did_you_mean(opts.model, MODELS)}: choose one of "
                                 f"{', '.join(MODELS.names())}, a torchvision model name, timm:NAME, or load any "
                                 "architecture with --arch package.module:Factory")
        entry = MODELS.get(opts.model)
        model = build_model(opts.model, num_classes, opts.width, opts.small_input, opts.batch_norm)
        desc = (f"{opts.model} (width {opts.width:g}, {'small input, ' if opts.small_input else ''}"
                f"{num_classes} classes)")
        return model, desc, entry.gradcam_layer, entry.latent_layer
    if opts.arch:
        return build_arch(opts.arch, num_classes), f"{opts.arch} ({num_classes} classes)", None, None
    raise OverfocusError("this file holds only weights: name the architecture with --model NAME "
                         "(see `overfocus list models`) or --arch package.module:Factory")


def torchvision_names() -> List[str]:
    """Classification models of torchvision (`--model resnet34` where our registry has no such name)."""
    try:
        import torchvision.models as tvm
    except ImportError:
        return []
    return list(tvm.list_models(module=tvm))


def build_timm(name: str, num_classes: int) -> nn.Module:
    """A timm model with random weights (`--model timm:NAME`); timm is an optional extra."""
    try:
        import timm
    except ImportError:
        raise OverfocusError(f'--model timm:{name} needs the timm package: pip install "overfocus[integrations]"') \
            from None
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise OverfocusError(f"--model timm:{name}: {first_line(exc)}; see timm.list_models()") from None


def allow_recorded_arch(recorded: Any, opts: ModelOptions, where: str) -> str:
    """The import path `where` (a checkpoint, a run.json) records as its model, if the user allowed
    it: named the same path (`--arch`, `arch=`) or passed `--trust-recipe` (`trust_recipe=True`).

    Importing a module and calling a factory runs code, so a file never chooses it alone: a
    registry name, `timm:NAME` or a torchvision name is data and needs no permission, a
    `module:callable` does. Refused before anything is imported.

    Example:
        >>> allow_recorded_arch("mynets:Net", ModelOptions(arch="mynets:Net"), "run.json")
        'mynets:Net'
        >>> allow_recorded_arch("os:abort", ModelOptions(), "checkpoint x.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        overfocus.errors.OverfocusError: checkpoint x.pt names its model by the import path 'os:abort', which runs code: ...
    """
    if not isinstance(recorded, str):
        raise OverfocusError(f"{where} records its model's import path as a {type(recorded).__name__}, "
                             "not a 'module:callable' text: the file is damaged or not from overfocus")
    if opts.trust_recipe or opts.arch == recorded:
        return recorded
    shown = shorten_text(recorded, 80)
    raise OverfocusError(f"{shorten_text(where, 100)} names its model by the import path {shown!r}, which runs code: "
                         f"allow it with --arch {shlex.quote(shown)} (arch= in Python) or --trust-recipe "
                         "(trust_recipe=True) if you trust the file")


RECIPE_CHECKS = {  # the recorded arguments of a model recipe: (test, what the value must be)
    "num_classes": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000,
                    "an integer from 1 to 1000000"),
    "width": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and 0 < v <= 64, "a number above 0 and at most 64"),
    "small_input": (lambda v: isinstance(v, bool), "true or false"),
    "batch_norm": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
}


def check_recipe_args(args: Dict[str, Any], where: str) -> None:
    """Refuse recorded model arguments of the wrong type or range before any model is built.

    Example:
        >>> check_recipe_args({"num_classes": 10, "width": 0.25}, "run.json")
        >>> check_recipe_args({"num_classes": "10"}, "run.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        overfocus.errors.OverfocusError: run.json records num_classes = '10': it must be an integer ...
    """
    for key, value in args.items():
        test, allowed = RECIPE_CHECKS[key]
        if not test(value):
            raise OverfocusError(f"{where} records {key} = {shorten(value, 60)}: it must be {allowed}; the file "
                                 f"is damaged, or pass the value yourself (--{key.replace('_', '-')})")


def build_arch(spec: str, num_classes: Optional[int]) -> nn.Module:
    """Call `package.module:Factory` (with num_classes= when it accepts it; the arguments are
    checked against its signature before the call)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise OverfocusError(f"--arch {spec!r} needs the form package.module:Factory, "
                             "e.g. --arch torchvision.models:resnet18")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise OverfocusError(f"--arch {spec!r} cannot be imported ({exc}): check the module path") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the module's own code failed (or exited) while importing
        raise OverfocusError(f"--arch {spec!r}: importing it raised {_raised(exc)}: fix that module") from None
    if not callable(factory):
        raise OverfocusError(f"--arch {spec!r} names a {type(factory).__name__}, not a model factory")
    kwargs = {"num_classes": num_classes} if num_classes and _accepts(factory, "num_classes") else {}
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as exc:
        raise OverfocusError(f"--arch {spec!r} cannot be called with {kwargs or 'no arguments'} ({exc}): name a "
                             "factory that builds the model from keyword arguments") from None
    except ValueError:  # no signature to read (some builtins): the call itself says
        pass
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise OverfocusError(f"--arch {spec!r} could not be called with {kwargs or 'no arguments'} ({exc})") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the factory's own code (SystemExit too): its failure is named, never exit 0
        raise OverfocusError(f"--arch {spec!r}: calling it raised {_raised(exc)}; nothing was evaluated") from None
    if not isinstance(model, nn.Module):
        raise OverfocusError(f"--arch {spec!r} returned a {type(model).__name__}, not an nn.Module")
    return model


def _raised(exc: BaseException) -> str:
    """'SystemExit(0)', 'ValueError: bad width' ... for a one-line message."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


