"""Catch-up Mix (METHODS.md section 4; Kang et al., AAAI 2024).

Per batch: lambda ~ Beta(alpha, alpha), a random permutation pi gives each sample a partner, and a
mixing point is drawn uniformly among {the input, the output of each stage}. At the input it is
plain CutMix (lambda corrected to the pasted area). At a stage output with C channels, the
per-channel L2 norms of the two samples' maps (normalised to sum 1 over channels by default) give
the relative filter influence RFI = n_a - n_b; the floor(lambda*C) channels with the SMALLEST RFI
keep sample a's map and the others take the partner's. The count is fixed by lambda, not by the
sign of RFI, so MOST channels carry the relatively weaker map (lagging filters get gradient) but
not every one: where a is weaker in more (or fewer) than floor(lambda*C) channels, the rest carry
the stronger map. The share that carries the weaker map is measured at each feature-mix step
(`weaker_map_share`; 0.71-0.96 was seen on small VGG11 / ResNet18 runs) and logged as the stat
`weaker_channels` (0 on CutMix steps, so that the engine's per-epoch mean over all steps divided
by 1 - mix_at_input is the mean share over feature-mix steps). The forward continues from the mixed features
(a forward hook on the stage module); loss = lambda CE(., y_a) + (1 - lambda) CE(., y_b).
No official code exists: the normalisation and the mixing points are options.

Default stages: VGG: every max-pool of `features`; ResNet: layer1..layer4; cifarnet:
block1..block3; ConvNeXt: the four block stages of `features`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import get_module
from ..models.hooks import Hooks
from .base import REGULARIZERS, Regularizer, StepInfo
from .common import largest_k_mask

NORMALISATIONS = ("sum", "none")


def default_stages(model: nn.Module, model_name: str) -> List[str]:
    """The stage outputs used as feature mixing points for each model family."""
    if model_name.startswith("vgg"):
        return [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    if model_name.startswith("resnet"):
        return ["layer1", "layer2", "layer3", "layer4"]
    if model_name == "cifarnet":
        return ["block1", "block2", "block3"]
    if model_name.startswith("convnext"):
        return [f"features.{i}" for i, m in enumerate(model.features)
                if any(type(c).__name__ == "CNBlock" for c in m.children())]
    raise OverfocusError(f"catchup_mix has no default stages for model {model_name!r}: list them with "
                         "--set regularizer.stages=NAME1,NAME2 (module names)")


def relative_filter_influence(features: torch.Tensor, perm: torch.Tensor, normalize: str = "sum") -> torch.Tensor:
    """RFI = n_a - n_b (B x C): per-channel L2 norms over H x W, normalised over channels; detached.

    Example:
        >>> f = torch.zeros(2, 2, 1, 1); f[0, 0] = 3.0; f[0, 1] = 1.0; f[1, 0] = 1.0; f[1, 1] = 1.0
        >>> relative_filter_influence(f, torch.tensor([1, 0]))
        tensor([[ 0.2500, -0.2500],
                [-0.2500,  0.2500]])
    """
    norms = features.detach().flatten(2).norm(dim=2)
    if normalize == "sum":
        norms = norms / norms.sum(1, keepdim=True).clamp_min(1e-12)
    return norms - norms[perm]


def channel_mix(features: torch.Tensor, perm: torch.Tensor, lam: float, normalize: str = "sum") -> torch.Tensor:
    """Keep a's map in the floor(lam*C) channels of smallest RFI, the partner's map elsewhere."""
    channels = features.shape[1]
    k = math.floor(lam * channels)
    rfi = relative_filter_influence(features, perm, normalize)
    keep_own = largest_k_mask(-rfi, k)  # the k smallest RFI, ties to the lower channel index
    return torch.where(keep_own[:, :, None, None], features, features[perm])


def weaker_map_share(features: torch.Tensor, perm: torch.Tensor, lam: float, normalize: str = "sum") -> float:
    """Fraction of (sample, channel) pairs whose mixed map is the relatively weaker of the two
    (a tie, RFI = 0, counts as weaker); what `channel_mix` guarantees only for floor(lam*C) channels.

    Example:
        >>> f = torch.zeros(2, 4, 1, 1); f[0, :, 0, 0] = torch.tensor([4.0, 1.0, 1.0, 2.0])
        >>> f[1, :, 0, 0] = torch.tensor([1.0, 1.0, 4.0, 2.0])
        >>> weaker_map_share(f, torch.tensor([1, 0]), 0.5), weaker_map_share(f, torch.tensor([1, 0]), 0.0)
        (1.0, 0.75)
    """
    rfi = relative_filter_influence(features, perm, normalize)
    keep_own = largest_k_mask(-rfi, math.floor(lam * features.shape[1]))
    weaker = torch.where(keep_own, rfi <= 0, rfi >= 0)
    return float(weaker.float().mean())


def cutmix(images: torch.Tensor, perm: torch.Tensor, lam: float) -> Tuple[torch.Tensor, float]:
    """Paste a box of area ~(1-lam) from each partner; returns images and lam of the pasted area.

    The box centre is drawn from the global RNG (saved in checkpoints, so resume replays it).
    """
    h, w = images.shape[2:]
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[perm][:, :, y0:y1, x0:x1]
    return mixed, 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)


def mixed_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)."""
    return lam * F.cross_entropy(logits, y_a) + (1.0 - lam) * F.cross_entropy(logits, y_b)


