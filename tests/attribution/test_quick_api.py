"""`overfocus.attribute` / `overfocus.overlay`: the five-line route to a map (README)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import overfocus
from overfocus.attribution import attribute as attribute_raw
from overfocus.data import normalize
from overfocus.errors import OverfocusError
from overfocus.models import build_model

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_defaults_are_the_predicted_class_the_declared_layer_and_maps_in_0_1():
    model = build_model("resnet18", num_classes=4, width=0.125, small_input=True).eval()
    images = torch.rand(3, 3, 32, 32)
    maps = overfocus.attribute(model, images, mean=MEAN, std=STD)
    assert list(maps) == ["grad_cam"] and maps["grad_cam"].shape == (3, 32, 32)
    x = normalize(images, MEAN, STD)
    predicted = model(x).argmax(1)
    raw = attribute_raw(model, x, predicted, methods=("grad_cam",), layer="layer4")["grad_cam"]
    expected = raw / raw.flatten(1).amax(1).clamp_min(1e-30)[:, None, None]
    assert torch.allclose(maps["grad_cam"], expected, atol=1e-5)
    assert 0.0 <= float(maps["grad_cam"].min()) and float(maps["grad_cam"].max()) <= 1.0


def test_explicit_targets_and_a_foreign_model_get_the_last_conv_block():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    images = torch.randn(2, 3, 16, 16)
    maps = overfocus.attribute(model, images, targets=torch.tensor([1, 4]), methods=("grad_cam", "sgdrop"))
    raw = attribute_raw(model, images, torch.tensor([1, 4]), methods=("grad_cam",), layer="3")["grad_cam"]
    assert sorted(maps) == ["grad_cam", "sgdrop"]
    assert torch.allclose(maps["grad_cam"], overfocus.normalize_maps(raw)[0])


def test_overlay_takes_tensors_and_arrays():
    image = torch.zeros(3, 8, 8)
    hot = torch.zeros(8, 8)
    hot[2, 3] = 1.0
    rgb = overfocus.overlay(image, hot, alpha=1.0)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb[2, 3].tolist() == [252, 255, 164] and rgb[0, 0].tolist() != [252, 255, 164]  # inferno top / bottom
    assert np.array_equal(overfocus.overlay(np.zeros((8, 8, 3), np.uint8), hot.numpy(), alpha=1.0), rgb)


def test_bad_input_is_one_line():
    model = build_model("cifarnet", num_classes=3, width=0.125)
    with pytest.raises(OverfocusError, match="mean and std together"):
        overfocus.attribute(model, torch.rand(1, 3, 32, 32), mean=MEAN)
    with pytest.raises(OverfocusError, match="B x C x H x W"):
        overfocus.attribute(model, torch.rand(3, 32, 32))
    with pytest.raises(OverfocusError, match="did you mean 'grad_cam'"):
        overfocus.attribute(model, torch.rand(1, 3, 32, 32), methods="gradcam")
