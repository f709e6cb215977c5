"""Excitation Dropout (METHODS.md section 3; Zunino et al. 2021).

Units that Excitation Backprop (EB) finds most relevant to the ground-truth class are dropped more
often, so the network must find other evidence. Per training step, at the chosen layer (the latent
z by default): p_EB of every unit for the gt class through the classifier psi, then
p_drop_i = (1-P)(N-1) p_i / (((1-P)N - 1) p_i + P), keep mask m_i ~ Bernoulli(1 - p_drop_i),
output a * m / mean(m). With uniform p_EB = 1/N this is plain dropout of rate 1-P.

EB (the c-MWP rule, top-down from a one-hot at the gt logit): for a map y = L(a) with non-negative
coefficients and inputs, P(a_i) = a_i * sum_j w+_ji P(y_j) / (sum_i' a_i' w+_ji'), i.e.
P(a) = a * L+^T(P(y) / L+(a)), with L+ the map with its weights clipped at 0 and no bias.
ReLU, Dropout (identity in eval), Identity and Flatten pass the signal; average pooling is such a
positive map; max pooling passes it to the winner. psi runs in eval mode via HeadRunner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import get_module
from ..models.hooks import Hooks
from .base import REGULARIZERS, Regularizer, StepInfo
from .common import HeadRunner, capture_output, eval_mode, probe_input

PASS_THROUGH = (nn.ReLU, nn.Dropout, nn.Identity, nn.Flatten)
POSITIVE_MAPS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AvgPool1d)
SUPPORTED = (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d) + PASS_THROUGH + POSITIVE_MAPS


def positive_map_excitation(a: torch.Tensor, p_out: torch.Tensor,
                            positive_map: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """P(a) = a * L+^T(P(y) / L+(a)) for a linear map L+ with non-negative coefficients.

    Where L+(a) is 0 the output unit passes no probability (it had no excitatory input).

    Example:
        >>> a = torch.tensor([[1.0, 3.0]])
        >>> positive_map_excitation(a, torch.tensor([[1.0]]), lambda t: t.sum(1, keepdim=True))
        tensor([[0.2500, 0.7500]])
    """
    a = a.detach().clamp(min=0)  # EB is defined for non-negative (post-ReLU) activations
    leaf = a.clone().requires_grad_(True)
    with torch.enable_grad():
        out = positive_map(leaf)
    value = out.detach()
    ratio = torch.where(value > 0, p_out / value.clamp_min(1e-30), torch.zeros_like(value))
    (back,) = torch.autograd.grad(out, leaf, ratio)  # L+^T(ratio): the adjoint of the linear map
    return a * back


def linear_excitation(a: torch.Tensor, p_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """EB through a Linear layer: w+ = max(w, 0), bias ignored (closed form, no autograd)."""
    a = a.detach().clamp(min=0)
    w_pos = weight.detach().clamp(min=0)
    out = a @ w_pos.T
    ratio = torch.where(out > 0, p_out / out.clamp_min(1e-30), torch.zeros_like(out))
    return a * (ratio @ w_pos)


def excitation_step(name: str, module: nn.Module, a: torch.Tensor, p_out: torch.Tensor) -> torch.Tensor:
    """P at the input of one psi module from P at its output."""
    if isinstance(module, nn.Linear):
        return linear_excitation(a, p_out, module.weight)
    if isinstance(module, PASS_THROUGH):
        return p_out.reshape(a.shape)
    if isinstance(module, POSITIVE_MAPS):
        return positive_map_excitation(a, p_out, module)
    if isinstance(module, nn.Conv2d):
        conv = lambda t: F.conv2d(t, module.weight.detach().clamp(min=0), None, module.stride, module.padding,
                                  module.dilation, module.groups)
        return positive_map_excitation(a, p_out, conv)
    if isinstance(module, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return _winner_takes_all(module, a, p_out)
    raise unsupported(name, module)


def unsupported(name: str, module: nn.Module) -> OverfocusError:
    """The one-line error for a psi module EB cannot pass."""
    return OverfocusError(f"excitation_dropout: Excitation Backprop through {type(module).__name__} ({name}) is "
                          "not supported; cut where the classifier has only Linear/ReLU/Dropout/pooling layers "
                          "(set regularizer.layer=..., e.g. the first FC layer's ReLU)")


def _winner_takes_all(module: nn.Module, a: torch.Tensor, p_out: torch.Tensor) -> torch.Tensor:
    """Max pooling: each output's probability goes to the input that won the max."""
    leaf = a.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = module(leaf)
    (back,) = torch.autograd.grad(out, leaf, p_out.reshape(out.shape))
    return back