@REGULARIZERS.register("catchup_mix")
class CatchupMix(Regularizer):
    """Catch-up Mix: channel mixing by relative filter influence at a random stage, or CutMix.

    Hyper-parameters: `alpha` (Beta parameter, default 1), `stages` (comma-separated module names;
    "" = the family default), `include_input` (CutMix at the input is a mixing point, default true),
    `normalize` (sum | none: normalisation of the channel norms before RFI, default sum),
    `feature_lambda` (sampled | channels: at a feature point the loss uses the sampled lambda, as
    METHODS.md, or the kept fraction floor(lambda*C)/C).

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> build_regularizer(RegularizerConfig("catchup_mix"), None).params.alpha
        1.0
    """

    name = "catchup_mix"

    @dataclass
    class Params:
        alpha: float = 1.0
        stages: str = ""
        include_input: bool = True
        normalize: str = "sum"
        feature_lambda: str = "sampled"

    def __init__(self, params: Any, ctx):
        super().__init__(params, ctx)
        if params.alpha <= 0:
            raise OverfocusError(f"regularizer.alpha={params.alpha}: the Beta parameter must be positive")
        if params.normalize not in NORMALISATIONS:
            raise OverfocusError(f"regularizer.normalize={params.normalize!r}: choose sum or none")
        if params.feature_lambda not in ("sampled", "channels"):
            raise OverfocusError(f"regularizer.feature_lambda={params.feature_lambda!r}: choose sampled or channels")
        self.hooks = Hooks()
        self._mix: Optional[Tuple[nn.Module, torch.Tensor, float]] = None

    def setup(self, model: nn.Module) -> None:
        names = [s.strip() for s in self.params.stages.split(",") if s.strip()]
        self.stage_names = names or default_stages(model, self.ctx.model_name)
        self.stage_modules = [get_module(model, n) for n in self.stage_names]
        self.points: List[Optional[nn.Module]] = ([None] if self.params.include_input else []) + self.stage_modules
        if not self.points:
            raise OverfocusError("catchup_mix has no mixing point: give regularizer.stages or include_input=true")
        for module in self.stage_modules:
            self.hooks.forward(module, self._hook)

    def teardown(self, model: nn.Module) -> None:
        self.hooks.remove()

    def _hook(self, module: nn.Module, _inp, out: torch.Tensor):
        if self._mix is None or self._mix[0] is not module or not module.training:
            return None
        _, perm, lam = self._mix
        self._channels = out.shape[1]
        self._weaker_share = weaker_map_share(out, perm, lam, self.params.normalize)
        return channel_mix(out, perm, lam, self.params.normalize)

    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        x, y = batch.images, batch.labels
        lam = float(torch.distributions.Beta(self.params.alpha, self.params.alpha).sample())
        perm = torch.randperm(len(y)).to(y.device)
        point = self.points[int(torch.randint(len(self.points), (1,)))]
        stats: Dict[str, Any] = {"mix_at_input": float(point is None), "weaker_channels": 0.0}
        if point is None:
            x, lam = cutmix(x, perm, lam)
            logits = model(x)
        else:
            self._mix = (point, perm, lam)
            try:
                logits = model(x)
            finally:
                self._mix = None
            lam = self._feature_lambda(lam)
            stats["weaker_channels"] = self._weaker_share
        stats["lam"] = lam
        return mixed_cross_entropy(logits, y, y[perm], lam), stats

    def _feature_lambda(self, lam: float) -> float:
        if self.params.feature_lambda == "sampled":
            return lam
        return math.floor(lam * self._channels) / self._channels
