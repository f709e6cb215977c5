"""Model guidance with bounding boxes (METHODS.md section 5; Rao et al., ICCV 2023).

Per annotated image, an attribution map A of the gt-class logit, kept in the autograd graph
(create_graph=True) so the localisation loss trains the weights:
- `gradcam`: Grad-CAM at a layer (channel weights = spatial mean of the gradient, A = sum_c w_c F_c)
  in the authors' order: ReLU, then normalised by its maximum at the layer's resolution, THEN
  upsampled bilinearly to the input size, so no loss (RRR included) sees negative Grad-CAM
  attribution; `ixg`: input x gradient summed over colour channels (signed).
M = union of the image's boxes (optionally dilated). Losses per image, A+ = max(A, 0):
energy 1 - sum_M A+ / sum A+; l1 mean |A+/max A+ - M|; ppce mean over M of -log(A+/max A+)
(the log clamped at -100 as in binary cross-entropy, whose gradient stays finite and non-zero);
rrr sum outside M of (A / max|A|)^2. Total = CE + lambda_loc * sum over annotated images of L_loc.
Only a deterministic `annotated_fraction` of the images (chosen from a hash of seed and image id)
carries boxes; batches without one cost a plain step.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import OverfocusError
from ..models import MODELS, get_module
from ..models.hooks import Hooks
from .base import REGULARIZERS, Regularizer, StepInfo

LOSSES = ("energy", "l1", "ppce", "rrr")
# Defaults of lambda_loc: energy 1e-3 is METHODS.md's; the others are ours, scaled to each loss's range
# (l1 in [0, 1]; ppce up to 100 per image, typically a few; rrr sums over up to H*W pixels).
DEFAULT_LAMBDA = {"energy": 1e-3, "l1": 1e-3, "ppce": 1e-4, "rrr": 1e-6}
EPS = 1e-7


def is_annotated(image_id: str, seed: int, fraction: float) -> bool:
    """Whether an image carries boxes for guidance: a stable hash of (seed, id) below `fraction`.

    Example:
        >>> is_annotated("train_000001", 0, 1.0), is_annotated("train_000001", 0, 0.0)
        (True, False)
    """
    digest = hashlib.sha256(f"{seed}:{image_id}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def box_mask(boxes: torch.Tensor, height: int, width: int, dilation: float = 0.0) -> torch.Tensor:
    """H x W float mask of the union of boxes (x0, y0, x1, y1 in pixels); a pixel counts when its
    centre lies in a box grown by `dilation` pixels on each side.

    Example:
        >>> box_mask(torch.tensor([[1.0, 0.0, 3.0, 2.0]]), 3, 4)
        tensor([[0., 1., 1., 0.],
                [0., 1., 1., 0.],
                [0., 0., 0., 0.]])
    """
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32).view(-1, 1) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32).view(1, -1) + 0.5
    mask = torch.zeros(height, width, device=boxes.device, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.reshape(-1, 4).tolist():
        mask |= ((xs >= x0 - dilation) & (xs <= x1 + dilation) & (ys >= y0 - dilation) & (ys <= y1 + dilation))
    return mask.float()


def energy_loss(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1 - sum_M A+ / sum A+ per image (B), or 1 - sum_M A+ when the total is below 1e-7.

    Example:
        >>> m = torch.tensor([[[1.0, 0.0]]])
        >>> energy_loss(torch.tensor([[[2.0, -1.0]]]), m), energy_loss(torch.tensor([[[0.0, 3.0]]]), m)
        (tensor([0.]), tensor([1.]))
    """
    pos = a.clamp(min=0)
    total, inside = pos.sum((1, 2)), (pos * m).sum((1, 2))
    small = total < EPS
    return torch.where(small, 1.0 - inside, 1.0 - inside / torch.where(small, torch.ones_like(total), total))


def _normalised_positive(a: torch.Tensor) -> torch.Tensor:
    """A_hat = A+ / max(A+) per image (0 where the map has no positive value)."""
    pos = a.clamp(min=0)
    return pos / pos.amax((1, 2), keepdim=True).clamp_min(EPS)


