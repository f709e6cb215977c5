"""Model options: model.batch_norm for the VGGs (the seed's BN-free VGG) and its initialisation."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from overfocus.config import build_config
from overfocus.errors import OverfocusError
from overfocus.models import build_model
from overfocus.runs.manifest import RunInfo
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint
from overfocus.training.engine import train


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_batch_norm_default_is_unchanged():
    assert _has_bn(build_model("vgg11", 10, 0.25, small_input=True))
    assert not _has_bn(build_model("vgg11", 10, 0.25, small_input=False))


def test_batch_norm_false_gives_the_bn_free_vgg_with_the_same_layout_otherwise():
    bn = build_model("vgg11", 10, 0.25, small_input=True)
    free = build_model("vgg11", 10, 0.25, small_input=True, batch_norm=False)
    assert not _has_bn(free) and _has_bn(build_model("vgg16", 10, 0.25, small_input=False, batch_norm=True))
    convs = lambda m: [tuple(c.weight.shape) for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert convs(bn) == convs(free)
    pools = lambda m: sum(isinstance(c, nn.MaxPool2d) for c in m.features)  # noqa: E731
    assert pools(free) == pools(bn) == 3
    assert free(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_bn_free_init_keeps_the_forward_scale_through_the_depth():
    """Kaiming fan_in: the latent's scale stays near the input's; torchvision's fan_out shrinks it."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, 64, 64)
    free = build_model("vgg11", 10, 0.25, small_input=True, batch_norm=False).eval()
    latent_rms = free.features(x).pow(2).mean().sqrt().item()
    assert 0.2 < latent_rms < 5.0
    shrunk = build_model("vgg11", 10, 0.25, small_input=True, batch_norm=False).eval()
    for m in shrunk.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    assert shrunk.features(x).pow(2).mean().sqrt().item() < latent_rms / 2


def test_batch_norm_on_a_model_without_the_option_is_a_one_line_error():
    with pytest.raises(OverfocusError, match="only the VGGs"):
        build_model("resnet18", 10, 0.25, small_input=True, batch_norm=False)
    assert type(build_model("resnet18", 10, 0.25, small_input=True, batch_norm=None)).__name__ == "_ScaledResNet"


def test_config_field_reaches_the_trained_model(tmp_path):
    cfg = build_config(overrides=["data.spec=builtin?classes=3&train=16&test=8", "data.image_size=32",
                                  "data.batch_size=8", "model.name=vgg11", "model.width=0.125",
                                  "model.small_input=true", "model.batch_norm=false", "train.progress=false",
                                  "train.epochs=1"])
    assert cfg.model.batch_norm is False
    run = RunDir(train(cfg, tmp_path / "run"))
    assert run.read_manifest()["config"]["model"]["batch_norm"] is False
    state = load_checkpoint(run.checkpoint_path(1))["model"]
    assert not any("running_mean" in key for key in state)
    info = RunInfo.from_manifest(run.read_manifest())  # what analysis rebuilds the model from
    assert info.batch_norm is False
    build_model("vgg11", 3, 0.125, True, info.batch_norm).load_state_dict(state)
    assert build_config(overrides=[]).model.batch_norm is None
