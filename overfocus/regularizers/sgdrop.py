"""SGDrop, saliency-guided dropout (METHODS.md section 1; Bertoin et al. 2024).

Per step: an attribution network (an EMA copy of the whole model, or the online weights when
`ema=False`) gives A = relu(g * z') at the latent layer, g = d(sum of gt logits)/dz'. For each
sample exactly k = max(1, ceil(rho * units)) most attributed units (ties to the lower index; the
paper's top rho-quantile) are zeroed in the ONLINE network's latent z (a forward hook, z * M, no
rescaling), and the loss is cross-entropy on those logits. `positive_only=True` makes k an upper
bound instead (units without positive attribution never drop). docs/methods.md lists every choice
the paper leaves open ("SGDrop against the paper").

Cost. With `ema=True` the extra work is one eval-mode forward of the EMA copy (its encoder builds
no autograd graph: no parameter needs grad and the input does not either), a backward through the
small classifier psi only (to the detached latent leaf), and the EMA update. With `ema=False` the
online encoder's z is reused: inside the latent hook, psi alone runs on a detached copy of z (eval
mode, so no dropout noise and no RNG use, as for the EMA copy) by `HeadRunner`, which skips every
encoder module; the mask then multiplies the live z. Both keep METHODS.md's semantics exactly.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import get_module
from ..models.tokens import layout_of
from ..models.hooks import Hooks
from .base import REGULARIZERS, RegContext, Regularizer, StepInfo
from .common import HeadRunner, capture_output, eval_mode, largest_k_mask, probe_input

GRANULARITIES = ("element", "spatial", "channel")
MASK_LABELS = ("label", "predicted")  # the class whose attribution makes the mask
# Fixed rho per model family, from the paper's settings table (Bertoin et al. 2024, appendix
# Table 12): 0.01 for VGG16, ResNet50, VGG9 and the CIFAR network; 0.1 for ConvNeXt on natural
# images (Imagenette, Imagewoof; 0.05 on the remote-sensing sets). See METHODS.md section 1.
DEFAULT_RHO = {"vgg": 0.01, "resnet": 0.01, "convnext": 0.1, "other": 0.01}
# End of the linear curriculum: ABOVE the fixed rho (the curriculum is the paper's way to reach a
# rho that impedes learning when fixed: above ~0.025 for VGG, ~0.2 for ResNet, Table 7). The
# paper's endpoints are not legible in our copy; these are our choices (docs/methods.md).
CURRICULUM_RHO_MAX = {"vgg": 0.05, "resnet": 0.1, "convnext": 0.2, "other": 0.05}


# ---- the pure pieces of SGDrop ----------------------------------------------------------------
def grad_times_latent(z_leaf: torch.Tensor, logits: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """A = relu(g * z), g = d(sum_b logits[b, y_b]) / dz (no create_graph); detached.

    `labels=None` takes y_b = the network's own predicted class (argmax of the logits).

    Example:
        >>> z = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> grad_times_latent(z, z * torch.tensor([3.0, -1.0]), torch.tensor([1]))
        tensor([[0., 0.]])
        >>> grad_times_latent(z, z @ torch.tensor([[3.0], [-1.0]]), torch.tensor([0]))
        tensor([[3., 0.]])
    """
    if labels is None:
        labels = logits.detach().argmax(1)
    score = logits.gather(1, labels.view(-1, 1)).sum()
    (g,) = torch.autograd.grad(score, z_leaf)
    return F.relu(g * z_leaf).detach()


def unit_scores(attribution: torch.Tensor, granularity: str) -> torch.Tensor:
    """B x units scores of the chosen granularity: elements, H x W positions or channels."""
    if granularity == "element":
        return attribution.flatten(1)
    if granularity == "spatial":
        return attribution.sum(1).flatten(1)
    if granularity == "channel":
        return attribution.flatten(2).sum(2)
    raise OverfocusError(f"regularizer.granularity={granularity!r}: choose one of {', '.join(GRANULARITIES)}")


def drop_count(rho: float, units: int) -> int:
    """k = max(1, ceil(rho * units)), at most `units`.

    Example:
        >>> drop_count(0.01, 25088)
        251
    """
    return min(units, max(1, math.ceil(rho * units - 1e-9)))


def sgdrop_mask(attribution: torch.Tensor, k: int, granularity: str = "element",
                positive_only: bool = False) -> torch.Tensor:
    """Multiplicative mask M (0 on the k most attributed units of each sample, 1 elsewhere).

    Exactly k units per sample, ties to the lower index (METHODS.md section 1: the paper's top
    rho-quantile of the sample's units). With `positive_only` k is an upper bound: a unit whose
    score is not positive is never dropped, so a sample with fewer than k positive units loses only
    those. The mask broadcasts against z: B x C x H x W (element), B x 1 x H x W (spatial) or
    B x C x 1 x 1 (channel).

    Example:
        >>> a = torch.zeros(1, 2, 2, 2); a[0, 1, 0, 1] = 5.0
        >>> sgdrop_mask(a, 1)[0, 1]
        tensor([[1., 0.],
                [1., 1.]])
        >>> int((sgdrop_mask(a, 3) == 0).sum())  # exactly k: the ties at 0 go by index
        3
        >>> int((sgdrop_mask(a, 3, positive_only=True) == 0).sum())  # one positive unit: one dropped
        1
    """
    scores = unit_scores(attribution, granularity)
    dropped = largest_k_mask(scores, k)
    if positive_only:
        dropped &= scores > 0
    keep = (~dropped).to(attribution.dtype)
    b, c, h, w = attribution.shape
    shape = {"element": (b, c, h, w), "spatial": (b, 1, h, w), "channel": (b, c, 1, 1)}[granularity]
    return keep.view(shape)


def model_family(model_name: str) -> str:
    """vgg | resnet | convnext | other, from a registered model name.

    Example:
        >>> model_family("vgg11"), model_family("resnet50"), model_family("cifarnet")
        ('vgg', 'resnet', 'other')
    """
    for family in ("vgg", "resnet", "convnext"):
        if model_name.startswith(family):
            return family
    return "other"


def linear_ramp(t: float, length: float, start: float, end: float) -> float:
    """start at t=0, end at t=length-1 and after, linear in between.

    Example:
        >>> [linear_ramp(t, 5, 0.0, 0.1) for t in (0, 4, 9)]
        [0.0, 0.1, 0.1]
    """
    frac = 1.0 if length <= 1 else min(1.0, max(0.0, t / (length - 1)))
    return end if frac == 1.0 else start + (end - start) * frac


def ema_tau(total_steps: int, horizon: float) -> float:
    """tau = 1 - 1/(horizon * total_steps), clipped to [0.9, 0.9999].

    Example:
        >>> round(ema_tau(1600, 0.05), 4)
        0.9875
    """
    steps = max(1.0, horizon * total_steps)
    return min(0.9999, max(0.9, 1.0 - 1.0 / steps))


@torch.no_grad()
def ema_update_(ema_params: List[torch.Tensor], params: List[torch.Tensor], ema_buffers: List[torch.Tensor],
                buffers: List[torch.Tensor], tau: float) -> None:
    """theta' <- tau * theta' + (1 - tau) * theta in place; buffers (BN statistics) copied."""
    torch._foreach_mul_(ema_params, tau)
    torch._foreach_add_(ema_params, params, alpha=1.0 - tau)
    if ema_buffers:
        torch._foreach_copy_(ema_buffers, buffers)  # one fused call: fewer kernel launches on a GPU


def full_model_attribution(model: nn.Module, latent: nn.Module, x: torch.Tensor,
                           labels: Optional[torch.Tensor]) -> torch.Tensor:
    """A at `latent` for model(x): the latent output becomes a detached leaf that needs grad.

    `labels=None`: A of each image's predicted class (the model's argmax), label-free.

    Used on the EMA copy (eval mode, parameters without grad), so its encoder records no graph.
    """
    holder: Dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        holder["z"] = out.detach().requires_grad_(True)
        return holder["z"]

    with Hooks().forward(latent, hook), torch.enable_grad():  # also under an outer no_grad
        logits = model(x)
        return grad_times_latent(holder["z"], logits, labels)


# ---- the regularizer -----------------------------------------------------------------------------
@REGULARIZERS.register("sgdrop")
class SGDrop(Regularizer):
    """Saliency-guided dropout at the latent layer (see the module docstring and docs/methods.md).

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> reg = build_regularizer(RegularizerConfig("sgdrop", {"rho": 0.05}), None)
        >>> reg.params.granularity, reg.params.ema
        ('element', True)
    """

    name = "sgdrop"

    @dataclass
    class Params:
        rho: float = -1.0  # drop rate; -1 = the paper's per-family value (DEFAULT_RHO)
        schedule: str = "fixed"  # fixed | linear (curriculum from rho_start to rho_max)
        rho_start: float = 0.0
        rho_max: float = -1.0  # end of the linear schedule; -1 = the per-family CURRICULUM_RHO_MAX
        ramp: float = 0.0  # ramp length in schedule_unit; 0 = the whole run
        schedule_unit: str = "step"  # step | epoch
        granularity: str = "element"  # element | spatial | channel
        ema: bool = True
        tau: float = 0.0  # EMA decay; 0 = from ema_horizon
        ema_horizon: float = 0.05  # EMA horizon 1/(1-tau) as a fraction of the run's steps
        ema_layout: str = "auto"  # memory format of the EMA copy: auto (channels_last on CPU) | keep | channels_last
        clean_ce_weight: float = 0.0
        k_override: int = -1  # >= 0 forces k (0 = no unit dropped); -1 = from rho
        positive_only: bool = False  # k as an upper bound: units without positive attribution never drop
        # remedies of the label leak (docs/methods.md, "The label leak"); the defaults are the paper's
        mask_label: str = "label"  # label | predicted (the attribution network's own class: label-free)
        mask_fraction: float = 1.0  # share of each batch that is masked (its first ceil(f * B) images)
        layer: str = ""  # "" = the model's latent layer

    def __init__(self, params: Any, ctx: RegContext):
        super().__init__(params, ctx)
        _validate(params)
        self.ema: Optional[nn.Module] = None
        self._pending_state: Optional[Dict[str, Any]] = None
        self._mask_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.hooks = Hooks()
        self.head: Optional[HeadRunner] = None
        self._rho: Optional[float] = None  # rho of the latest step (the leak diagnostic masks with it)

    # -- lifecycle --
    def setup(self, model: nn.Module) -> None:
        self.model = model
        self.layer = self.params.layer or self.ctx.latent_layer
        self.latent = get_module(model, self.layer)
        self.modules = list(model.modules())
        if self.params.ema:
            self._make_ema(model)
        else:
            self.head = HeadRunner(model, self.layer, probe_input(model, getattr(self.ctx, "image_size", 64)))
        self.hooks.forward(self.latent, self._latent_hook)

    def _make_ema(self, model: nn.Module) -> None:
        """Deep copy of the whole network before any hook of ours is on it; eval, no grad."""
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.ema_channels_last = self._channels_last(model)
        if self.ema_channels_last:  # same values; its inference forward is much faster on CPU
            self.ema = self.ema.to(memory_format=torch.channels_last)
        self.ema_latent = get_module(self.ema, self.layer)
        self._pairs = (list(self.ema.parameters()), list(model.parameters()),
                       list(self.ema.buffers()), list(model.buffers()))
        if self._pending_state is not None:
            self.load_state_dict(self._pending_state)

    def _channels_last(self, model: nn.Module) -> bool:
        layout = self.params.ema_layout
        on_cpu = next(model.parameters()).device.type == "cpu"
        return layout == "channels_last" or (layout == "auto" and on_cpu)

    def ema_attribution(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """A = relu(g * z') from the EMA copy (in its own memory format); y=None: its predicted class."""
        return full_model_attribution(self.ema, self.ema_latent, self._ema_input(x), y)

    def _ema_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.ema_channels_last else x

    def teardown(self, model: nn.Module) -> None:
        self.hooks.remove()

    def state_dict(self) -> Dict[str, Any]:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the EMA weights; before setup (the engine restores first) they wait for it."""
        if "ema" not in state:
            return
        if self.ema is None:
            self._pending_state = state
            return
        self.ema.load_state_dict(state["ema"])
        self._pending_state = None

    # -- schedule --
    @property
    def family(self) -> str:
        return model_family(self.ctx.model_name if self.ctx is not None else "")

    @property
    def base_rho(self) -> float:
        """The fixed rho: the user's, else the paper's value for the model family."""
        return self.params.rho if self.params.rho >= 0 else DEFAULT_RHO[self.family]

    @property
    def curriculum_end(self) -> float:
        """rho_max of the linear curriculum: the user's, else the per-family value above the fixed rho."""
        return self.params.rho_max if self.params.rho_max >= 0 else CURRICULUM_RHO_MAX[self.family]

    def total_steps(self) -> int:
        return max(1, self.ctx.steps_per_epoch * self.ctx.epochs)

    def rho_at(self, step: StepInfo) -> float:
        """rho of this step: fixed, or the linear curriculum from rho_start to rho_max."""
        p = self.params
        if p.schedule == "fixed":
            return self.base_rho
        end = self.curriculum_end
        if p.schedule_unit == "epoch":
            return linear_ramp(step.epoch - 1, p.ramp or self.ctx.epochs, p.rho_start, end)
        return linear_ramp(step.step, p.ramp or self.total_steps(), p.rho_start, end)

    @property
    def tau(self) -> float:
        return self.params.tau or ema_tau(self.total_steps(), self.params.ema_horizon)

    def k_for(self, rho: float, attribution_shape: torch.Size) -> int:
        """Units dropped per sample at the configured granularity."""
        b, c, h, w = attribution_shape
        units = {"element": c * h * w, "spatial": h * w, "channel": c}[self.params.granularity]
        return min(units, self.params.k_override) if self.params.k_override >= 0 else drop_count(rho, units)

    def masked_count(self, batch_size: int) -> int:
        """Images of a batch that get a mask: the first ceil(mask_fraction * B), at least one.

        Example:
            >>> from overfocus.regularizers import build_regularizer
            >>> from overfocus.config import RegularizerConfig
            >>> reg = build_regularizer(RegularizerConfig("sgdrop", {"mask_fraction": 0.5}), None)
            >>> reg.masked_count(64), reg.masked_count(5)
            (32, 3)
        """
        return min(batch_size, max(1, math.ceil(self.params.mask_fraction * batch_size - 1e-9)))

    # -- the step --
    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        x, y = batch.images, batch.labels
        rho = self._rho = self.rho_at(step)
        stats: Dict[str, Any] = {"rho": rho}
        b = len(y)
        m = self.masked_count(b)  # the batch is shuffled: its first m images are a random share
        target = None if self.params.mask_label == "predicted" else y[:m]
        if self.ema is not None:
            mask = self._mask(self.ema_attribution(x[:m], target), rho, stats, b, x.shape[-2:])
            self._mask_fn = lambda z: z * mask
        else:
            self._mask_fn = lambda z: z * self._mask(self._online_attribution(z[:m], x[:m], target), rho, stats, b,
                                                     x.shape[-2:])
        try:
            loss = F.cross_entropy(model(x), y)
        finally:
            self._mask_fn = None
        if self.params.clean_ce_weight:
            loss = loss + self.params.clean_ce_weight * F.cross_entropy(model(x), y)
        return loss, stats

    def _mask(self, attribution: torch.Tensor, rho: float, stats: Dict[str, Any],
              batch_size: Optional[int] = None, size: Tuple[int, ...] = (0, 0)) -> torch.Tensor:
        """M of the attribution's images, padded with ones (no mask) up to `batch_size` images.
        A transformer's latent tokens are units on their grid (models/tokens.py); the mask is made
        there and laid back on the tokens, the class / register tokens never dropped (`size`: the
        input's H x W, which gives the grid)."""
        layout = layout_of(self.model, self.latent, attribution.shape, size, self.layer)
        attribution = layout.to_map(attribution)
        k = self.k_for(rho, attribution.shape)
        if k == 0:
            stats["dropped_units"] = 0.0
            return torch.ones((), dtype=attribution.dtype, device=attribution.device)
        mask = sgdrop_mask(attribution, k, self.params.granularity, self.params.positive_only)
        rest = (batch_size or len(mask)) - len(mask)
        if rest > 0:
            mask = torch.cat([mask, mask.new_ones((rest, *mask.shape[1:]))])
        # k is an upper bound with positive_only, and unmasked images drop none: log the mean count.
        stats["dropped_units"] = (mask == 0).flatten(1).sum(1).float().mean()  # a tensor: no device sync
        return layout.from_map(mask)

    def _latent_hook(self, module: nn.Module, _inp, out: torch.Tensor):
        """Masks z only inside this regularizer's training forward (never in eval or nested runs)."""
        if self._mask_fn is None or not module.training:
            return None
        return self._mask_fn(out)

    def _online_attribution(self, z: torch.Tensor, x: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        """A from the online weights: psi alone (eval mode) on a detached leaf copy of z."""
        leaf = z.detach().requires_grad_(True)
        with eval_mode(self.modules), torch.enable_grad():
            logits = self.head(leaf, x)
        return grad_times_latent(leaf, logits, y)

    def after_step(self, model: nn.Module) -> None:
        if self.ema is not None:
            ema_update_(*self._pairs, tau=self.tau)

    # -- the leak diagnostic's view (regularizers/leak.py) --
    @torch.no_grad()
    def leak_logits(self, model: nn.Module, images: torch.Tensor,
                    labels: Sequence[Optional[torch.Tensor]]) -> List[torch.Tensor]:
        """Logits of `model` (as it is: the diagnostic puts it in eval mode) without a mask, then with
        the mask SGDrop makes for each labelling of the images (None: the attribution network's
        predicted class), at the rho of the latest step, on every image (`mask_fraction` does not apply).

        The latents of both networks are computed once; each labelling costs only a classifier
        (psi) forward and backward on the attribution side and a psi forward on the online side.
        """
        online, attr, attr_x = self._leak_heads(model, images)
        z = capture_output(model, self.latent, images)
        z_attr = z if self.ema is None else capture_output(self.ema, self.ema_latent, attr_x)
        rho = self._rho if self._rho is not None else self.rho_at(StepInfo(0, 1, 0))
        out = [online(z, images)]
        for y in labels:
            leaf = z_attr.detach().requires_grad_(True)
            with torch.enable_grad():
                attribution = grad_times_latent(leaf, attr(leaf, attr_x), y)
            out.append(online(z * self._mask(attribution, rho, {}, size=images.shape[-2:]), images))
        return out

    def _leak_heads(self, model: nn.Module, images: torch.Tensor) -> Tuple[HeadRunner, HeadRunner, torch.Tensor]:
        """psi of the online model and of the attribution network (made once), and the latter's input."""
        if getattr(self, "_online_head", None) is None:
            probe = probe_input(model, getattr(self.ctx, "image_size", 64))
            self._online_head = self.head or HeadRunner(model, self.layer, probe)
            self._attr_head = (self._online_head if self.ema is None
                               else HeadRunner(self.ema, self.layer, self._ema_input(probe)))
        return self._online_head, self._attr_head, (images if self.ema is None else self._ema_input(images))


def _validate(p: Any) -> None:
    """One-line errors for impossible SGDrop settings."""
    checks = [
        (p.rho < 0 and p.rho != -1.0, f"regularizer.rho={p.rho}: use a rate in [0, 1) or -1 for the default"),
        (p.rho >= 1, f"regularizer.rho={p.rho}: use a rate in [0, 1)"),
        (not 0 <= p.rho_start < 1, f"regularizer.rho_start={p.rho_start}: use a rate in [0, 1)"),
        (p.rho_max >= 1 or (p.rho_max < 0 and p.rho_max != -1.0),
         f"regularizer.rho_max={p.rho_max}: use a rate in [0, 1) or -1 (the per-family default)"),
        (p.schedule not in ("fixed", "linear"), f"regularizer.schedule={p.schedule!r}: choose fixed or linear"),
        (p.schedule_unit not in ("step", "epoch"),
         f"regularizer.schedule_unit={p.schedule_unit!r}: choose step or epoch"),
        (p.granularity not in GRANULARITIES,
         f"regularizer.granularity={p.granularity!r}: choose one of {', '.join(GRANULARITIES)}"),
        (p.ramp < 0, f"regularizer.ramp={p.ramp}: use a length >= 0 (0 = the whole run)"),
        (p.tau != 0 and not 0 < p.tau < 1, f"regularizer.tau={p.tau}: use 0 < tau < 1, or 0 for the automatic value"),
        (p.ema_horizon <= 0, f"regularizer.ema_horizon={p.ema_horizon}: use a positive fraction of the run"),
        (p.ema_layout not in ("auto", "keep", "channels_last"),
         f"regularizer.ema_layout={p.ema_layout!r}: choose auto, keep or channels_last"),
        (p.clean_ce_weight < 0, f"regularizer.clean_ce_weight={p.clean_ce_weight}: use a weight >= 0"),
        (p.k_override < -1, f"regularizer.k_override={p.k_override}: use -1 (off) or a count >= 0"),
        (p.mask_label not in MASK_LABELS,
         f"regularizer.mask_label={p.mask_label!r}: choose one of {', '.join(MASK_LABELS)}"),
        (not 0 < p.mask_fraction <= 1,
         f"regularizer.mask_fraction={p.mask_fraction}: use a share in (0, 1] (1 = every image)"),
    ]
    for bad, message in checks:
        if bad:
            raise OverfocusError(message)
