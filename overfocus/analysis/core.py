"""The one evaluation of a batch, shared by `analyze` and `audit`: normalise, forward with the
coverage hooks, attribute, and compute the map metrics.

Coverage hooks ride on the attribution's own forward pass when every method comes from one pass
(`shared_forward`); otherwise (and for target=predicted, or without methods) a separate no-grad
forward gives the logits and feeds the hooks, and attribution follows.

Example:
    >>> from overfocus.models import build_model
    >>> model = build_model("cifarnet", 3, width=0.125).eval()
    >>> out = evaluate_batch(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), None,
    ...                      mean=(0.5,) * 3, std=(0.25,) * 3, methods=("grad_cam",), layer="block3",
    ...                      metric_names=("area_ratio", "gini"))
    >>> sorted(out.metrics["grad_cam"]), tuple(out.logits.shape), out.degenerate["grad_cam"].shape
    (['area_ratio', 'gini'], (2, 3), torch.Size([2]))

A model whose weights or logits hold NaN or inf (a diverged training) is not evaluated: its maps
would all be degenerate and read as extreme overfocusing. `check_finite_weights` and the logits
check of `evaluate_batch` raise `NonFiniteModel` (an OverfocusError), which analyze turns into a
skipped checkpoint and audit into a one-line error.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..attribution import attribute
from ..data import normalize
from ..errors import OverfocusError
from ..metrics import MapBatch, compute_map_metrics
from ..metrics.faithfulness import FaithfulnessOptions, MapPerturbation, PerturbationBatch
from ..metrics.registry import compute_model_metrics
from ..metrics.sanity import other_classes

RANDOM_BASELINE = "random"  # the method whose faithfulness is the chance level of the others


class NonFiniteModel(OverfocusError):
    """The model's weights or logits hold NaN or inf: nothing it gives can be measured."""


@dataclass
class BatchEvaluation:
    """One batch evaluated: float32 maps per method, float32 logits, map metrics per method and,
    per method, which maps are degenerate (B bool: all zero or holding a non-finite value)."""

    maps: Dict[str, torch.Tensor]
    logits: torch.Tensor
    metrics: Dict[str, Dict[str, torch.Tensor]]
    degenerate: Dict[str, torch.Tensor]

    def confidence_and_prediction(self):
        """(softmax confidence, predicted class) per image."""
        return torch.softmax(self.logits.detach().float(), 1).max(1)


@dataclass(frozen=True)
class FaithfulnessRequest:
    """The model-dependent metrics of a batch (faithfulness and sanity, `MetricSpec.needs_model`).

    `metric_names`: which ones; `baseline`: a method whose maps get the same faithfulness metrics
    beside the others, as their chance level (None: none); `init_model`: the run's model with its
    epoch-0 weights, for `sanity_init` (None: not computed).
    """

    metric_names: Tuple[str, ...]
    options: FaithfulnessOptions = FaithfulnessOptions()
    baseline: Optional[str] = RANDOM_BASELINE
    init_model: Optional[nn.Module] = None


