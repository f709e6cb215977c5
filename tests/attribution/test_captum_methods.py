"""`captum:ClassName`: any Captum attribution, equal to Captum's own call under THE map rule
(relu of the channel sum, bilinear upsampling to the input size; captum_methods.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from overfocus.attribution import ATTRIBUTIONS, attribute
from overfocus.errors import OverfocusError
from overfocus.models import build_model, get_module


def _case(seed=0):
    torch.manual_seed(seed)
    model = build_model("cifarnet", num_classes=4, width=0.125).eval()
    return model, torch.randn(3, 3, 32, 32), torch.tensor([0, 3, 1])


def _rule(attr: torch.Tensor, size=(32, 32)) -> torch.Tensor:
    m = torch.relu(attr.detach().sum(dim=1))
    return m if tuple(m.shape[-2:]) == size else F.interpolate(m[:, None], size=size, mode="bilinear",
                                                                 align_corners=False)[:, 0]


def _ours(model, x, t, name, **args):
    return attribute(model, x, t, methods=name, layer="block3", method_args={name: args} if args else None)[name]


def test_integrated_gradients_equals_captums_call_and_the_projects_method():
    from captum.attr import IntegratedGradients

    model, x, t = _case()
    ours = _ours(model, x, t, "captum:IntegratedGradients", n_steps=16)
    theirs = IntegratedGradients(model).attribute(x, target=t, n_steps=16)
    assert float(ours.max()) > 0
    torch.testing.assert_close(ours, _rule(theirs), rtol=1e-4, atol=1e-6)
    project = attribute(model, x, t, methods="integrated_gradients", layer="block3")["integrated_gradients"]
    torch.testing.assert_close(ours, project, rtol=1e-4, atol=1e-6)


def test_layer_grad_cam_is_grad_cam():
    from captum.attr import LayerGradCam

    model, x, t = _case()
    ours = _ours(model, x, t, "captum:LayerGradCam")
    theirs = LayerGradCam(model, get_module(model, "block3")).attribute(x, target=t)
    torch.testing.assert_close(ours, _rule(theirs), rtol=1e-5, atol=1e-7)
    grad_cam = attribute(model, x, t, methods="grad_cam", layer="block3")["grad_cam"]
    torch.testing.assert_close(ours, grad_cam, rtol=1e-5, atol=1e-7)


def test_occlusion_takes_its_arguments_from_method_args():
    from captum.attr import Occlusion

    model, x, t = _case()
    ours = _ours(model, x, t, "captum:Occlusion", sliding_window_shapes=[3, 8, 8], strides=[3, 4, 4])
    theirs = Occlusion(model).attribute(x, target=t, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4))
    assert float(ours.max()) > 0
    torch.testing.assert_close(ours, _rule(theirs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls_name", ["GuidedBackprop", "DeepLift", "Saliency", "InputXGradient"])
def test_input_space_classes_equal_captums_call(cls_name):
    import captum.attr

    model, x, t = _case()
    ours = _ours(model, x, t, f"captum:{cls_name}")
    theirs = getattr(captum.attr, cls_name)(model).attribute(x, target=t)
    assert float(ours.max()) > 0 and ours.shape == (3, 32, 32)
    torch.testing.assert_close(ours, _rule(theirs), rtol=1e-5, atol=1e-7)


def test_constructor_arguments_go_to_the_constructor():
    from captum.attr import IntegratedGradients

    model, x, t = _case()
    ours = _ours(model, x, t, "captum:IntegratedGradients", n_steps=8, multiply_by_inputs=False)
    theirs = IntegratedGradients(model, multiply_by_inputs=False).attribute(x, target=t, n_steps=8)
    torch.testing.assert_close(ours, _rule(theirs), rtol=1e-4, atol=1e-6)


def test_logits_are_the_unperturbed_ones_whatever_the_order_of_methods():
    model, x, t = _case()
    for methods in (("captum:IntegratedGradients", "grad_cam"), ("integrated_gradients", "sgdrop"),
                    ("captum:Occlusion",)):
        args = {"captum:Occlusion": {"sliding_window_shapes": [3, 16, 16], "strides": 16}}
        maps, logits = attribute(model, x, t, methods=methods, layer="block3", return_logits=True,
                                 method_args={m: a for m, a in args.items() if m in methods})
        assert list(maps) == list(methods)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x))


def test_bad_names_and_arguments_are_one_line():
    model, x, t = _case()
    with pytest.raises(OverfocusError, match="did you mean 'IntegratedGradients'"):
        ATTRIBUTIONS.get("captum:IntegratedGradient")
    with pytest.raises(OverfocusError, match="needs sliding_window_shapes"):
        _ours(model, x, t, "captum:Occlusion")
    with pytest.raises(OverfocusError, match="has no argument 'nsteps'.*did you mean 'n_steps'"):
        _ours(model, x, t, "captum:IntegratedGradients", nsteps=3)
    with pytest.raises(OverfocusError, match="overfocus passes it"):
        _ours(model, x, t, "captum:Saliency", target=1)
    with pytest.raises(OverfocusError, match="not among the methods"):
        attribute(model, x, t, methods="grad_cam", layer="block3", method_args={"captum:Saliency": {"abs": False}})
    with pytest.raises(OverfocusError, match="captum:Occlusion failed"):
        _ours(model, x, t, "captum:Occlusion", sliding_window_shapes=[2, 2])  # wrong rank for 3 x H x W
    assert "captum:Saliency" in ATTRIBUTIONS and "captum:Nothing" not in ATTRIBUTIONS


def test_a_class_that_does_not_fit_the_model_is_one_line():
    model, x, t = _case()
    with pytest.raises(OverfocusError, match="captum:LayerLRP failed on this model"):
        _ours(model, x, t, "captum:LayerLRP")  # LRP has no rule for a Sequential block


def test_a_layer_attribution_of_a_non_spatial_layer_is_one_line():
    model, x, t = _case()
    with pytest.raises(OverfocusError, match="a map needs B x C x H x W"):
        attribute(model, x, t, methods="captum:LayerActivation", layer="classifier")


def test_every_listed_class_has_a_title_and_metadata():
    from overfocus.attribution import method_info

    names = ATTRIBUTIONS.family_names()
    assert {"captum:IntegratedGradients", "captum:Occlusion", "captum:LayerGradCam", "captum:DeepLift"} <= set(names)
    info = method_info(names)
    assert info["captum:Occlusion"] == {"title": "Occlusion (Captum)", "yields_logits": False}


def test_analyze_cli_takes_cam_and_captum_methods_with_their_arguments(tiny_run, tmp_path, capsys):
    import json

    from conftest import copy_run

    from overfocus.analysis import read_summary
    from overfocus.cli import main

    run = copy_run(tiny_run, tmp_path / "run")
    methods = "grad_cam,grad_cam_pp,hirescam,score_cam,captum:IntegratedGradients,sgdrop"
    code = main(["analyze", str(run), "--epochs", "1", "--limit", "8", "--methods", methods,
                 "--method-args", "captum:IntegratedGradients.n_steps=4", "--method-args", "score_cam.batch_size=16"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["method_info"]["captum:IntegratedGradients"]["title"] == "IntegratedGradients (Captum)"
    assert meta["method_info"]["grad_cam_pp"]["title"] == "Grad-CAM++"
    assert meta["method_args"] == {"captum:IntegratedGradients": {"n_steps": 4}, "score_cam": {"batch_size": 16}}
    assert {r["method"] for r in read_summary(run)} >= set(methods.split(","))
    # other arguments are other settings: refused without --force, like any changed setting
    assert main(["analyze", str(run), "--epochs", "1", "--limit", "8", "--methods", methods,
                 "--method-args", "captum:IntegratedGradients.n_steps=8"]) == 2
    assert "method_args" in capsys.readouterr().err
    assert main(["analyze", str(run), "--methods", "captum:Occlusion"]) == 2
    assert "needs sliding_window_shapes" in capsys.readouterr().err


def test_audit_takes_methods_and_their_arguments(tiny_run, tmp_path, capsys):
    import json

    from overfocus.cli import main

    out = tmp_path / "audit"
    assert main(["audit", str(tiny_run), "--limit", "8", "--methods", "hirescam,captum:Occlusion",
                 "--method-args", "captum:Occlusion.sliding_window_shapes=[3,8,8]",
                 "--method-args", "captum:Occlusion.strides=8", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method_info"]["captum:Occlusion"]["title"] == "Occlusion (Captum)"
    assert report["inputs"]["method_args"] == {"captum:Occlusion": {"sliding_window_shapes": [3, 8, 8], "strides": 8}}
    assert "captum:Occlusion.area_ratio" in report["metric_info"]
    capsys.readouterr()
    assert main(["audit", str(tiny_run), "--methods", "grad_cam", "--method-args", "score_cam.batch_size=3",
                 "--out", str(tmp_path / "a2")]) == 2
    assert "not among the methods" in capsys.readouterr().err


def test_the_quick_api_passes_method_args():
    import overfocus

    model, x, _ = _case()
    maps = overfocus.attribute(model, x, methods="captum:Occlusion", layer="block3",
                               method_args={"captum:Occlusion": {"sliding_window_shapes": [3, 16, 16], "strides": 16}})
    assert maps["captum:Occlusion"].shape == (3, 32, 32) and float(maps["captum:Occlusion"].max()) == 1.0


def test_nproc_forwards_every_method_argument():
    from overfocus.cli import build_parser
    from overfocus.commands.analyze import forwarded_argv

    args = build_parser().parse_args(["analyze", "runs/x", "--nproc", "2", "--methods", "score_cam,captum:Occlusion",
                                      "--method-args", "score_cam.batch_size=8",
                                      "--method-args", "captum:Occlusion.sliding_window_shapes=[3,8,8]"])
    argv = forwarded_argv(args)
    assert argv[argv.index("--methods") + 1] == "score_cam,captum:Occlusion"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--method-args"] == [
        "score_cam.batch_size=8", "captum:Occlusion.sliding_window_shapes=[3,8,8]"]


def test_method_args_from_a_file(tmp_path):
    from overfocus.commands.common import parse_method_args

    path = tmp_path / "args.yaml"
    path.write_text("method_args:\n  captum:Occlusion: {sliding_window_shapes: [3, 8, 8]}\n"
                    "  score_cam: {batch_size: 4}\n")
    assert parse_method_args([str(path), "score_cam.batch_size=9"]) == {
        "captum:Occlusion": {"sliding_window_shapes": [3, 8, 8]}, "score_cam": {"batch_size": 9}}
    (tmp_path / "bad.yaml").write_text("score_cam: {batch_size: 4}\n")
    with pytest.raises(OverfocusError, match="needs a method_args section"):
        parse_method_args([str(tmp_path / "bad.yaml")])
    with pytest.raises(OverfocusError, match="neither METHOD.KEY=VALUE nor a file"):
        parse_method_args(["score_cam.batch_size"])
