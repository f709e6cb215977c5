"""`attribute`: maps of several methods for one batch; `normalize_maps`: per-sample max scaling."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..errors import OverfocusError
from .context import attribution_mode
from .methods import ATTRIBUTIONS, DEFAULT_METHODS, AttributionRequest, check_method_args


def _check_inputs(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        raise OverfocusError(f"images must be B x C x H x W, got shape {tuple(images.shape)}")
    targets = torch.as_tensor(targets, device=images.device).long().view(-1)
    if targets.numel() != images.shape[0]:
        raise OverfocusError(f"{targets.numel()} targets for {images.shape[0]} images: pass one class per image")
    return targets


def attribute(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
              methods: Union[str, Sequence[str]] = DEFAULT_METHODS, layer: str = "features",
              return_logits: bool = False, ig_steps: int = 16,
              method_args: Optional[Mapping[str, Mapping[str, Any]]] = None
              ) -> Union[Dict[str, torch.Tensor], Tuple[Dict[str, torch.Tensor], torch.Tensor]]:
    """Attribution maps of the PRE-SOFTMAX target logits, one B x H x W float32 map per method.

    Computed in eval mode; the model's train/eval flags, requires_grad flags and hooks are
    restored afterwards, also on exceptions. Maps are non-negative, at input size (bilinear
    upsampling for layer methods) and NOT normalised (see `normalize_maps`).

    Args:
        model: any nn.Module returning B x K logits.
        images: B x 3 x H x W, already mean/std normalised, on the model's device.
        targets: B class indices (ground truth, or predicted where labels are foreign).
        methods: names registered in ATTRIBUTIONS.
        layer: dotted module name for the layer methods (grad_cam, sgdrop, guided_grad_cam).
        return_logits: also return the B x K logits (detached).
        ig_steps: integration steps of integrated_gradients.
        method_args: per method, its arguments (e.g. {"score_cam": {"batch_size": 32},
            "captum:Occlusion": {"sliding_window_shapes": [3, 8, 8]}}); checked before any work.

    Example:
        >>> from overfocus.models import build_model
        >>> m = build_model("cifarnet", 3, width=0.125)
        >>> maps = attribute(m, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), layer="block3")
        >>> sorted(maps), maps["grad_cam"].shape
        (['grad_cam', 'sgdrop'], torch.Size([2, 32, 32]))
    """
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    fns = {name: ATTRIBUTIONS.get(name) for name in methods}  # unknown names fail before any work
    check_method_args(methods, method_args)
    targets = _check_inputs(images, targets)
    req = AttributionRequest(model, images, targets, layer, ig_steps=ig_steps, methods=methods,
                             method_args=dict(method_args or {}))
    with attribution_mode(model):
        if not any(fn.yields_logits for fn in fns.values()):
            with torch.no_grad():
                req.forward_fn()(images)  # checks the targets before a costly method runs
        # the passes that yield the logits (and check the targets) go first: a perturbation method's
        # first forward must not give the call's logits
        order = sorted(methods, key=lambda name: not fns[name].yields_logits)
        computed = {name: fns[name](req).detach().float() for name in order}
        maps = {name: computed[name] for name in methods}
    return (maps, req.cache["logits"]) if return_logits else maps


def normalize_maps(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Divide each sample's non-negative map by its own maximum (never a batch maximum).

    An all-zero map (or one with NaN/inf values) stays zero and is flagged degenerate; the
    result never holds NaN. Negative values are clipped to 0.

    Returns:
        (normalised maps of the input's shape, bool tensor B: degenerate).

    Example:
        >>> normed, degenerate = normalize_maps(torch.tensor([[[0., 2.]], [[0., 0.]]]))
        >>> normed.tolist(), degenerate.tolist()
        ([[[0.0, 1.0]], [[0.0, 0.0]]], [False, True])
    """
    flat = maps.detach().float().flatten(1)  # not reshape(B, -1), which fails for B = 0
    if flat.shape[1] == 0:
        return flat.reshape(maps.shape).clone(), torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
    # amax/amin propagate NaN and show +-inf: two fast reductions instead of an elementwise isfinite
    peak, low = flat.amax(dim=1), flat.amin(dim=1)
    degenerate = ~(torch.isfinite(peak) & torch.isfinite(low)) | (peak <= 0)
    scale = torch.where(degenerate, torch.ones_like(peak), peak)
    normed = flat.clamp_min(0).div_(scale[:, None])
    if bool(degenerate.any()):  # rare: touch those rows only (they may hold NaN)
        normed[degenerate] = 0.0
    return normed.reshape(maps.shape), degenerate