def evaluate_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, boxes, *, mean, std,
                   methods: Sequence[str], layer: Optional[str], metric_names: Sequence[str],
                   target: str = "gt", coverage=None, shared_forward: bool = True,
                   human: Optional[torch.Tensor] = None, amp_dtype: Optional[torch.dtype] = None,
                   channels_last: bool = False,
                   method_args: Optional[Mapping[str, Mapping[str, Any]]] = None,
                   faithfulness: Optional[FaithfulnessRequest] = None) -> BatchEvaluation:
    """Evaluate one batch of [0, 1] images (on the model's device) with the model as it is.

    Args:
        model: in eval mode; call inside `attribution_mode(model)` to keep its parameters frozen
            over many batches (attribute() then skips its own per-call bookkeeping).
        labels: B class indices (the targets when target="gt").
        boxes: B box tensors, or None when the data has none (box metrics are skipped).
        methods: attribution methods (may be empty: logits only).
        metric_names: map metrics computed per method (those whose needs are unmet are skipped).
        target: "gt" or "predicted".
        coverage: a NeuronCoverage whose hooks see the batch's forward, or None.
        shared_forward: the coverage hooks may ride on the attribution's forward.
        human: B x H x W human maps for the metrics that need them.
        amp_dtype: autocast dtype, or None for float32.
        method_args: per method, its arguments (`--method-args`), e.g. {"score_cam": {"batch_size": 32}}.
        faithfulness: the model-dependent metrics to add (`faithfulness_metrics`), or None; the
            baseline method's values join `metrics` under its name.
    """
    x = normalize(images, mean, std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    separate = target == "predicted" or not methods or (coverage is not None and not shared_forward)
    hooks = coverage if coverage is not None else nullcontext()
    autocast = torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    maps: Dict[str, torch.Tensor] = {}
    targets = labels
    with autocast:
        if separate:
            with torch.no_grad(), hooks:
                logits = model(x)
            if target == "gt":
                check_label_space(labels, int(logits.shape[1]))
            targets = logits.argmax(1) if target == "predicted" else labels
            if methods:
                maps = attribute(model, x, targets, methods=methods, layer=layer, method_args=method_args)
        else:
            with hooks:
                maps, logits = attribute(model, x, labels, methods=methods, layer=layer, return_logits=True,
                                         method_args=method_args)
    check_finite_logits(logits)
    # under autocast maps and logits may come back in half precision: metrics work in float32
    maps = {m: v.float() for m, v in maps.items()}
    batches = {m: MapBatch(maps[m], boxes) for m in methods}  # one normalisation for metrics and flags
    metrics = {m: compute_map_metrics(batches[m], names=list(metric_names), boxes=boxes, labels=labels,
                                      human=human) for m in methods}
    if faithfulness is not None and faithfulness.metric_names:
        extra = faithfulness_metrics(model, images, targets, maps, int(logits.shape[1]), mean=mean, std=std,
                                     layer=layer, request=faithfulness, amp_dtype=amp_dtype,
                                     channels_last=channels_last, method_args=method_args)
        for method, table in extra.items():
            metrics.setdefault(method, {}).update(table)
    return BatchEvaluation(maps, logits.float(), metrics, {m: batches[m].degenerate for m in methods})


def faithfulness_metrics(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                         maps: Dict[str, torch.Tensor], num_classes: int, *, mean, std, layer: Optional[str],
                         request: FaithfulnessRequest, amp_dtype: Optional[torch.dtype] = None,
                         channels_last: bool = False,
                         method_args: Optional[Mapping[str, Mapping[str, Any]]] = None
                         ) -> Dict[str, Dict[str, torch.Tensor]]:
    """The model-dependent metrics of `request` per method (and for its baseline method): every
    perturbed copy goes through `model` in chunks (metrics/faithfulness.py); the sanity references
    are the maps of the same images under `request.init_model` and for another class.

    Example:
        >>> from overfocus.models import build_model
        >>> model = build_model("cifarnet", 3, width=0.125).eval()
        >>> x, t = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
        >>> maps = attribute(model, x, t, methods=("grad_cam",), layer="block3")
        >>> out = faithfulness_metrics(model, x, t, maps, 3, mean=(0.5,) * 3, std=(0.25,) * 3, layer="block3",
        ...                            request=FaithfulnessRequest(("deletion", "sanity_class")))
        >>> sorted(out), sorted(out["grad_cam"]), sorted(out["random"])
        (['grad_cam', 'random'], ['deletion', 'sanity_class'], ['deletion'])
    """
    autocast = (lambda: torch.autocast(images.device.type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    fill = torch.as_tensor(mean, dtype=torch.float32, device=images.device)

    def model_input(x01: torch.Tensor) -> torch.Tensor:
        x = normalize(x01, mean, std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    def predict(x01: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        with autocast():
            logits = model(model_input(x01))
        return torch.softmax(logits.float(), 1).gather(1, classes.view(-1, 1))[:, 0]

    batch = PerturbationBatch(predict, images, targets, request.options, fill=fill)
    methods = [m for m in maps if m != request.baseline]
    x = model_input(images)
    references: Dict[str, Dict[str, torch.Tensor]] = {m: {} for m in methods}
    names = set(request.metric_names)
    with autocast():
        if methods and request.init_model is not None and names & {"sanity_init", "sanity_init_ssim"}:
            for m, v in attribute(request.init_model, x, targets, methods=methods, layer=layer,
                                  method_args=method_args).items():
                references[m]["init"] = v.float()
        if methods and names & {"sanity_class", "sanity_class_ssim"}:
            others = other_classes(targets, num_classes, batch.seeds)
            for m, v in attribute(model, x, others, methods=methods, layer=layer, method_args=method_args).items():
                references[m]["class"] = v.float()
        all_maps = dict(maps)
        if request.baseline is not None and request.baseline not in all_maps:
            all_maps[request.baseline] = attribute(model, x, targets, methods=(request.baseline,),
                                                   layer=layer)[request.baseline].float()
    return {m: compute_model_metrics(MapPerturbation(batch, v.float(), references.get(m, {})), request.metric_names)
            for m, v in all_maps.items()}


def check_finite_logits(logits: torch.Tensor) -> None:
    """NonFiniteModel when any logit is NaN or inf (one device sync per batch).

    Example:
        >>> check_finite_logits(torch.tensor([[0.0, float("nan")]]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.analysis.core.NonFiniteModel: non-finite logits (NaN or inf): the model diverged ...
    """
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteModel("non-finite logits (NaN or inf): the model diverged (or its inputs overflow); "
                             "use a checkpoint from before the divergence")


def check_finite_weights(model: nn.Module) -> None:
    """NonFiniteModel naming the first parameter or buffer holding NaN or inf.

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.bias.fill_(float("inf"))
        >>> check_finite_weights(layer)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.analysis.core.NonFiniteModel: non-finite weights (NaN or inf) in bias: the training ...
    """
    for name, tensor in model.state_dict().items():
        if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteModel(f"non-finite weights (NaN or inf) in {name}: the training diverged; "
                                 "use a checkpoint from before the divergence")


def check_label_space(labels: torch.Tensor, outputs: int) -> None:
    """Ground-truth targets must be classes of the model."""
    if len(labels) and int(labels.max()) >= outputs:
        raise OverfocusError(f"the data has label {int(labels.max())} but the model has {outputs} outputs: "
                             "the class lists differ; pass --target predicted to explain the predicted class")
