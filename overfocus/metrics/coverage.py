"""Neuron coverage (Pei et al. 2017, DeepXplore) with the conventions of specs/METRICS.md.

- Hooked: outputs of ReLU-family and pooling modules only (post-activation values; Conv/BN
  outputs would inflate coverage). A module called several times per forward (ResNet blocks
  reuse one ReLU) counts as one layer per call.
- Neuron: a channel of a B x C x ... output (a unit of a B x C output, e.g. the classifier's
  ReLUs, which are part of `global`).
- Per sample and layer the whole layer output is min-max scaled to [0, 1] (a constant output
  scales to 0); the neuron fires if its spatial mean is > `threshold` (default 0).
- `global`: all hooked layers. `latent`: the last hooked output produced at or before the end of
  the latent layer's forward (VGG `features` -> its last max-pool, ResNet `layer4` -> its last
  ReLU, cifarnet `block3` -> its max-pool); NaN if there is none.
- Per image: fired neurons / all neurons; cumulative: neurons that fired for any input so far.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..errors import OverfocusError
from ..models import get_module

ACTIVATION_TYPES: Tuple[type, ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU,
                                      nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                                      nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                      nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                                      nn.AdaptiveMaxPool3d)


def channel_fired(output: torch.Tensor, threshold: float) -> torch.Tensor:
    """B x C bool: per-sample min-max scaled layer output, channel spatial mean > threshold."""
    out = output.detach().float()
    means = out.reshape(out.shape[0], out.shape[1], -1).mean(dim=2)  # the scaling is affine: scale the means
    flat = out.reshape(out.shape[0], -1)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = high - low
    scaled = torch.where(span > 0, (means - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(means))
    return scaled > threshold


class NeuronCoverage:
    """Context manager hooking the post-activation outputs of a model; accumulates coverage.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("cifarnet", 3, width=0.125).eval()
        >>> cov = NeuronCoverage(m, latent_layer="block3")
        >>> with cov, torch.no_grad():
        ...     _ = m(torch.randn(4, 3, 32, 32))
        >>> cov.per_image()["coverage_latent"].shape, 0 <= cov.cumulative()["coverage_global"] <= 1
        (torch.Size([4]), True)
    """

    def __init__(self, model: nn.Module, latent_layer: str = "features", threshold: float = 0.0,
                 module_types: Tuple[type, ...] = ACTIVATION_TYPES):
        self.model, self.threshold, self.module_types = model, float(threshold), module_types
        self.latent_module = get_module(model, latent_layer) if latent_layer else None
        self.latent_layer = latent_layer
        self._handles: list = []
        self._ever: Dict[str, torch.Tensor] = {}  # layer key -> C bool: fired for any input
        self._latent_key: Optional[str] = None
        self._global: List[torch.Tensor] = []  # per forward: B fired counts over all layers
        self._latent: List[torch.Tensor] = []
        self._reset_forward()

    def _reset_forward(self) -> None:
        self._calls: Dict[str, int] = {}
        self._fired: Dict[str, torch.Tensor] = {}
        self._last_key: Optional[str] = None
        self._latent_now: Optional[str] = None

    def __enter__(self) -> "NeuronCoverage":
        named = [(n, m) for n, m in self.model.named_modules() if isinstance(m, self.module_types)]
        if not named:
            raise OverfocusError("the model has no ReLU or pooling modules to measure neuron coverage on")
        try:
            self._handles.append(self.model.register_forward_pre_hook(lambda *_: self._reset_forward()))
            for name, module in named:
                self._handles.append(module.register_forward_hook(self._layer_hook(name)))
            if self.latent_module is not None:
                self._handles.append(self.latent_module.register_forward_hook(self._mark_latent))
            self._handles.append(self.model.register_forward_hook(self._finish_forward))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _layer_hook(self, name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                return
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = f"{name}#{call}"
            self._fired[key] = channel_fired(output, self.threshold)  # stays on the device until the end
            self._last_key = key
        return hook

    def _mark_latent(self, *_args) -> None:
        self._latent_now = self._last_key

    def _finish_forward(self, *_args) -> None:
        if not self._fired:
            return
        self._fired = _to_host_once(self._fired)
        for key, fired in self._fired.items():
            self._ever[key] = fired.any(dim=0) | self._ever.get(key, torch.zeros(fired.shape[1], dtype=torch.bool))
        total = sum(f.shape[1] for f in self._fired.values())
        self._global.append(sum(f.sum(dim=1) for f in self._fired.values()).float() / total)
        self._latent_key = self._latent_now or self._latent_key
        batch = next(iter(self._fired.values())).shape[0]
        latent = self._fired.get(self._latent_now) if self._latent_now else None
        self._latent.append(latent.float().mean(dim=1) if latent is not None else torch.full((batch,), math.nan))

    def per_image(self) -> Dict[str, torch.Tensor]:
        """Per-image coverage of every forward so far: {"coverage_global", "coverage_latent"} -> B_total."""
        if not self._global:
            return {"coverage_global": torch.zeros(0), "coverage_latent": torch.zeros(0)}
        return {"coverage_global": torch.cat(self._global), "coverage_latent": torch.cat(self._latent)}

    def fired_masks(self) -> Tuple[Dict[str, torch.Tensor], str]:
        """Per-layer boolean masks "fired for some input so far" and the latent layer's key.

        What ranks exchange to merge cumulative coverage (a union of masks, not of fractions).
        """
        return {key: mask.clone() for key, mask in self._ever.items()}, self._latent_key or ""

    def cumulative(self) -> Dict[str, float]:
        """Fraction of neurons that fired for at least one input so far (NaN before any forward)."""
        if not self._ever:
            return {"coverage_global": math.nan, "coverage_latent": math.nan}
        fired = sum(int(v.sum()) for v in self._ever.values())
        total = sum(v.numel() for v in self._ever.values())
        latent = self._ever.get(self._latent_key) if self._latent_key else None
        return {"coverage_global": fired / total,
                "coverage_latent": float(latent.float().mean()) if latent is not None else math.nan}


def _to_host_once(fired: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Move every layer's B x C mask to the CPU in ONE transfer (one sync per forward on a GPU)."""
    keys = list(fired)
    widths = [fired[k].shape[1] for k in keys]
    host = torch.cat([fired[k] for k in keys], dim=1).cpu()
    return dict(zip(keys, torch.split(host, widths, dim=1)))
