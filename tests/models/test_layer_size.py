"""No silent constant maps: a layer below 4 x 4 at the image size is named, with a larger layer to
use, by analyze, audit and `overfocus.attribute`; analyze refuses a 1 x 1 layer nobody asked for."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn

import overfocus
from overfocus.cli import main
from overfocus.errors import cli_spelling
from overfocus.models.layers import LayerChoice, choose_layer, small_layer_note
from overfocus.models import build_model

DATA = "builtin?classes=3&train=8&test=8"
RESNET = ["--model", "resnet18", "--width", "0.125", "--num-classes", "3"]  # ImageNet stem: layer4 is 1 x 1 at 32 px


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    torch.save(build_model("resnet18", 3, width=0.125).state_dict(), folder / "epoch_0001.pt")
    return folder


def test_the_note_names_the_size_and_a_larger_layer():
    model = build_model("resnet18", 3, width=0.125)
    with cli_spelling():
        note = small_layer_note(model, "layer4", torch.zeros(1, 3, 32, 32))
    assert "'layer4' is 1 x 1 at 32 x 32 px" in note and "--layer layer2 (4 x 4)" in note
    with cli_spelling():
        assert "is 2 x 2 at 64 x 64" in small_layer_note(model, "layer4", torch.zeros(1, 3, 64, 64))
    assert small_layer_note(model, "layer4", torch.zeros(1, 3, 128, 128)) is None
    assert small_layer_note(build_model("cifarnet", 3, width=0.125), "block3", torch.zeros(1, 3, 32, 32)) is None


def test_analyze_refuses_a_1x1_layer_it_was_not_asked_for(resnet_folder, tmp_path, capsys):
    code = main(["analyze", str(resnet_folder), *RESNET, "--data", DATA, "--image-size", "32", "--device", "cpu",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err
    assert "'layer4' is 1 x 1 at 32 x 32 px" in lines[-1] and "--layer layer2" in lines[-1]
    assert not (tmp_path / "o" / "analysis" / "summary.csv").exists()


def test_analyze_warns_when_the_small_layer_is_named(resnet_folder, tmp_path, capsys):
    code = main(["analyze", str(resnet_folder), *RESNET, "--layer", "layer4", "--data", DATA, "--image-size", "32",
                 "--device", "cpu", "--limit", "4", "--methods", "grad_cam", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning: attribution layer 'layer4' is 1 x 1" in line]
    assert len(warning) == 1 and "--layer layer2" in warning[0]


def test_audit_reports_the_small_layer(resnet_folder, tmp_path, capsys):
    code = main(["audit", str(resnet_folder / "epoch_0001.pt"), *RESNET, "--data", DATA, "--image-size", "32",
                 "--limit", "4", "--out", str(tmp_path / "a")])
    capsys.readouterr()
    assert code in (0, 1)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    messages = [f["message"] for f in report["findings"]]
    assert any("'layer4' is 1 x 1 at 32 x 32 px" in m and "--layer layer2" in m for m in messages), messages
    assert not any("assumed 32 px" in m for m in messages)  # --image-size was given: only mean/std were assumed


def test_attribute_warns_in_python_spelling():
    model = build_model("resnet18", 3, width=0.125).eval()
    with pytest.warns(UserWarning, match=r"'layer4' is 1 x 1 .* pass layer='layer2'"):
        overfocus.attribute(model, torch.rand(1, 3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        overfocus.attribute(model, torch.rand(1, 3, 128, 128))  # 4 x 4: no warning


def test_choose_layer_precedence_is_asked_then_declared_then_found():
    """One precedence for every caller: the layer asked for wins over the declared one, which wins
    over the forward-pass pick; only the pick is marked automatic (the callers announce it)."""
    model = build_model("resnet18", 3, width=0.125, small_input=True)
    x = torch.zeros(1, 3, 32, 32)
    assert choose_layer(model, x, asked="layer3") == LayerChoice("layer3", "asked for", False)
    assert choose_layer(model, x).name == "layer4" and not choose_layer(model, x).automatic
    assert choose_layer(model, x, declared="layer2").name == "layer2"
    bare = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1))
    found = choose_layer(bare, torch.zeros(1, 3, 16, 16))
    assert found.automatic and found.name == "2" and "spatial output" in found.reason