def excitation_backprop(records: List[Tuple[str, nn.Module, torch.Tensor, torch.Tensor]], labels: torch.Tensor,
                        latent_shape: torch.Size) -> torch.Tensor:
    """p_EB (B x N) of the latent units for the gt class, from psi's recorded (name, module, in, out).

    Between modules the signal is reshaped to the recorded shapes (the models' torch.flatten).
    """
    logits = records[-1][3]
    p = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    for name, module, a, out in reversed(records):
        if p.numel() != out.numel():
            raise OverfocusError(f"excitation_dropout: psi changes the shape between {name} and the next layer "
                                 "in a way Excitation Backprop cannot follow; choose another regularizer.layer")
        p = excitation_step(name, module, a, p.reshape(out.shape))
    return p.reshape(latent_shape[0], -1)


def drop_probability(p_eb: torch.Tensor, retain: float) -> torch.Tensor:
    """p_drop = (1-P)(N-1) p / (((1-P)N - 1) p + P), N = units per sample (last dimension).

    Example:
        >>> drop_probability(torch.full((1, 4), 0.25), 0.5)
        tensor([[0.5000, 0.5000, 0.5000, 0.5000]])
    """
    n = p_eb.shape[-1]
    p_drop = (1 - retain) * (n - 1) * p_eb / (((1 - retain) * n - 1) * p_eb + retain)
    return p_drop.clamp(0.0, 1.0)


def apply_keep_mask(a: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """a * m / mean(m), mean over each sample's units (its realised kept fraction)."""
    keep = keep.to(a.dtype).reshape(a.shape)
    kept = keep.flatten(1).mean(1).clamp_min(1.0 / keep[0].numel())
    return a * keep / kept.view(-1, *([1] * (a.dim() - 1)))


@REGULARIZERS.register("excitation_dropout")
class ExcitationDropout(Regularizer):
    """Excitation Dropout at the latent layer (or any layer of psi); training only.

    Hyper-parameters: `retain` (base retain probability P, default 0.5), `layer` (module name;
    default the model's latent layer; e.g. `classifier.1` = VGG's first FC layer after its ReLU).

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> build_regularizer(RegularizerConfig("excitation_dropout"), None).params.retain
        0.5
    """

    name = "excitation_dropout"

    @dataclass
    class Params:
        retain: float = 0.5
        layer: str = ""

    def __init__(self, params: Any, ctx):
        super().__init__(params, ctx)
        if not 0.0 < params.retain <= 1.0:
            raise OverfocusError(f"regularizer.retain={params.retain}: the base retain probability must be in (0, 1]")
        self.head = None
        self._step_input = None
        self.hooks = Hooks()

    def setup(self, model: nn.Module) -> None:
        self.model = model
        self.layer = self.params.layer or self.ctx.latent_layer
        self.modules = list(model.modules())
        self.head = HeadRunner(model, self.layer, probe_input(model, getattr(self.ctx, "image_size", 64)))
        for name, module in self.head.head_leaves:  # fail before training, not at its first step
            if not isinstance(module, SUPPORTED):
                raise unsupported(name, module)
        self.hooks.forward(get_module(model, self.layer), self._hook)

    def teardown(self, model: nn.Module) -> None:
        self.hooks.remove()

    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        self._step_input, self._stats = (batch.images, batch.labels), {}
        try:
            loss = F.cross_entropy(model(batch.images), batch.labels)
        finally:
            self._step_input = None
        return loss, self._stats

    def _hook(self, module: nn.Module, _inp, out: torch.Tensor):
        """Training forward only: nested eval-mode psi runs and evaluation pass through."""
        if self._step_input is None or not module.training:
            return None
        x, y = self._step_input
        p_eb = self.unit_probabilities(out.detach(), x, y)
        keep = torch.bernoulli(1.0 - drop_probability(p_eb, self.params.retain))
        self._stats["kept_fraction"] = keep.mean()
        return apply_keep_mask(out, keep)

    # -- the leak diagnostic's view (regularizers/leak.py) --
    @torch.no_grad()
    def leak_logits(self, model: nn.Module, images: torch.Tensor,
                    labels: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        """Logits of `model` (as it is: the diagnostic puts it in eval mode) without a mask, then with
        a keep mask drawn for each labelling (None: the online network's own predicted class;
        Bernoulli draws from the global RNG, which the diagnostic seeds)."""
        layer = get_module(model, self.layer)
        a = capture_output(model, layer, images)
        out = [model(images)]
        for y in labels:
            y = out[0].argmax(1) if y is None else y
            keep = torch.bernoulli(1.0 - drop_probability(self.unit_probabilities(a, images, y), self.params.retain))
            with Hooks().forward(layer, lambda _m, _i, _out, keep=keep: apply_keep_mask(_out, keep)):
                out.append(model(images))
        return out

    def unit_probabilities(self, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """p_EB of every unit of `a` (the layer's output) for labels y, B x N."""
        records: List[Tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
        with Hooks() as hooks, eval_mode(self.modules), torch.no_grad():
            for n, m in self.head.head_leaves:
                hooks.forward(m, lambda mod, inp, out, n=n: records.append((n, mod, inp[0], out)))
            self.head(a, x)
        return excitation_backprop(records, y, a.shape)
