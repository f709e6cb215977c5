"""The cascading randomisation test (Adebayo et al. 2018) on one checkpoint: the model's layers
are re-initialised from the top (the classifier) down, one more at a time, and after each step
the maps of the faithfulness images are compared with the trained model's maps (Spearman rank
correlation and SSIM, metrics/sanity.py). Maps that explain the model lose their similarity as
soon as the top layers are randomised; maps that stay similar to the end show the input's edges,
not the model.

Re-initialised means: the layer's parameters and buffers replaced by the run's epoch-0 weights
(the initial model the training started from); without an epoch 0, by the layer's own
`reset_parameters()` under a fixed seed. `overfocus analyze --sanity cascade` runs it on the last
analysed epoch and writes `sanity_cascade.json` (`CASCADE_FILE`).

Example:
    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    >>> [name for name, _ in randomisable_layers(net)]
    ['2', '0']
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..attribution import attribute
from ..data import normalize
from ..metrics.sanity import map_spearman, map_ssim

CASCADE_FILE = "sanity_cascade.json"


def randomisable_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Modules holding parameters of their own, from the output back to the input (the order of
    their definition, reversed)."""
    own = [(name, m) for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))]
    return own[::-1]


def _reinitialise(layer: nn.Module, initial: Optional[nn.Module], seed: int) -> None:
    with torch.no_grad():
        if initial is not None:
            for (_, mine), (_, theirs) in zip(layer.named_parameters(recurse=False),
                                              initial.named_parameters(recurse=False)):
                mine.copy_(theirs)
            for (_, mine), (_, theirs) in zip(layer.named_buffers(recurse=False), initial.named_buffers(recurse=False)):
                mine.copy_(theirs)
        elif hasattr(layer, "reset_parameters"):
            torch.manual_seed(seed)
            layer.reset_parameters()


def cascade(model: nn.Module, initial: Optional[nn.Module], batches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
            *, methods: Sequence[str], layer: str, mean, std, method_args=None,
            on_step: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
    """The cascading randomisation curve of `model` (left unchanged: a copy is randomised).

    Args:
        initial: the run's epoch-0 model (None: `reset_parameters` under a fixed seed).
        batches: ([0, 1] images, explained classes) of the faithfulness images.

    Returns {"layers": [...], "methods": {method: {"spearman": [...], "spearman_median": [...],
    "ssim": [...]}}}: entry k after the k + 1 top layers are re-initialised.
    """
    def maps_of(net: nn.Module) -> Dict[str, List[torch.Tensor]]:
        out: Dict[str, List[torch.Tensor]] = {m: [] for m in methods}
        for images, targets in batches:
            got = attribute(net, normalize(images, mean, std), targets, methods=methods, layer=layer,
                            method_args=method_args)
            for m in methods:
                out[m].append(got[m].float())
        return out

    reference = maps_of(model)
    work = copy.deepcopy(model).eval()
    initial_modules = dict(initial.named_modules()) if initial is not None else {}
    layers = randomisable_layers(work)
    curve: Dict[str, Dict[str, List[float]]] = {m: {"spearman": [], "spearman_median": [], "ssim": []}
                                                 for m in methods}
    for step, (name, module) in enumerate(layers):
        _reinitialise(module, initial_modules.get(name), seed=step)
        now = maps_of(work)
        for m in methods:
            rho = torch.cat([map_spearman(a, b) for a, b in zip(now[m], reference[m])]).cpu().numpy()
            ssim = torch.cat([map_ssim(a, b) for a, b in zip(now[m], reference[m])]).cpu().numpy()
            curve[m]["spearman"].append(_mean(rho))
            curve[m]["spearman_median"].append(_median(rho))
            curve[m]["ssim"].append(_mean(ssim))
        if on_step is not None:
            on_step(step)
    return {"layers": [name for name, _ in layers], "reinitialised_from": "epoch 0" if initial is not None
            else "reset_parameters (seeded)", "methods": curve}


def _mean(values: np.ndarray) -> Optional[float]:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _median(values: np.ndarray) -> Optional[float]:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if values.size else None
