"""Any Captum attribution class by name: `--methods captum:ClassName` (`overfocus list methods`).

The class is built from what the call has: its first constructor argument is the model's forward
(`forward_func`, with the target check) or the model itself (`model`), and a class that takes a
`layer` gets the attribution layer (`--layer`, default the model's Grad-CAM layer). `attribute`
receives the (normalised) images and, where the class has one, `target` (the explained class).
Everything else comes from `--method-args captum:ClassName.KEY=VALUE` (or a file's `method_args:`
section), split by name between the constructor and `attribute`; lists become tuples. One
default differs from Captum's: `internal_batch_size` (where the class has it and it is not given)
is the number of images, so each internal forward holds one batch of images, not all n_steps x B.

THE rule that turns Captum's output into a map, for every class: a B x C x h x w attribution
(input space: C = 3 colour channels; layer space: C = the layer's channels) becomes
relu(sum over C), bilinearly upsampled (align_corners=False) to the input size where h x w
differs; a B x h x w attribution is one channel. It is the channel reduction of the project's
input_x_gradient, integrated_gradients and guided_grad_cam, and for layer classes Grad-CAM's own
(relu of the channel sum): `captum:LayerGradCam` is grad_cam, `captum:IntegratedGradients` with
`n_steps=16` is integrated_gradients. Any other shape is a one-line error.
"""
from __future__ import annotations

import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

import torch

from ..errors import OverfocusError
from ..models import get_module
from ..registry import did_you_mean
from .layer import upsample
from .methods import ATTRIBUTIONS, AttributionMethod, AttributionRequest, require_feature_map

PREFIX = "captum"
FILLED = ("forward_func", "model", "layer", "inputs", "target")  # what the call itself hands over
REFUSED = ("return_convergence_delta", "additional_forward_args")  # would change what attribute returns / takes


@dataclass(frozen=True)
class CaptumArgs:
    """A Captum class's `--method-args`, split between its constructor and its `attribute`."""

    init: Dict[str, Any]
    call: Dict[str, Any]


@dataclass(frozen=True)
class CaptumClass:
    """What overfocus needs to know about one Captum attribution class (from its signatures)."""

    name: str
    cls: type
    init_params: Tuple[str, ...]
    call_params: Tuple[str, ...]
    required: Tuple[str, ...]  # arguments the user must give (neither filled in nor defaulted)
    call_takes_any: bool  # attribute(**kwargs)

    @property
    def on_layer(self) -> bool:
        return "layer" in self.init_params

    @property
    def layer_space(self) -> bool:
        """Its attribution is of the layer's activations (a LayerAttribution), not of the input."""
        from captum.attr import LayerAttribution

        return issubclass(self.cls, LayerAttribution)

    @property
    def has_target(self) -> bool:
        return "target" in self.call_params

    def describe(self) -> str:
        where = ("of the attribution layer's activations" if self.layer_space else
                 "of the input, through the attribution layer" if self.on_layer else "of the input")
        need = f"; needs --method-args {', '.join(self.required)}" if self.required else ""
        target = "" if self.has_target else " (no target class)"
        return f"Captum's {self.name} {where}, relu of the channel sum{target}{need}"


def _named(params: Mapping[str, inspect.Parameter]) -> Dict[str, inspect.Parameter]:
    return {n: p for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _describe_class(name: str, cls: type):
    """CaptumClass of a usable class, else None (a base class, or one needing other objects)."""
    if not (inspect.isclass(cls) and _is_attribution(cls) and hasattr(cls, "attribute")):
        return None
    init = _named(inspect.signature(cls.__init__).parameters)
    call_all = inspect.signature(cls.attribute).parameters
    call = _named(call_all)
    first = next(iter(init), None)
    init_required = [n for n, p in init.items() if p.default is p.empty]
    if first not in ("forward_func", "model") or "inputs" not in call or set(init_required) - set(FILLED):
        return None
    required = [n for n, p in call.items() if p.default is p.empty and n not in FILLED]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in call_all.values())
    return CaptumClass(name, cls, tuple(init), tuple(call), tuple(required), takes_any)


def _is_attribution(cls: type) -> bool:
    from captum.attr import Attribution

    return issubclass(cls, Attribution)


@functools.lru_cache(maxsize=1)
def captum_classes() -> Dict[str, CaptumClass]:
    """Every attribution class of `captum.attr` that overfocus can build, by name.

    Example:
        >>> {"IntegratedGradients", "Occlusion", "LayerGradCam"} <= set(captum_classes())
        True
        >>> captum_classes()["Occlusion"].required, captum_classes()["LayerGradCam"].on_layer
        (('sliding_window_shapes',), True)
    """
    import captum.attr

    found = {n: _describe_class(n, getattr(captum.attr, n)) for n in dir(captum.attr) if not n.startswith("_")}
    return {n: c for n, c in sorted(found.items()) if c is not None}


