"""Neuron coverage (Pei et al. 2017, DeepXplore) with the conventions of specs/METRICS.md.

- Hooked: outputs of ReLU-family and pooling modules only (post-activation values; Conv/BN
  outputs would inflate coverage). A module called several times per forward (ResNet blocks
  reuse one ReLU) counts as one layer per call.
- Neuron: a channel of a B x C x ... output (a unit of a B x C output, e.g. the classifier's
  ReLUs, which are part of `global`).
- Vision transformers (`models.tokens.is_token_model`): the GELU outputs of the MLPs are hooked
  too; their tokens are channels last (B x N x C), so a neuron is a feature channel and its
  "spatial mean" the mean over the tokens (class token included); `latent` is the last GELU
  before the end of the latent layer. A GELU output is read through its positive part, so that a
  neuron fires where its pre-activation is positive, as a ReLU neuron does.
- Per sample and layer the whole layer output is min-max scaled to [0, 1] (a constant output
  scales to 0); the neuron fires if its spatial mean is > `threshold` (default 0).
- `global`: all hooked layers. `latent`: the last hooked output produced at or before the end of
  the latent layer's forward (VGG `features` -> its last max-pool, ResNet `layer4` -> its last
  ReLU, cifarnet `block3` -> its max-pool); NaN if there is none.
- Per image: fired neurons / all neurons; cumulative: neurons that fired for any input so far.
- Unit level (`unit_coverage_*`, alongside): every element of a layer's C x H x W output is a
  neuron; after the same per-sample min-max scaling it fires if its scaled value is > `threshold`.
  Per image: fired elements / all elements of the scope; cumulative: elements that fired for any
  input. The channel-level numbers saturate on trained CNNs (every channel fires somewhere); the
  unit-level ones are the reading that fits the seed's Table 4 (docs/conventions.md).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..errors import OverfocusError
from ..models import get_module
from ..models.tokens import is_token_model
from ..models.hooks import Hooks

ACTIVATION_TYPES: Tuple[type, ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU,
                                      nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                                      nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                                      nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                                      nn.AdaptiveMaxPool3d)


# per-image and cumulative coverage names: channel level (DeepXplore) and unit level (every element)
COVERAGE_KEYS = ("coverage_global", "coverage_latent", "unit_coverage_global", "unit_coverage_latent")
UNIT_PREFIX = "units:"  # key prefix of the unit-level masks in `fired_masks` (next to the channel ones)


def _scaled(values: torch.Tensor, low: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Min-max scaling with a constant output (span 0) scaled to 0."""
    return torch.where(span > 0, (values - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(values))


def layer_bounds(output: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B x 1 minimum, B x 1 maximum) of each sample's whole layer output: its min-max scaling."""
    flat = output.detach().float().reshape(output.shape[0], -1)
    return flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)  # faster than aminmax on the CPU


def channel_fired(output: torch.Tensor, threshold: float, bounds=None) -> torch.Tensor:
    """B x C bool: per-sample min-max scaled layer output, channel spatial mean > threshold.
    `bounds`: the output's `layer_bounds`, when already computed."""
    out = output.detach().float()
    means = out.reshape(out.shape[0], out.shape[1], -1).mean(dim=2)  # the scaling is affine: scale the means
    low, high = bounds if bounds is not None else layer_bounds(out)
    return _scaled(means, low, high - low) > threshold


def unit_fired(output: torch.Tensor, threshold: float, bounds=None) -> torch.Tensor:
    """B x N bool (N = C*H*W elements): per-sample min-max scaled layer output, element > threshold.
    `bounds`: the output's `layer_bounds`, when already computed.

    Example:
        >>> unit_fired(torch.tensor([[[0.0, 2.0], [1.0, 0.0]]]), 0.0).tolist()
        [[False, True, True, False]]
    """
    flat = output.detach().float().reshape(output.shape[0], -1)
    low, high = bounds if bounds is not None else layer_bounds(flat)
    # (x - low) / span > t  <=>  x > low + t * span (span > 0; a constant output fires nowhere):
    # one comparison, no scaled copy of every layer output
    cut = torch.where(high > low, low + threshold * (high - low), torch.full_like(low, math.inf))
    return flat > cut


