"""analyze and audit evaluate through one core (analysis.core, analysis.summary): same numbers."""
from __future__ import annotations

import math

import numpy as np
import torch

from conftest import copy_run


def test_audit_and_analyze_report_the_same_numbers(tiny_run, tmp_path):
    from overfocus.analysis import analyze, read_summary
    from overfocus.audit.inputs import AuditOptions
    from overfocus.audit.flow import audit

    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, epochs="2", device="cpu", show_progress=False)
    summary = {(r["method"], r["metric"]): r for r in read_summary(run) if r["epoch"] == 2}
    metrics = audit(AuditOptions(str(run), limit=0, progress=False, examples=1)).report["metrics"]
    pairs = {"grad_cam.area_ratio": ("grad_cam", "area_ratio"), "sgdrop.gini": ("sgdrop", "gini"),
             "grad_cam.hit_ratio": ("grad_cam", "hit"), "accuracy": ("model", "correct"),
             "confidence": ("model", "confidence"), "coverage_latent": ("model", "coverage_latent_cumulative"),
             "grad_cam.pointing_game_per_class": ("grad_cam", "pointing_game_per_class"),
             "grad_cam.degenerate": ("grad_cam", "degenerate"),
             "grad_cam.area_ratio_nondegenerate": ("grad_cam", "area_ratio_nondegenerate"),
             "sgdrop.hit_ratio_nondegenerate": ("sgdrop", "hit_nondegenerate"),
             "grad_cam.pointing_game_per_class_nondegenerate": ("grad_cam", "pointing_game_per_class_nondegenerate"),
             "unit_coverage_latent": ("model", "unit_coverage_latent_cumulative"),
             "unit_coverage_global_per_image": ("model", "unit_coverage_global")}
    for name, key in pairs.items():
        ours, theirs = metrics[name], summary[key]
        assert math.isclose(ours["value"], theirs["mean"], rel_tol=1e-6, abs_tol=1e-7), name
        assert ours["n"] == theirs["n"], name
    assert math.isclose(metrics["sgdrop.gini"]["ci_low"], summary[("sgdrop", "gini")]["ci_low"], rel_tol=1e-6)


def test_evaluate_batch_is_attribute_plus_the_registered_metrics():
    from overfocus.analysis import evaluate_batch
    from overfocus.attribution import attribute, attribution_mode
    from overfocus.data import normalize
    from overfocus.metrics import NeuronCoverage, compute_map_metrics
    from overfocus.models import build_model

    torch.manual_seed(0)
    model = build_model("cifarnet", 3, width=0.125).eval()
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 4
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    cov = NeuronCoverage(model, latent_layer="block3")
    with attribution_mode(model):
        out = evaluate_batch(model, images, labels, boxes, mean=mean, std=std, methods=("grad_cam", "sgdrop"),
                             layer="block3", metric_names=("area_ratio", "hit"), coverage=cov)
    assert all(p.requires_grad for p in model.parameters())  # restored after the evaluation
    x = normalize(images, mean, std)
    maps, logits = attribute(model, x, labels, ("grad_cam", "sgdrop"), layer="block3", return_logits=True)
    assert torch.allclose(out.logits, logits) and torch.allclose(out.maps["sgdrop"], maps["sgdrop"])
    expected = compute_map_metrics(maps["grad_cam"], ["area_ratio", "hit"], boxes=boxes, labels=labels)
    assert all(torch.equal(out.metrics["grad_cam"][k], expected[k]) for k in expected)
    assert cov.per_image()["coverage_global"].shape == (4,)  # the hooks saw the one shared forward


def test_one_summary_of_values():
    from overfocus.analysis.summary import per_class_pointing, summarize_values

    s = summarize_values(np.array([np.nan, np.nan]))
    assert s["n"] == 0 and math.isnan(s["mean"])
    value, n = per_class_pointing(np.array([np.nan]), np.array([0]))
    assert n == 0 and math.isnan(value)
    assert per_class_pointing(np.array([1.0, 0.0, 0.0]), np.array([0, 1, 1])) == (0.5, 3)