def _tuples(value: Any) -> Any:
    """YAML lists -> tuples, as Captum wants its shapes and strides."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def _parse(info: CaptumClass, given: Dict[str, Any]) -> CaptumArgs:
    method = f"{PREFIX}:{info.name}"
    for key in given:
        if key in FILLED or key in REFUSED:
            why = "overfocus passes it" if key in FILLED else "overfocus needs the attribution alone"
            raise OverfocusError(f"--method-args {method}.{key}: {why}; drop it")
        if key not in info.init_params and key not in info.call_params and not info.call_takes_any:
            known = [n for n in info.init_params + info.call_params if n not in FILLED + REFUSED]
            raise OverfocusError(f"--method-args {method}.{key}: {info.name} has no argument {key!r}"
                                 f"{did_you_mean(key, known)}; it takes {', '.join(known) or 'none'}")
    missing = [n for n in info.required if n not in given]
    if missing:
        raise OverfocusError(f"{method} needs {', '.join(missing)}: pass e.g. --method-args "
                             f"'{method}.{missing[0]}=...' (see Captum's {info.name}.attribute)")
    init = {k: _tuples(v) for k, v in given.items() if k in info.init_params}
    call = {k: _tuples(v) for k, v in given.items() if k not in init}
    return CaptumArgs(init, call)


def captum_map(attribution: Any, size, method: str) -> torch.Tensor:
    """THE rule: Captum's attribution -> non-negative B x H x W map (relu of the channel sum,
    bilinear upsampling to `size`).

    Example:
        >>> a = torch.tensor([[[[1.0]], [[-3.0]]], [[[2.0]], [[1.0]]]])  # B=2, C=2, 1 x 1
        >>> captum_map(a, (2, 2), "captum:X")[:, 0, 0].tolist()
        [0.0, 3.0]
    """
    if isinstance(attribution, tuple) and len(attribution) == 1:
        attribution = attribution[0]
    if not isinstance(attribution, torch.Tensor) or attribution.dim() not in (3, 4):
        shape = tuple(attribution.shape) if isinstance(attribution, torch.Tensor) else type(attribution).__name__
        raise OverfocusError(f"{method} gives an attribution of shape {shape}; a map needs B x C x H x W (the input "
                             "or a convolutional --layer)")
    channels = attribution[:, None] if attribution.dim() == 3 else attribution
    return upsample(torch.relu(channels.float().sum(dim=1)), size)


def _run(info: CaptumClass, req: AttributionRequest) -> torch.Tensor:
    method = f"{PREFIX}:{info.name}"
    args: CaptumArgs = req.args(method)
    init = {"forward_func" if "forward_func" in info.init_params else "model":
            req.forward_fn() if "forward_func" in info.init_params else req.model}
    if info.on_layer:
        require_feature_map(req, method)
        init["layer"] = get_module(req.model, req.layer)
    call = dict(args.call)
    if "internal_batch_size" in info.call_params:
        call.setdefault("internal_batch_size", max(1, len(req.images)))
    if info.has_target:
        call["target"] = req.targets
    try:
        with warnings.catch_warnings():  # Captum warns about the hooks it sets (removed afterwards)
            warnings.simplefilter("ignore")
            attribution = info.cls(**init, **args.init).attribute(req.images, **call)
    except torch.cuda.OutOfMemoryError:
        raise
    except (TypeError, ValueError, AssertionError, RuntimeError, IndexError, KeyError, AttributeError,
            NotImplementedError) as exc:  # the class does not fit this model or these arguments
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OverfocusError(f"{method} failed on this model with these arguments: {first[:300]}") from None
    return captum_map(attribution, req.size, method)


def make_captum_method(class_name: str) -> AttributionMethod:
    """The registry entry of `captum:class_name` (made on first use; `ATTRIBUTIONS.get` caches it)."""
    classes = captum_classes()
    if class_name not in classes:
        raise OverfocusError(f"unknown attribution method '{PREFIX}:{class_name}'{did_you_mean(class_name, classes)}: "
                             f"Captum's usable classes are {', '.join(classes)}")
    info = classes[class_name]

    def fn(req: AttributionRequest) -> torch.Tensor:
        return _run(info, req)

    fn.__doc__ = info.describe()
    return AttributionMethod(f"{PREFIX}:{class_name}", fn, f"{class_name} (Captum)", yields_logits=False,
                             arguments=functools.partial(_parse, info), uses_layer=info.on_layer)


def captum_names() -> List[str]:
    return list(captum_classes())


ATTRIBUTIONS.add_family(PREFIX, make_captum_method, captum_names, "captum:ClassName (any Captum attribution)")
