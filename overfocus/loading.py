"""Safe loading of models from files of unknown origin (for `overfocus audit`).

Accepted files:
- a checkpoint of an overfocus run (`{"schema", "model_name", "num_classes", "model": state_dict}`);
- a plain state_dict (torchvision style), also wrapped as `{"state_dict": ...}` or `{"model": ...}`,
  loaded into a registered model (`--model`) or a factory (`--arch package.module:Factory`);
- a TorchScript archive (`torch.jit.save`), recognised by the `code/` folder inside its zip;
- a pickled `nn.Module` (`torch.save(model)`), only when the user passes `trust_pickle=True`,
  since unpickling can run arbitrary code.

Everything except TorchScript and trusted pickles goes through `overfocus.rundir.load_checkpoint`
(`torch.load(weights_only=True)`). TorchScript modules do not support forward hooks, so attribution
needs an eager copy: pass `--model`/`--arch` and the archive's weights are loaded into it.

The same reading serves `overfocus analyze FOLDER` (one file per epoch, see
`overfocus.checkpoints`): `read_weights` turns any accepted file (state_dict, wrapper, Lightning
`.ckpt`, safetensors, TorchScript) into a state_dict, and `check_and_load` strips the prefix
(`module.`, `_orig_mod.`, `model.`) that makes its keys those of the model.
"""
from __future__ import annotations

import importlib
import inspect
import math
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn

from .errors import OverfocusError, option, shorten, shorten_text
from .registry import did_you_mean
from .rundir import is_torchscript, load_checkpoint, sha256_file  # noqa: F401 (is_torchscript re-exported)

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers: always stripped
FIT_PREFIXES = ("module.", "_orig_mod.", "model.")  # stripped where that makes the keys the model's


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


@dataclass
class LoadedModel:
    """A model ready for evaluation and what is known about where it came from."""

    model: nn.Module
    kind: str  # run-checkpoint | state-dict | torchscript | pickled-module
    path: Path
    sha256: str
    description: str
    num_classes: Optional[int] = None
    layer: Optional[str] = None  # attribution layer; None = pick automatically
    latent_layer: Optional[str] = None
    hookable: bool = True  # False for TorchScript: no hooks, hence no attribution or coverage
    epoch: Optional[int] = None
    notes: List[str] = field(default_factory=list)


def load_model(path: Path | str, opts: ModelOptions) -> LoadedModel:
    """Load a model from any accepted file; bad files raise a one-line OverfocusError.

    Example:
        >>> lm = load_model("resnet18.pt", ModelOptions(model="resnet18", num_classes=3))  # doctest: +SKIP
        >>> lm.kind, lm.layer                                                             # doctest: +SKIP
        ('state-dict', 'layer4')
    """
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"checkpoint {path} does not exist: check the path")
    sha = sha256_file(path)
    if is_torchscript(path):
        return _from_torchscript(path, sha, opts)
    payload = read_safetensors(path) if is_safetensors(path) else load_checkpoint(path, trust_pickle=opts.trust_pickle)
    if isinstance(payload, nn.Module):
        return _from_module(payload, path, sha, opts)
    state = extract_state_dict(payload, path)
    if isinstance(state, nn.Module):  # {"model": module} saved by a trusted pickle
        return _from_module(state, path, sha, opts)
    return _from_state_dict(state, payload, path, sha, opts)


def is_safetensors(path: Path) -> bool:
    return Path(path).suffix == ".safetensors"


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """A .safetensors file's tensors (no pickle involved); the package is an optional extra."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise OverfocusError(f"{path} is a safetensors file and the safetensors package is not installed: "
                             'pip install safetensors (or pip install "overfocus[integrations]")') from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise OverfocusError(f"{path} is not a readable safetensors file ({_first_line(exc)})") from None


def read_weights(path: Path | str, trust_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The state_dict of any accepted file, prefixes of the model's keys still on (see fit_keys).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "epoch=3-step=120.ckpt"
        >>> torch.save({"epoch": 3, "state_dict": {"model.fc.weight": torch.zeros(2, 4)}}, path)
        >>> list(read_weights(path))
        ['model.fc.weight']
    """
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"checkpoint {path} does not exist: check the path")
    if is_safetensors(path):
        return read_safetensors(path)
    if is_torchscript(path):
        return dict(_load_torchscript(path).state_dict())
    payload = load_checkpoint(path, trust_pickle=trust_pickle)
    state = payload if isinstance(payload, nn.Module) else extract_state_dict(payload, path)
    return dict(state.state_dict()) if isinstance(state, nn.Module) else state


