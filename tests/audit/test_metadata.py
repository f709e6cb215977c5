"""Registry entries carry their metadata, and analyze / audit write it (the contract with render)."""
from __future__ import annotations

import json

import pytest

from overfocus.attribution import ATTRIBUTIONS, attribute, method_info
from overfocus.metrics import METRICS, SUMMARY_METRICS, metric_info
from conftest import copy_run

INFO_KEYS = {"title", "unit", "range", "higher_is_better", "direction", "needs_boxes", "needs_human", "kind"}


def test_every_method_has_a_title_and_says_whether_it_yields_logits():
    info = method_info(ATTRIBUTIONS.names())
    assert info["grad_cam"] == {"title": "Grad-CAM", "yields_logits": True}
    assert info["integrated_gradients"]["yields_logits"] is False
    assert all(isinstance(v["title"], str) and v["title"] for v in info.values())


def test_every_metric_has_the_contract_keys():
    names = METRICS.names() + SUMMARY_METRICS.names()
    info = metric_info(names)
    assert all(set(v) == INFO_KEYS for v in info.values())
    assert info["area_ratio"]["range"] == [0.0, 1.0] and info["area_ratio"]["kind"] == "map"
    assert info["entropy"]["range"] == [0.0, 1.0] and info["harmonization"]["range"] == [-1.0, 1.0]  # entropy / log(HW) <= 1
    assert info["degenerate_count"]["range"] == [0.0, None]
    assert info["accuracy"]["kind"] == "model" and info["coverage_latent_cumulative"]["kind"] == "model"
    assert info["hit"]["needs_boxes"] and info["harmonization"]["needs_human"]


def test_an_unknown_metric_name_is_an_error():
    from overfocus.errors import OverfocusError

    with pytest.raises(OverfocusError):
        metric_info(["not_a_metric"])


def test_logits_come_from_a_method_whose_pass_yields_them():
    import torch

    from overfocus.models import build_model

    model = build_model("cifarnet", 3, width=0.125)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    for method in ("saliency", "integrated_gradients"):
        maps, logits = attribute(model, x, t, methods=method, layer="block3", return_logits=True)
        assert logits.shape == (2, 3) and maps[method].shape == (2, 32, 32)


def test_analysis_json_describes_every_method_and_summary_metric(tiny_run, tmp_path):
    from overfocus.analysis import analyze, read_summary

    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="1", methods=["grad_cam", "saliency"], limit=8, device="cpu", show_progress=False)
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    # the random baseline of the faithfulness metrics is described too: its rows are in the records
    assert set(meta["method_info"]) == {"grad_cam", "saliency", "random"}
    assert meta["method_info"]["saliency"] == {"title": "saliency", "yields_logits": True}
    in_summary = {r["metric"] for r in read_summary(run)}
    assert in_summary <= set(meta["metric_info"]) and "coverage_global_cumulative" in in_summary
    assert meta["metric_info"]["correct"]["kind"] == "model"


def test_report_json_describes_every_metric(tiny_run, tmp_path):
    from overfocus.audit.inputs import AuditOptions
    from overfocus.audit.flow import audit, write_outputs

    result = audit(AuditOptions(str(tiny_run), limit=8, progress=False, examples=2))
    report_path, _ = write_outputs(result, tmp_path / "audit")
    report = json.loads(report_path.read_text())
    assert set(report["method_info"]) == {"grad_cam", "sgdrop"}
    assert set(report["metric_info"]) == set(report["metrics"])
    assert report["metric_info"]["grad_cam.hit_ratio"]["title"] == "hit ratio"


def test_list_shows_methods_and_metrics(capsys):
    from overfocus.cli import main

    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in ATTRIBUTIONS.names() + ATTRIBUTIONS.family_names())
    assert "  grad_cam_pp: Grad-CAM++ - " in out and "  captum:Occlusion: Occlusion (Captum) - " in out
    assert "needs --method-args sliding_window_shapes" in out  # what a class cannot do without
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} [" in out for name in METRICS.names() + SUMMARY_METRICS.names())
