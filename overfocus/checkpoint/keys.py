"""The keys of a state_dict: the weights inside a wrapper payload, the prefixes wrappers add
(`module.`, `_orig_mod.`, `model.`) and the one strict load with a one-line mismatch message."""
from __future__ import annotations

from typing import Any, Dict, Iterable, Optional
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import OverfocusError


WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")


PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers: always stripped


FIT_PREFIXES = ("module.", "_orig_mod.", "model.")  # stripped where that makes the keys the model's


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