def extract_state_dict(payload: Any, path: Path) -> Any:
    """The state_dict inside a payload (itself, or under a wrapper key), prefixes stripped."""
    if isinstance(payload, dict) and payload and all(torch.is_tensor(v) for v in payload.values()):
        return strip_prefixes(payload)
    if isinstance(payload, dict):
        for key in WRAPPER_KEYS:
            if isinstance(payload.get(key), (dict, nn.Module)):
                return extract_state_dict(payload[key], path) if isinstance(payload[key], dict) else payload[key]
        keys = sorted(map(str, payload))[:8]
        raise OverfocusError(f"checkpoint {path} holds a dict without weights (keys {keys}): expected a "
                             "state_dict or a dict with 'state_dict' or 'model'")
    raise OverfocusError(f"checkpoint {path} holds a {type(payload).__name__}, not model weights: expected a "
                         "state_dict, a TorchScript file or (with --trust-pickle) a pickled nn.Module")


def strip_prefixes(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop a `module.` / `_orig_mod.` prefix shared by every key (DDP, torch.compile)."""
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def fit_keys(state: Dict[str, torch.Tensor], own_keys: Iterable[str],
             strip_prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """`state` with the key prefix removed that makes its keys those of the model.

    Wrappers prefix every key: DistributedDataParallel `module.`, torch.compile `_orig_mod.`, a
    LightningModule holding the network as `self.model` `model.`. Every chain of these prefixes is
    tried (on the keys that carry it); the one matching most of the model's keys wins. When two
    chains match equally well the choice is the user's: `strip_prefix` names it.

    Example:
        >>> fit_keys({"model.fc.weight": 1, "model.fc.bias": 2}, ["fc.weight", "fc.bias"])
        {'fc.weight': 1, 'fc.bias': 2}
    """
    if strip_prefix:
        if not any(k.startswith(strip_prefix) for k in state):
            raise OverfocusError(f"--strip-prefix {strip_prefix!r}: no key of the checkpoint starts with it "
                                 f"(first key: {next(iter(state), 'none')})")
        return _strip(state, strip_prefix)
    own = set(own_keys)
    candidates = _prefix_chains(state)
    scores = {chain: len(own.intersection(keys)) for chain, keys in candidates.items()}
    best = max(scores.values())
    winners = {chain for chain, score in scores.items() if score == best}
    if len({frozenset(candidates[c]) for c in winners}) > 1 and best > 0:
        names = " or ".join(repr(c) for c in sorted(winners))
        raise OverfocusError(f"the checkpoint's keys fit the model equally well after stripping {names}: "
                             "pass --strip-prefix PREFIX to choose")
    return candidates[min(winners, key=len)]


def _prefix_chains(state: Dict[str, torch.Tensor], depth: int = 3) -> Dict[str, Dict[str, torch.Tensor]]:
    """{prefix chain: state with it stripped} for every chain of FIT_PREFIXES that keys carry."""
    found = {"": state}
    frontier = [""]
    for _ in range(depth):
        nxt = []
        for chain in frontier:
            for prefix in FIT_PREFIXES:
                if any(k.startswith(prefix) for k in found[chain]) and chain + prefix not in found:
                    found[chain + prefix] = _strip(found[chain], prefix)
                    nxt.append(chain + prefix)
        frontier = nxt
    return found


def _strip(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def infer_num_classes(state: Dict[str, torch.Tensor]) -> Optional[int]:
    """Output size of the last linear layer: the last 2-D `.weight` in the state_dict."""
    last = [v for k, v in state.items() if k.endswith("weight") and torch.is_tensor(v) and v.dim() == 2]
    return int(last[-1].shape[0]) if last else None


def check_and_load(model: nn.Module, state: Dict[str, torch.Tensor], target: str,
                   strip_prefix: Optional[str] = None) -> None:
    """load_state_dict(strict) after `fit_keys`, with a one-line message naming the first
    mismatches and counts."""
    own = model.state_dict()
    state = fit_keys(state, own, strip_prefix)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        detail = _mismatch_text(missing, unexpected, shapes, own, state)
        raise OverfocusError(f"the weights do not fit {target}: {detail}; check --model/--arch, --width, "
                             "--small-input and --num-classes")
    model.load_state_dict(state, strict=True)


def check_outputs(model: nn.Module, asked: Optional[int], target: str) -> None:
    """`--num-classes N` that the model did not take (a factory without num_classes builds its own
    head, which the weights then fit): refused, since every class index would be misread."""
    built = infer_num_classes(model.state_dict())
    if asked and built and built != asked:
        raise OverfocusError(f"--num-classes {asked}, but {target} has {built} outputs (its factory does not take "
                             f"num_classes and the weights fit {built}): drop --num-classes or pass {built}")


def _mismatch_text(missing, unexpected, shapes, own, state) -> str:
    parts = [f"{len(missing)} missing keys" + (f" (first: {missing[0]})" if missing else ""),
             f"{len(unexpected)} unexpected keys" + (f" (first: {unexpected[0]})" if unexpected else "")]
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches (first: {k} is {_shape(state[k])} in the file, "
                     f"{_shape(own[k])} in the model)")
    return ", ".join(parts)


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


# ---- building the target model ----------------------------------------------------------------------
def build_target(opts: ModelOptions, num_classes: int) -> Tuple[nn.Module, str, Optional[str], Optional[str]]:
    """(model, description, gradcam layer, latent layer) from --model or --arch."""
    if opts.model and opts.arch:
        raise OverfocusError("pass either --model or --arch, not both")
    if opts.model and opts.model.startswith("timm:"):
        return build_timm(opts.model.removeprefix("timm:"), num_classes), f"{opts.model} ({num_classes} classes)", \
            None, None
    if opts.model:
        from .models import MODELS, build_model

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
        raise OverfocusError(f"--model timm:{name}: {_first_line(exc)}; see timm.list_models()") from None


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
    return f"{type(exc).__name__}: {_first_line(exc)}" if str(exc).strip() else type(exc).__name__


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# ---- the four kinds of file ---------------------------------------------------------------------------
def _from_state_dict(state, payload, path: Path, sha: str, opts: ModelOptions) -> LoadedModel:
    run_ckpt = isinstance(payload, dict) and "schema" in payload and "model_name" in payload
    if run_ckpt and not opts.model and not opts.arch:  # a tracked run's checkpoint may name an import path
        opts = _with(opts, arch=allow_recorded_arch(payload["arch"], opts, f"checkpoint {path}")) \
            if payload.get("arch") else _with(opts, model=str(payload["model_name"]))
    if run_ckpt and not opts.num_classes:
        check_recipe_args({"num_classes": payload.get("num_classes")}, f"checkpoint {path}")
    num_classes = opts.num_classes or (int(payload["num_classes"]) if run_ckpt else None) or infer_num_classes(state)
    if not num_classes:
        raise OverfocusError(f"cannot tell the number of classes of {path}: pass --num-classes N")
    model, desc, layer, latent = build_target(opts, num_classes)
    check_and_load(model, state, desc, opts.strip_prefix)
    check_outputs(model, opts.num_classes, desc)
    epoch = int(payload["epoch"]) if run_ckpt and "epoch" in payload else None
    return LoadedModel(model, "run-checkpoint" if run_ckpt else "state-dict", path, sha, desc, num_classes,
                       opts.layer or layer, opts.layer or latent, epoch=epoch)


def _from_module(module: nn.Module, path: Path, sha: str, opts: ModelOptions) -> LoadedModel:
    desc = f"pickled {type(module).__name__}"
    return LoadedModel(module, "pickled-module", path, sha, desc, opts.num_classes, opts.layer, opts.layer)


def _load_torchscript(path: Path):
    try:
        with warnings.catch_warnings():  # torch.jit.* deprecation warnings are not the user's business
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and friends for damaged archives
        raise OverfocusError(f"TorchScript file {path} cannot be loaded ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _from_torchscript(path: Path, sha: str, opts: ModelOptions) -> LoadedModel:
    script = _load_torchscript(path)
    if not (opts.model or opts.arch):
        note = ("TorchScript modules support no hooks, so attention maps and coverage were skipped: pass "
                "--model or --arch to load its weights into an eager copy")
        return LoadedModel(script, "torchscript", path, sha, f"TorchScript {script.original_name}",
                           opts.num_classes, None, None, hookable=False, notes=[note])
    state = strip_prefixes(dict(script.state_dict()))
    num_classes = opts.num_classes or infer_num_classes(state)
    model, desc, layer, latent = build_target(opts, num_classes or 0)
    check_and_load(model, state, desc, opts.strip_prefix)
    return LoadedModel(model, "torchscript", path, sha, f"{desc}, weights from TorchScript", num_classes,
                       opts.layer or layer, opts.layer or latent)


def _with(opts: ModelOptions, **changes: Any) -> ModelOptions:
    from dataclasses import replace

    return replace(opts, **changes)


SKIP_LAYER_TYPES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.Identity, nn.Flatten,
                    nn.Dropout, nn.Dropout2d)


@torch.no_grad()
def default_layer(model: nn.Module, images: torch.Tensor) -> str:
    """The layer to explain: the one a registered model declares (its Grad-CAM layer, by default its
    latent layer), else `auto_layer`'s pick.

    Example:
        >>> from overfocus.models import build_model
        >>> default_layer(build_model("resnet18", 3, width=0.125, small_input=True), torch.zeros(1, 3, 32, 32))
        'layer4'
        >>> default_layer(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1)), torch.zeros(1, 3, 8, 8))
        '1'
    """
    declared = getattr(model, "overfocus_layers", None)
    if isinstance(declared, dict) and declared.get("gradcam"):
        return declared["gradcam"]
    return auto_layer(model, images)


def auto_layer(model: nn.Module, images: torch.Tensor) -> str:
    """A transformer's token layer (`models.tokens.find_token_layer`: the first norm of the last
    block, never the patch embedding), else the last module to finish with a 4-D output of more
    than 1 x 1 pixels (the conv trunk's end).

    Forward hooks fire when a module finishes, so a container (`layer4`, `features`) comes after
    its children: the last hit is the largest block that ends the convolutional part.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> auto_layer(m, torch.zeros(1, 3, 8, 8))
        '1'
    """
    from .models.tokens import find_token_layer

    tokens = find_token_layer(model, images)
    if tokens is not None:
        return tokens[0]
    spatial = [name for name, (h, w) in spatial_sizes(model, images) if h * w > 1]
    if not spatial:
        raise OverfocusError("found no convolutional layer with a spatial output: pass --layer NAME")
    return spatial[-1]


# Below this many pixels a side, a layer's maps are near constant once upsampled (1 x 1: exactly).
MIN_LAYER_SIDE = 4


@torch.no_grad()
def spatial_sizes(model: nn.Module, images: torch.Tensor) -> List[Tuple[str, Tuple[int, int]]]:
    """(module name, (h, w)) of every module with a 4-D output, in the order they finish, for one image.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        >>> spatial_sizes(m, torch.zeros(1, 3, 8, 8))
        [('0', (6, 6)), ('1', (6, 6))]
    """
    order: List[Tuple[str, Tuple[int, int]]] = []
    hooks = [m.register_forward_hook(_recorder(order, name)) for name, m in model.named_modules()
             if name and not isinstance(m, SKIP_LAYER_TYPES)]
    was_training = model.training
    try:
        model.eval()
        model(images[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return order


def small_layer_note(model: nn.Module, layer: str, images: torch.Tensor) -> Optional[str]:
    """One line when `layer` is below 4 x 4 at this input size (its maps say little), naming a larger
    layer to pass with --layer; None when the layer is large enough.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("resnet18", 3, width=0.125)                 # ImageNet stem: stride 32
        >>> print(small_layer_note(m, "layer4", torch.zeros(1, 3, 32, 32)))
        attribution layer 'layer4' is 1 x 1 at 32 x 32 px: its maps are constant (every area ratio 1.0); pass layer='layer2' (4 x 4)
        >>> small_layer_note(m, "layer4", torch.zeros(1, 3, 128, 128)) is None
        True
    """
    sizes = spatial_sizes(model, images)
    found = dict(sizes)
    if layer not in found or min(found[layer]) >= MIN_LAYER_SIDE:
        return None
    h, w = found[layer]
    what = "constant (every area ratio 1.0)" if h * w == 1 else "nearly constant once upsampled"
    larger = [(name, hw) for name, hw in sizes if min(hw) >= MIN_LAYER_SIDE]
    advice = (f"pass {option('layer', repr(larger[-1][0]))} ({larger[-1][1][0]} x {larger[-1][1][1]})" if larger
              else f"use larger images ({option('image_size', 'PX')})")
    return (f"attribution layer {layer!r} is {h} x {w} at {images.shape[-2]} x {images.shape[-1]} px: its maps are "
            f"{what}; {advice}")


def _recorder(order: List[Tuple[str, Tuple[int, int]]], name: str):
    def hook(_module, _inputs, output):
        if torch.is_tensor(output) and output.dim() == 4:
            order.append((name, (int(output.shape[2]), int(output.shape[3]))))
    return hook