def coverage_from_masks(masks: Dict[str, np.ndarray], latent_key: str) -> Dict[str, float]:
    """Cumulative coverage from "fired for some input" masks per layer (channel masks under the layer
    key, unit masks under `UNIT_PREFIX` + key): fired / all over every layer (`global`) and the
    latent layer's fired fraction; NaN where there is nothing. The one definition used by
    `NeuronCoverage.cumulative` and by the merge of a sharded analysis.

    Example:
        >>> cov = coverage_from_masks({"a#0": np.array([1, 0], bool), "b#0": np.array([1, 1], bool),
        ...                            "units:b#0": np.array([1, 0, 0, 0], bool)}, "b#0")
        >>> cov["coverage_global"], cov["coverage_latent"], cov["unit_coverage_latent"]
        (0.75, 1.0, 0.25)
    """
    out = {}
    for prefix, scope in (("", "coverage"), (UNIT_PREFIX, "unit_coverage")):
        chosen = {k[len(prefix):]: np.asarray(m, dtype=bool) for k, m in masks.items()
                  if (k.startswith(UNIT_PREFIX) if prefix else not k.startswith(UNIT_PREFIX))}
        total = sum(int(m.size) for m in chosen.values())
        latent = chosen.get(latent_key) if latent_key else None
        out[f"{scope}_global"] = sum(int(m.sum()) for m in chosen.values()) / total if total else math.nan
        # the float32 mean of torch, so that merged shards match one process to the last digit
        out[f"{scope}_latent"] = (float(torch.from_numpy(latent).float().mean()) if latent is not None and latent.size
                                  else math.nan)
    return {k: out[k] for k in COVERAGE_KEYS}


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
        # a vision transformer: its MLPs' GELU outputs B x N x C tokens (channels last) are the neurons
        self.tokens = is_token_model(model)
        if self.tokens and module_types is ACTIVATION_TYPES:
            self.module_types = (*module_types, nn.GELU)
        self.latent_module = get_module(model, latent_layer) if latent_layer else None
        self.latent_layer = latent_layer
        self.hooks = Hooks()
        self._ever: Dict[str, torch.Tensor] = {}  # layer key -> C bool: fired for any input
        self._ever_units: Dict[str, torch.Tensor] = {}  # layer key -> C*H*W bool (on the device)
        self._latent_key: Optional[str] = None
        self._per_image: Dict[str, List[torch.Tensor]] = {k: [] for k in COVERAGE_KEYS}  # per forward: B
        self._reset_forward()

    def _reset_forward(self) -> None:
        self._calls: Dict[str, int] = {}
        self._fired: Dict[str, torch.Tensor] = {}
        self._unit_counts: Dict[str, torch.Tensor] = {}  # layer key -> B fired elements
        self._last_key: Optional[str] = None
        self._latent_now: Optional[str] = None

    def __enter__(self) -> "NeuronCoverage":
        named = [(n, m) for n, m in self.model.named_modules() if isinstance(m, self.module_types)]
        if not named:
            raise OverfocusError("the model has no ReLU or pooling modules to measure neuron coverage on")
        try:
            self.hooks.forward_pre(self.model, lambda *_: self._reset_forward())
            for name, module in named:
                self.hooks.forward(module, self._layer_hook(name))
            if self.latent_module is not None:
                self.hooks.forward(self.latent_module, self._mark_latent)
            self.hooks.forward(self.model, self._finish_forward)
        except BaseException:
            self.hooks.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.hooks.remove()

    def _layer_hook(self, name: str):
        def hook(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.dim() < 2:
                return
            if self.tokens and output.dim() >= 3:
                output = output.movedim(-1, 1)  # tokens: B x N x C (or B x h x w x C) -> channels first
            if isinstance(_module, nn.GELU):  # its positive part: fires where the pre-activation is > 0, as a ReLU
                output = output.clamp_min(0)
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = f"{name}#{call}"
            bounds = layer_bounds(output)
            self._fired[key] = channel_fired(output, self.threshold, bounds)  # stays on the device until the end
            units = unit_fired(output, self.threshold, bounds).view(torch.uint8)  # uint8 reductions: fast
            self._unit_counts[key] = units.sum(dim=1, dtype=torch.int32)
            fired_any = units.amax(dim=0).bool()
            ever = self._ever_units.get(key)
            self._ever_units[key] = fired_any if ever is None else ever | fired_any
            self._last_key = key
        return hook

    def _mark_latent(self, *_args) -> None:
        self._latent_now = self._last_key

    def _finish_forward(self, *_args) -> None:
        if not self._fired:
            return
        self._fired, counts = _to_host_once(self._fired, self._unit_counts)
        for key, fired in self._fired.items():
            self._ever[key] = fired.any(dim=0) | self._ever.get(key, torch.zeros(fired.shape[1], dtype=torch.bool))
        self._latent_key = self._latent_now or self._latent_key
        batch = next(iter(self._fired.values())).shape[0]
        latent = self._latent_now
        channels = {k: f.shape[1] for k, f in self._fired.items()}
        units = {k: self._ever_units[k].numel() for k in self._fired}
        for scope, fired, sizes in (("coverage", {k: f.sum(dim=1) for k, f in self._fired.items()}, channels),
                                    ("unit_coverage", counts, units)):
            self._per_image[f"{scope}_global"].append(sum(fired.values()).double() / sum(sizes.values()))
            none = torch.full((batch,), math.nan, dtype=torch.float64)
            self._per_image[f"{scope}_latent"].append(fired[latent].double() / sizes[latent] if latent else none)

    def per_image(self) -> Dict[str, torch.Tensor]:
        """Per-image coverage of every forward so far, float32 per name of `COVERAGE_KEYS`:
        channel level (`coverage_global`, `coverage_latent`) and unit level (`unit_coverage_*`)."""
        return {k: torch.cat(v).float() if v else torch.zeros(0) for k, v in self._per_image.items()}

    def fired_masks(self) -> Tuple[Dict[str, torch.Tensor], str]:
        """Per-layer boolean masks "fired for some input so far" (channel masks under the layer key,
        unit masks under `UNIT_PREFIX` + key) and the latent layer's key.

        What ranks exchange to merge cumulative coverage (a union of masks, not of fractions).
        """
        masks = {key: mask.clone() for key, mask in self._ever.items()}
        masks.update({UNIT_PREFIX + key: mask.cpu() for key, mask in self._ever_units.items()})
        return masks, self._latent_key or ""

    def cumulative(self) -> Dict[str, float]:
        """Fraction of neurons (channels; units) that fired for at least one input so far (NaN before
        any forward)."""
        masks, latent_key = self.fired_masks()
        return coverage_from_masks({k: m.numpy() for k, m in masks.items()}, latent_key)


def _to_host_once(fired: Dict[str, torch.Tensor], counts: Dict[str, torch.Tensor]
                  ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Move every layer's B x C mask and B unit count to the CPU in ONE transfer (one sync per
    forward on a GPU)."""
    keys = list(fired)
    widths = [fired[k].shape[1] for k in keys]
    host = torch.cat([fired[k].long() for k in keys] + [counts[k][:, None].long() for k in keys], dim=1).cpu()
    parts = torch.split(host, widths + [1] * len(keys), dim=1)
    return ({k: p.bool() for k, p in zip(keys, parts)},
            {k: p[:, 0] for k, p in zip(keys, parts[len(keys):])})
