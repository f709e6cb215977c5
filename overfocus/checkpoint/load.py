"""Safe loading of a model from one file of unknown origin (for `overfocus audit`).

Accepted files:
- a checkpoint of an overfocus run (`{"schema", "model_name", "num_classes", "model": state_dict}`);
- a plain state_dict (torchvision style), also wrapped as `{"state_dict": ...}` or `{"model": ...}`,
  loaded into a registered model (`--model`) or a factory (`--arch package.module:Factory`);
- a TorchScript archive (`torch.jit.save`), recognised by the `code/` folder inside its zip;
- a pickled `nn.Module` (`torch.save(model)`), only when the user passes `trust_pickle=True`,
  since unpickling can run arbitrary code.

Everything except TorchScript and trusted pickles goes through `checkpoint.files.load_checkpoint`
(`torch.load(weights_only=True)`). TorchScript modules do not support forward hooks, so attribution
needs an eager copy: pass `--model`/`--arch` and the archive's weights are loaded into it. The
model is built by `models.build.build_target`; the keys are fitted by `checkpoint.keys`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import torch.nn as nn

from ..errors import OverfocusError
from ..fileio import sha256_file
from ..models.build import ModelOptions, allow_recorded_arch, build_target, check_recipe_args
from .files import is_safetensors, is_torchscript, load_checkpoint, load_torchscript, read_safetensors
from .keys import check_and_load, check_outputs, extract_state_dict, infer_num_classes, strip_prefixes


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


def _from_torchscript(path: Path, sha: str, opts: ModelOptions) -> LoadedModel:
    script = load_torchscript(path)
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