def l1_loss(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """mean over pixels of |A_hat - M| per image."""
    return (_normalised_positive(a) - m).abs().mean((1, 2))


def ppce_loss(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """mean over pixels inside M of -log(A_hat) per image, the log clamped at -100.

    Binary cross-entropy against 1 is exactly -log(A_hat) with that clamp, and its backward stays
    finite at A_hat = 0 while a near-zero pixel keeps its (large) gradient: clipping A_hat itself
    at a floor would zero the gradient of every pixel below the floor.

    Example:
        >>> ppce_loss(torch.tensor([[[0.5, 1.0]]]), torch.tensor([[[1.0, 0.0]]]))
        tensor([0.6931])
    """
    a_hat = _normalised_positive(a)
    nll = F.binary_cross_entropy(a_hat, torch.ones_like(a_hat), reduction="none")
    return (nll * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)


def rrr_loss(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """sum over pixels outside M of (A / max|A|)^2 per image."""
    scaled = a / a.abs().amax((1, 2), keepdim=True).clamp_min(EPS)
    return (scaled.pow(2) * (1.0 - m)).sum((1, 2))


LOSS_FUNCTIONS = {"energy": energy_loss, "l1": l1_loss, "ppce": ppce_loss, "rrr": rrr_loss}


def gradcam_in_graph(features: torch.Tensor, score: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Grad-CAM (B x H x W) of a scalar `score` at `features`, differentiable, in the reference order:
    ReLU and divide by the map's maximum at the layer's resolution, then upsample bilinearly.

    Upsampling first would spread negative values into the input-size map (and move its maximum),
    so RRR would penalise negative attribution; this order keeps every map in [0, 1].

    Example:
        >>> f = torch.tensor([[[[1.0, -2.0]]]], requires_grad=True)  # 1 channel, 1 x 2
        >>> gradcam_in_graph(f, (f * 3.0).sum(), (1, 2))
        tensor([[[1., 0.]]], grad_fn=<SelectBackward0>)
    """
    (grads,) = torch.autograd.grad(score, features, create_graph=True)
    cam = F.relu((grads.mean((2, 3), keepdim=True) * features).sum(1, keepdim=True))
    cam = cam / cam.amax((2, 3), keepdim=True).clamp_min(EPS)
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]


def input_x_gradient_in_graph(x: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Input x gradient summed over colour channels (B x H x W), differentiable."""
    (grads,) = torch.autograd.grad(score, x, create_graph=True)
    return (x * grads).sum(1)


@REGULARIZERS.register("guidance")
class Guidance(Regularizer):
    """Box guidance of attribution maps (Rao et al.); needs a dataset with boxes.

    Hyper-parameters: `loss` (energy | l1 | ppce | rrr, default energy), `attribution` (gradcam |
    ixg), `layer` (Grad-CAM layer; "" = the model's Grad-CAM layer), `lambda_loc` (-1 = default per
    loss: energy 1e-3, l1 1e-3, ppce 1e-4, rrr 1e-6), `annotated_fraction` (default 1),
    `box_dilation` (pixels, default 0).

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> build_regularizer(RegularizerConfig("guidance"), None).lambda_loc
        0.001
    """

    name = "guidance"
    needs_boxes = True

    @dataclass
    class Params:
        loss: str = "energy"
        attribution: str = "gradcam"
        layer: str = ""
        lambda_loc: float = -1.0
        annotated_fraction: float = 1.0
        box_dilation: float = 0.0

    def __init__(self, params: Any, ctx):
        super().__init__(params, ctx)
        _validate(params)
        self.lambda_loc = params.lambda_loc if params.lambda_loc >= 0 else DEFAULT_LAMBDA[params.loss]
        self._annotated: Dict[str, bool] = {}

    def setup(self, model: nn.Module) -> None:
        self.model = model
        if self.params.attribution == "gradcam":
            self.layer = self.params.layer or _gradcam_layer(self.ctx)
            self.feature_module = get_module(model, self.layer)

    def annotated(self, image_id: str) -> bool:
        seed = self.ctx.seed if self.ctx is not None else 0
        if image_id not in self._annotated:
            self._annotated[image_id] = is_annotated(image_id, seed, self.params.annotated_fraction)
        return self._annotated[image_id]

    def loss(self, model: nn.Module, batch, step: StepInfo) -> Tuple[torch.Tensor, Dict[str, Any]]:
        rows = [i for i, (iid, b) in enumerate(zip(batch.image_ids, batch.boxes))
                if b.numel() and self.annotated(iid)]
        if not rows:
            return F.cross_entropy(model(batch.images), batch.labels), {"loc_loss": 0.0, "annotated": 0.0}
        logits, maps = self._forward_with_maps(model, batch)
        index = torch.tensor(rows, device=maps.device)
        h, w = maps.shape[1:]
        masks = torch.stack([box_mask(batch.boxes[i], h, w, self.params.box_dilation) for i in rows])
        loc = LOSS_FUNCTIONS[self.params.loss](maps.index_select(0, index), masks.to(maps.dtype))
        # A sum over images (Rao et al.); under DDP a sum over the GLOBAL batch (see StepInfo).
        loss = F.cross_entropy(logits, batch.labels) + self.lambda_loc * loc.sum() / step.batch_share
        return loss, {"loc_loss": loc.detach().mean(), "annotated": float(len(rows))}

    def _forward_with_maps(self, model: nn.Module, batch) -> Tuple[torch.Tensor, torch.Tensor]:
        """One forward: the logits for CE and the attribution maps, both in the graph."""
        x, y = batch.images, batch.labels
        if self.params.attribution == "ixg":
            x = x.detach().requires_grad_(True)
            logits = model(x)
            return logits, input_x_gradient_in_graph(x, logits.gather(1, y.view(-1, 1)).sum())
        held: List[torch.Tensor] = []
        with Hooks().forward(self.feature_module, lambda _m, _i, out: held.append(out)):
            logits = model(x)
        score = logits.gather(1, y.view(-1, 1)).sum()
        return logits, gradcam_in_graph(held[0], score, tuple(x.shape[2:]))


def _gradcam_layer(ctx) -> str:
    """As the engine's manifest: a user's latent-layer override, else the model's Grad-CAM layer."""
    if ctx.model_name not in MODELS:
        return ctx.latent_layer
    entry = MODELS.get(ctx.model_name)
    return ctx.latent_layer if ctx.latent_layer != entry.latent_layer else entry.gradcam_layer


def _validate(p: Any) -> None:
    if p.loss not in LOSSES:
        raise OverfocusError(f"regularizer.loss={p.loss!r}: choose one of {', '.join(LOSSES)}")
    if p.attribution not in ("gradcam", "ixg"):
        raise OverfocusError(f"regularizer.attribution={p.attribution!r}: choose gradcam or ixg")
    if not 0.0 <= p.annotated_fraction <= 1.0:
        raise OverfocusError(f"regularizer.annotated_fraction={p.annotated_fraction}: use a fraction in [0, 1]")
    if p.box_dilation < 0:
        raise OverfocusError(f"regularizer.box_dilation={p.box_dilation}: use pixels >= 0")
