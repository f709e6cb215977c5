"""Every registered model, attribution method, metric, regularizer and dataset kind gets a smoke test for
free, as timm's tests do over `list_models()`: an entry that registers is run here at once (tiny sizes,
CPU). The thorough tests of each live beside its module (tests/models/, tests/attribution/, ...)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from overfocus.analysis.core import FaithfulnessRequest, evaluate_batch
from overfocus.attribution import attribution_mode
from overfocus.attribution.api import attribute
from overfocus.attribution.methods import ATTRIBUTIONS
from overfocus.data import Batch, collate_samples, normalize, open_dataset
from overfocus.data.specs import DATASETS
from overfocus.metrics.registry import METRICS, compute_map_metrics
from overfocus.models import MODELS, build_model, get_module
from overfocus.models.layers import choose_layer
from overfocus.config import RegularizerConfig
from overfocus.regularizers import REGULARIZERS, RegContext, StepInfo, build_regularizer

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from test_data_formats import (make_coco, make_cub, make_folder_split, make_tiny_imagenet, make_voc,  # noqa: E402
                               make_yolo)

SIZE, CLASSES = 32, 3
MEAN, STD = (0.5,) * 3, (0.25,) * 3


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def _small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, CLASSES, width=0.125, small_input=True).eval()


# ---- models ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_runs_and_declares_its_layers(name):
    model = _small(name)
    with torch.no_grad():
        logits = model(_images())
    assert logits.shape == (2, CLASSES) and torch.isfinite(logits).all()
    entry = MODELS.get(name)
    for layer in (entry.latent_layer, entry.gradcam_layer):
        get_module(model, layer, "layer")  # a declared layer that does not exist raises


# ---- attribution methods --------------------------------------------------------------------------
def _model_for(method: str) -> torch.nn.Module:
    """Methods that read attention run on a registered ViT, the others on a CNN."""
    return _small("vit_tiny" if ATTRIBUTIONS.get(method).forward_pass == "attention" else "cifarnet")


@pytest.mark.parametrize("method", ATTRIBUTIONS.names())
def test_every_method_gives_one_finite_map_per_image(method):
    model, images = _model_for(method), _images()
    layer = choose_layer(model, images).name
    maps = attribute(model, images, torch.tensor([0, 2]), methods=[method], layer=layer)[method]
    assert maps.shape[0] == 2 and maps.dim() == 3 and torch.isfinite(maps).all()


# ---- metrics --------------------------------------------------------------------------------------
MAP_METRICS = [n for n in METRICS.names() if not METRICS.get(n).needs_model]
MODEL_METRICS = [n for n in METRICS.names() if METRICS.get(n).needs_model]


def _in_range(name: str, values: torch.Tensor) -> bool:
    lo, hi = METRICS.get(name).range
    finite = values[torch.isfinite(values)]
    return bool(((lo is None or finite >= lo - 1e-6) & (hi is None or finite <= hi + 1e-6)).all())


@pytest.mark.parametrize("name", MAP_METRICS)
def test_every_map_metric_scores_each_image_within_its_range(name):
    maps = torch.rand(2, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([[10.0, 0.0, 31.0, 16.0]])]
    human = torch.rand(2, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    values = compute_map_metrics(maps, [name], boxes=boxes, labels=torch.tensor([0, 1]), human=human)[name]
    assert values.shape == (2,) and torch.isfinite(values).any() and _in_range(name, values)


@pytest.mark.parametrize("name", MODEL_METRICS)
def test_every_model_metric_scores_each_image_within_its_range(name):
    model, images = _small("cifarnet"), _images()
    request = FaithfulnessRequest((name,), init_model=_small("cifarnet"))
    with attribution_mode(model):
        out = evaluate_batch(model, images, torch.tensor([0, 2]), None, mean=MEAN, std=STD, methods=("grad_cam",),
                             layer=choose_layer(model, images).name, metric_names=(), faithfulness=request)
    values = out.metrics["grad_cam"][name]
    assert values.shape == (2,) and _in_range(name, values)


# ---- regularizers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_takes_a_finite_training_step(name):
    data = open_dataset("builtin?train=8&test=4&classes=3", "train", SIZE)
    raw = collate_samples([data[i] for i in range(4)])
    batch = Batch(normalize(raw.images, MEAN, STD), raw.labels, raw.boxes, raw.image_ids)  # as the engine feeds it
    model = _small("cifarnet").train()
    entry = MODELS.get("cifarnet")
    ctx = RegContext("cifarnet", entry.latent_layer, CLASSES, 2, 1, torch.device("cpu"), True, SIZE, 0)
    reg = build_regularizer(RegularizerConfig(name=name), ctx)
    reg.setup(model)
    try:
        reg.on_epoch_start(1)
        loss, _stats = reg.loss(model, batch, StepInfo(0, 1, 0, 1.0))
        loss.backward()
        reg.after_step(model)
    finally:
        reg.teardown(model)
    assert math.isfinite(float(loss.detach())) and any(p.grad is not None for p in model.parameters())


# ---- dataset kinds --------------------------------------------------------------------------------
WRITERS = {"builtin": None, "folder": make_folder_split, "tiny-imagenet": make_tiny_imagenet, "cub": make_cub,
           "voc": make_voc, "coco": make_coco, "yolo": make_yolo}


@pytest.mark.parametrize("kind", DATASETS.names())
def test_every_dataset_kind_opens_both_splits(kind, tmp_path):
    assert kind in WRITERS, f"dataset kind {kind!r} has no smoke fixture: add its writer to WRITERS"
    spec = "builtin?train=6&test=4" if WRITERS[kind] is None else f"{kind}:{WRITERS[kind](tmp_path / kind)}"
    for split in ("train", "test"):
        data = open_dataset(spec, split, SIZE)
        assert len(data) > 0 and data.classes
        sample = data[0]
        assert tuple(sample["image"].shape) == (3, SIZE, SIZE) and 0 <= int(sample["label"]) < len(data.classes)
