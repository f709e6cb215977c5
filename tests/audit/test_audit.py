"""`overfocus audit`: accepted inputs, bad inputs (exit 2, one line), gates (exit 0 / 1), findings, report."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from overfocus.audit.findings import THRESHOLDS, make_findings, pct
from overfocus.audit.flow import default_out
from overfocus.audit.inputs import parse_pairs, resolve_source
from overfocus.cli import main
from overfocus.errors import OverfocusError
from overfocus.models.build import ModelOptions
from overfocus.models.layers import auto_layer
from overfocus.checkpoint.keys import check_and_load, extract_state_dict
from overfocus.checkpoint.load import load_model
from overfocus.models import build_model
from overfocus.runs.rundir import RunDir

DATA = "builtin?classes=3&train=8&test=12"
SMALL = ["--data", DATA, "--image-size", "32", "--limit", "12"]
CIFAR = ["--model", "cifarnet", "--width", "0.125", "--small-input", "--num-classes", "3"]


def cli(capsys, *args):
    code = main(["audit", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def cifar_state(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sd") / "cifarnet.pt"
    torch.save(build_model("cifarnet", 3, 0.125, True).state_dict(), path)
    return path


# ---- a run directory: gates -------------------------------------------------------------------------------
def test_run_directory_passing_gate_writes_both_reports(tiny_run, tmp_path, capsys):
    code, out, err = cli(capsys, tiny_run, "--out", tmp_path, "--fail-under", "accuracy=0.0",
                         "--fail-under", "sgdrop.area_ratio=0")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    latest = RunDir(tiny_run).checkpoint_path(RunDir(tiny_run).latest_epoch())
    assert report["inputs"]["sha256"] == hashlib.sha256(latest.read_bytes()).hexdigest()
    assert report["inputs"]["kind"] == "run-checkpoint" and report["inputs"]["epoch"] == 2
    assert report["preprocessing"] == {"image_size": 32, "mean": [0.485, 0.456, 0.406],
                                       "std": [0.229, 0.224, 0.225], "source": "run.json", "assumed": []}
    assert report["inputs"]["images"] == 24 and report["inputs"]["layer"] == "block3"
    assert {"torch", "python", "overfocus"} <= set(report["versions"])
    assert [g["passed"] for g in report["gates"]] == [True, True] and report["passed"] is True
    for key in ("accuracy", "coverage_global", "coverage_latent", "grad_cam.area_ratio", "grad_cam.energy_pg",
                "grad_cam.hit_ratio", "grad_cam.pointing_game", "sgdrop.area_ratio"):
        assert report["metrics"][key]["value"] is not None, key
    assert all(f["level"] in ("ok", "warning", "problem") and f["message"] for f in report["findings"])
    assert any(f["id"] == "gap" for f in report["findings"])  # history of the run is used
    html = (tmp_path / "report.html").read_text()
    assert "Run history" in html and "report.html" in out


def test_failing_gate_exits_1_and_names_it(tiny_run, tmp_path, capsys):
    code, out, err = cli(capsys, tiny_run, "--out", tmp_path, "--fail-under", "accuracy=1.01",
                         "--fail-under", "area_ratio=0")
    assert code == 1
    assert "gate failed: accuracy" in err and "area_ratio" not in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert [g["passed"] for g in report["gates"]] == [False, True] and report["passed"] is False


def test_accuracy_matches_an_independent_evaluation(tiny_run, tmp_path, capsys):
    from overfocus.data import normalize, open_dataset
    from overfocus.checkpoint.files import load_checkpoint

    code, out, _ = cli(capsys, tiny_run, "--out", tmp_path, "--json")
    report = json.loads(out)
    model = build_model("cifarnet", 3, 0.125, True)
    model.load_state_dict(load_checkpoint(RunDir(tiny_run).checkpoint_path(2))["model"])
    ds = open_dataset("builtin?classes=3&train=48&test=24", "test", 32)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    y = torch.tensor([ds[i]["label"] for i in range(len(ds))])
    with torch.no_grad():
        acc = (model.eval()(normalize(x, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))).argmax(1) == y).float().mean()
    assert code == 0 and report["metrics"]["accuracy"]["value"] == pytest.approx(float(acc))


def test_json_flag_prints_the_report(tiny_run, tmp_path, capsys):
    code, out, _ = cli(capsys, tiny_run, "--out", tmp_path, "--json", "--limit", "6")
    assert code == 0
    assert json.loads(out)["inputs"]["images"] == 6


def test_checkpoint_inside_a_run_uses_the_run(tiny_run):
    ckpt = RunDir(tiny_run).checkpoint_path(1)
    source = resolve_source(ckpt)
    assert source.run is not None and source.run.root.resolve() == tiny_run.resolve()
    assert default_out(tiny_run) == tiny_run / "audit"
    assert default_out(ckpt) == ckpt.parent / "audit-epoch_0001"


def test_run_audit_defaults_to_run_audit_folder(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("audit*"))
    code, _, err = cli(capsys, run, "--limit", "4")
    assert code == 0, err
    assert (run / "audit" / "report.json").is_file() and (run / "audit" / "report.html").is_file()


# ---- gates and thresholds given wrongly ------------------------------------------------------------------
def test_unknown_gate_metric_is_bad_input(tiny_run, tmp_path, capsys):
    code, _, err = cli(capsys, tiny_run, "--out", tmp_path, "--fail-under", "acuracy=0.5")
    assert "unknown metric 'acuracy'" in one_line_error(code, err)
    assert not (tmp_path / "report.json").exists()  # refused before any work


@pytest.mark.parametrize("gate", ["accuracy", "accuracy=high", "=0.5"])
def test_malformed_gate_is_bad_input(tiny_run, tmp_path, capsys, gate):
    code, _, err = cli(capsys, tiny_run, "--out", tmp_path, "--fail-under", gate)
    assert "name=number" in one_line_error(code, err)


def test_unknown_threshold_is_bad_input(tiny_run, tmp_path, capsys):
    code, _, err = cli(capsys, tiny_run, "--out", tmp_path, "--threshold", "area_tiny=0.1")
    assert "unknown name 'area_tiny'" in one_line_error(code, err)


def test_gate_on_a_metric_the_input_cannot_give_is_bad_input(tiny_run, tmp_path, capsys):
    code, _, err = cli(capsys, tiny_run, "--out", tmp_path, "--fail-under", "harmonization=0.1")
    assert "not computed" in one_line_error(code, err)


def test_threshold_override_changes_the_finding(tiny_run, tmp_path, capsys):
    cli(capsys, tiny_run, "--out", tmp_path, "--limit", "6", "--threshold", "area_problem=1.01")
    report = json.loads((tmp_path / "report.json").read_text())
    area = next(f for f in report["findings"] if f["id"] == "area_ratio")
    assert area["level"] == "problem" and report["thresholds"]["area_problem"] == 1.01


# ---- bad inputs: exit 2, one line, no traceback -----------------------------------------------------------
def test_truncated_checkpoint(tiny_run, tmp_path, capsys):
    data = RunDir(tiny_run).checkpoint_path(2).read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = cli(capsys, bad, *SMALL, *CIFAR, "--out", tmp_path / "o")
    assert "corrupt" in one_line_error(code, err) and str(bad) in err


def test_state_dict_of_another_architecture(cifar_state, tmp_path, capsys):
    code, _, err = cli(capsys, cifar_state, *SMALL, "--model", "resnet18", "--num-classes", "3", "--out", tmp_path)
    line = one_line_error(code, err)
    assert "missing keys (first: conv1.weight)" in line and "unexpected keys (first: block1.0.weight)" in line
    assert "--model" in line


def test_shape_mismatch_is_named(cifar_state, tmp_path, capsys):
    code, _, err = cli(capsys, cifar_state, *SMALL, "--model", "cifarnet", "--width", "0.25", "--small-input",
                       "--out", tmp_path)
    assert "shape mismatches (first: block1.0.weight is 12x3x5x5 in the file, 24x3x5x5" in one_line_error(code, err)


def test_pickled_module_needs_trust_pickle(tmp_path, capsys):
    path = tmp_path / "full.pt"
    torch.save(build_model("cifarnet", 3, 0.125, True), path)
    code, _, err = cli(capsys, path, *SMALL, "--out", tmp_path / "a")
    assert "pickled" in one_line_error(code, err) and "--trust-pickle" in err
    code, _, err = cli(capsys, path, *SMALL, "--out", tmp_path / "b", "--trust-pickle")
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert code == 0 and report["inputs"]["kind"] == "pickled-module"
    assert report["inputs"]["layer"] == "block3"  # picked automatically: the end of the conv trunk


def test_data_without_images(cifar_state, tmp_path, capsys):
    (tmp_path / "EMPTY").mkdir()
    code, _, err = cli(capsys, cifar_state, "--data", f"folder:{tmp_path / 'EMPTY'}", *CIFAR, "--out", tmp_path / "o")
    assert "no class folders with images" in one_line_error(code, err)
    code, _, err = cli(capsys, cifar_state, "--data", "builtin?classes=3&test=0", *CIFAR, "--out", tmp_path / "o")
    assert "test=0: use a whole number from 1" in one_line_error(code, err)  # refused by the spec, before audit


def test_weights_only_file_without_model_is_bad_input(cifar_state, tmp_path, capsys):
    code, _, err = cli(capsys, cifar_state, *SMALL, "--out", tmp_path)
    assert "--model NAME" in one_line_error(code, err)


def test_labels_outside_the_model_outputs(cifar_state, tmp_path, capsys):
    code, _, err = cli(capsys, cifar_state, "--data", "builtin?classes=6&test=12", "--image-size", "32", *CIFAR,
                       "--out", tmp_path)
    assert "--target predicted" in one_line_error(code, err)
    code, _, err = cli(capsys, cifar_state, "--data", "builtin?classes=6&test=12", "--image-size", "32", *CIFAR,
                       "--out", tmp_path, "--target", "predicted")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert any("3 outputs but the data has 6 classes" in f["message"] for f in report["findings"])


@pytest.mark.slow  # a fresh interpreter imports torch: ~10 s on a loaded 2-core machine
def test_missing_file_and_real_cli_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "overfocus", "audit", str(tmp_path / "nope.pt"), "--data", DATA],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr


# ---- accepted external inputs ----------------------------------------------------------------------------
def test_plain_state_dict_of_a_registered_model(tmp_path, capsys):
    path = tmp_path / "resnet18_small.pt"
    torch.save(build_model("resnet18", 10, 0.125, True).state_dict(), path)
    code, _, err = cli(capsys, path, "--model", "resnet18", "--width", "0.125", "--small-input", "--num-classes",
                       "10", "--data", "builtin?classes=10&test=8", "--image-size", "32", "--out", tmp_path / "o")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["inputs"]["kind"] == "state-dict" and report["inputs"]["layer"] == "layer4"
    assert report["inputs"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["preprocessing"]["source"] == "options"
    assert report["preprocessing"]["assumed"] == ["mean", "std"]
    assert any("pass --mean ... and --std ..." in f["message"] for f in report["findings"])
    assert report["metrics"]["grad_cam.area_ratio"]["n"] == 8


def test_real_torchvision_state_dict(tmp_path, capsys):
    import torchvision

    path = tmp_path / "tv_resnet18.pt"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=3).state_dict(), "epoch": 7}, path)
    code, _, err = cli(capsys, path, "--model", "resnet18", "--num-classes", "3", "--data", DATA, "--limit", "4",
                       "--batch-size", "4", "--out", tmp_path / "o")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["inputs"]["model"].startswith("resnet18 (width 1") and report["inputs"]["images"] == 4
    assert report["preprocessing"]["source"] == "assumed"
    assert any(f["message"].startswith("preprocessing was not fully given") for f in report["findings"])


def test_arch_factory_infers_classes_and_layer(tmp_path):
    import torchvision

    path = tmp_path / "tv.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    loaded = load_model(path, ModelOptions(arch="torchvision.models:resnet18"))
    assert loaded.num_classes == 3 and loaded.layer is None
    assert auto_layer(loaded.model, torch.zeros(1, 3, 64, 64)) == "layer4"
    with pytest.raises(OverfocusError, match="package.module:Factory"):
        load_model(path, ModelOptions(arch="torchvision.models.resnet18"))


def test_torchscript_with_and_without_an_eager_copy(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "scripted.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(build_model("cifarnet", 3, 0.125, True).eval()), str(path))
    code, _, err = cli(capsys, path, *SMALL, "--out", tmp_path / "a")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert code == 0 and report["inputs"]["kind"] == "torchscript" and report["inputs"]["methods"] == []
    assert report["metrics"]["accuracy"]["n"] == 12
    assert any("TorchScript" in f["message"] and f["level"] == "warning" for f in report["findings"])
    code, _, err = cli(capsys, path, *SMALL, *CIFAR, "--out", tmp_path / "b")
    report_b = json.loads((tmp_path / "b" / "report.json").read_text())
    assert code == 0 and report_b["inputs"]["methods"] == ["grad_cam", "sgdrop"]
    assert report_b["metrics"]["accuracy"]["value"] == report["metrics"]["accuracy"]["value"]


def test_state_dict_helpers():
    sd = {"module.a.weight": torch.zeros(2, 3), "module.a.bias": torch.zeros(2)}
    assert list(extract_state_dict({"model": sd}, Path("x"))) == ["a.weight", "a.bias"]
    with pytest.raises(OverfocusError, match="without weights"):
        extract_state_dict({"optimizer": {}}, Path("x"))
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(OverfocusError, match=r"1 missing keys \(first: 0.bias\)"):
        check_and_load(model, {"0.weight": torch.zeros(2, 3)}, "lin")


def test_human_maps_give_harmonization(cifar_state, tmp_path, capsys):
    from overfocus.data import open_dataset

    human = tmp_path / "human"
    human.mkdir()
    ds = open_dataset(DATA, "test", 32)
    for i in range(len(ds)):  # the object's box as the human map
        x0, y0, x1, y1 = ds[i]["boxes"][0].int().tolist()
        m = np.zeros((32, 32), np.float32)
        m[y0:y1, x0:x1] = 1.0
        np.save(human / f"{ds[i]['image_id']}.npy", m)
    code, _, err = cli(capsys, cifar_state, *SMALL, *CIFAR, "--human", human, "--out", tmp_path / "o",
                       "--fail-under", "harmonization=-1")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["metrics"]["grad_cam.harmonization"]["n"] > 0
    assert any(f["id"] == "harmonization" for f in report["findings"])


# ---- findings and the HTML ---------------------------------------------------------------------------
def _entry(v):
    return {"value": v, "ci_low": None, "ci_high": None, "n": 10}


def test_findings_sentences_and_levels():
    t = {k: th.default for k, th in THRESHOLDS.items()}
    metrics = {"accuracy": _entry(0.12), "grad_cam.area_ratio": _entry(0.02), "grad_cam.outside_box": _entry(0.61),
               "grad_cam.hit_ratio": _entry(0.9), "coverage_latent": _entry(0.05)}
    found = make_findings(metrics, t, {"method": "grad_cam", "n_classes": 10, "layer": "features"})
    text = {f["id"]: (f["level"], f["message"]) for f in found}
    assert text["accuracy"] == ("problem", "accuracy 12% is near chance (10%)")
    assert text["area_ratio"] == ("problem", "Grad-CAM attention covers 2.0% of the image on average (overfocused)")
    # one localisation finding: most attention outside the box, peak unknown -> a warning, rule stated
    assert text["localisation"][0] == "warning" and "most attention outside the box in 61%" in text["localisation"][1]
    assert "IoU >= 0.5) in 90%" in text["localisation"][1] and "problem: peak on the object < 50%" in text["localisation"][1]
    assert not {"outside_box", "hit_ratio", "pointing_game"} & set(text)
    assert text["coverage_latent"][0] == "warning"
    assert [f["level"] for f in found] == sorted((f["level"] for f in found),
                                                 key=["problem", "warning", "ok"].index)
    healthy = make_findings({"accuracy": _entry(0.9), "grad_cam.area_ratio": _entry(0.2)}, t,
                            {"method": "grad_cam", "n_classes": 10})
    assert {f["level"] for f in healthy} == {"ok"}


def test_helpers():
    assert parse_pairs(["a=1", "b.c=-0.5"], "--x") == [("a", 1.0), ("b.c", -0.5)]
    assert pct(0.004) == "0.4%" and pct(0.61) == "61%" and pct(0.0) == "0%"


def test_html_is_self_contained_and_escaped(tiny_run, tmp_path, capsys):
    ckpt = tmp_path / "evil<b>&.pt"
    shutil.copy(RunDir(tiny_run).checkpoint_path(2), ckpt)
    code, _, err = cli(capsys, ckpt, *SMALL, *CIFAR, "--out", tmp_path / "o")
    assert code == 0, err
    html = (tmp_path / "o" / "report.html").read_text()
    assert "evil&lt;b&gt;&amp;.pt" in html and "evil<b>" not in html
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html
    import re

    sources = re.findall(r'src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert 'class="finding problem"' in html or 'class="finding warning"' in html or 'class="finding ok"' in html
    assert "Worst examples" in html and "Best examples" in html
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert not any(isinstance(v, float) and math.isnan(v) for v in report["metrics"]["accuracy"].values())


def test_docs_list_every_threshold_with_its_default():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    for name, threshold in THRESHOLDS.items():
        assert f"| `{name}` | {threshold.default:g} |" in docs, name


class FunctionalNet(torch.nn.Module):
    """A model with no activation modules (functional ReLU): coverage cannot be hooked."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_arch_without_activation_modules_skips_coverage_with_a_note(tmp_path, capsys):
    path = tmp_path / "f.pt"
    torch.save(FunctionalNet().state_dict(), path)
    code, _, err = cli(capsys, path, "--arch", "test_audit:FunctionalNet", *SMALL, "--out", tmp_path / "o")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["inputs"]["layer"] == "conv" and "coverage_global" not in report["metrics"]
    assert any("neuron coverage skipped" in f["message"] for f in report["findings"])
    assert report["metrics"]["grad_cam.area_ratio"]["n"] == 12


@pytest.mark.parametrize("pg, outside, level", [(0.97, 0.56, "warning"), (0.97, 0.1, "ok"), (0.3, 0.1, "warning"),
                                                (0.3, 0.7, "problem")])
def test_one_localisation_finding_that_cannot_contradict_itself(pg, outside, level):
    t = {k: th.default for k, th in THRESHOLDS.items()}
    metrics = {"accuracy": _entry(0.9), "grad_cam.pointing_game": _entry(pg), "grad_cam.outside_box": _entry(outside),
               "grad_cam.hit_ratio": _entry(0.08)}
    found = [f for f in make_findings(metrics, t, {"method": "grad_cam", "n_classes": 10}) if f["id"] != "accuracy"]
    assert [(f["id"], f["level"]) for f in found] == [("localisation", level)]
    assert f"peak on the object in {pct(pg)}" in found[0]["message"]


def test_best_examples_are_correct_predictions():
    from overfocus.audit.accumulate import Accumulator, Example

    def example(i, score, pred, label):
        return Example(np.zeros((2, 2, 3), np.uint8), {}, np.zeros((0, 4)), label, pred, 0.9, str(i), score)

    acc = Accumulator(["grad_cam"], keep=2, higher_is_better=True)
    acc.offer([example(0, 0.99, 1, 0), example(1, 0.9, 2, 2), example(2, 0.5, 0, 0), example(3, 0.1, 1, 2)])
    assert [e.image_id for e in acc.best] == ["1", "2"]  # the top-scored image 0 was misclassified
    assert [e.image_id for e in acc.worst] == ["3", "2"]


def test_a_folder_without_a_split_is_audited_whole_and_the_report_says_so(tiny_run, tmp_path, capsys):
    import cv2

    rng = np.random.default_rng(0)
    for cls in ("circle", "square", "triangle"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        for i in range(10):
            cv2.imwrite(str(tmp_path / "photos" / cls / f"{i}.png"), (rng.random((32, 32, 3)) * 255).astype(np.uint8))
    ckpt = tiny_run / "checkpoints" / "epoch_0002.pt"
    code = main(["audit", str(ckpt), "--data", f"folder:{tmp_path / 'photos'}", "--out", str(tmp_path / "a")])
    assert code == 0
    out = capsys.readouterr().out
    inputs = json.loads((tmp_path / "a" / "report.json").read_text())["inputs"]
    assert inputs["images"] == inputs["split_size"] == 30 and inputs["split"] == "all"
    assert "on 30 images of all images (the data has no train/test split of its own), 30 in all" in out
    # a run is audited on its own test split
    assert main(["audit", str(tiny_run), "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "report.json").read_text())["inputs"]["split"] == "test"


def test_diverged_checkpoint_is_one_line_and_exit_2(tiny_run, tmp_path, capsys):
    """NaN weights (or logits overflowing to inf) would read as extreme overfocusing: refused."""
    payload = torch.load(RunDir(tiny_run).checkpoint_path(2), map_location="cpu", weights_only=True)
    state = payload["model"]
    state["block1.0.weight"].view(-1)[3] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    code, _, err = cli(capsys, bad, *SMALL, *CIFAR, "--out", tmp_path / "o")
    line = one_line_error(code, err)
    assert str(bad) in line and "non-finite weights (NaN or inf) in block1.0.weight" in line
    assert not (tmp_path / "o" / "report.json").exists()
    clean = torch.load(RunDir(tiny_run).checkpoint_path(2), map_location="cpu", weights_only=True)["model"]
    huge = {k: v * 1e30 if k.endswith("weight") else v for k, v in clean.items()}
    torch.save(huge, tmp_path / "huge.pt")
    code, _, err = cli(capsys, tmp_path / "huge.pt", *SMALL, *CIFAR, "--out", tmp_path / "o")
    assert "non-finite logits" in one_line_error(code, err)


def test_onset_of_an_analysed_run_becomes_a_finding():
    t = {k: th.default for k, th in THRESHOLDS.items()}
    onset = {"methods": {"grad_cam": {"peak_epoch": 4, "peak_area": 0.5, "last_epoch": 20, "last_area": 0.2,
                                      "narrowing": 0.6, "gap_at_peak": 0.05, "gap_at_last": 0.3, "gap_growth": 0.25}}}
    found = {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 3, "onset": onset})}
    assert found["onset"]["level"] == "warning" and found["onset"]["value"] == 0.6
    assert found["onset"]["message"].startswith("attention narrowed by 60% since epoch 4 while the gap grew by "
                                                "25.0 points")
    onset["methods"]["grad_cam"].update(last_epoch=4, last_area=0.5, narrowing=0.0)
    found = {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 3, "onset": onset})}
    assert found["onset"]["level"] == "ok" and "no narrowing yet" in found["onset"]["message"]
    assert "onset" not in {f["id"] for f in make_findings({}, t, {"method": "sgdrop", "n_classes": 3,
                                                                 "onset": onset})}


def test_label_leak_finding_from_the_runs_leak_columns():
    t = {k: th.default for k, th in THRESHOLDS.items()}
    row = {"epoch": 8, "leak_true_mask_acc": 0.55, "leak_no_mask_acc": 0.21, "leak_wrong_mask_acc": 0.15,
           "leak_pred_mask_acc": 0.17, "leak_true_mask_acc_test": 0.53, "leak_no_mask_acc_test": 0.19,
           "leak_wrong_mask_acc_test": 0.16, "leak_pred_mask_acc_test": 0.17}
    found = {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 10, "history_row": row})}
    leak = found["label_leak"]
    assert leak["level"] == "problem" and leak["value"] == pytest.approx(0.34)
    assert leak["message"].startswith("the label leaks through the training mask at epoch 8: accuracy +34.0 points")
    assert "train subset: true-label mask 55%, no mask 21%, wrong-label mask 15%, predicted-class mask 17%" in \
        leak["message"] and "test split: true-label mask 53%" in leak["message"]
    mild = dict(row, leak_true_mask_acc=0.30, leak_true_mask_acc_test=0.20)
    level = lambda r: {f["id"]: f for f in make_findings({}, t, {"method": "grad_cam", "n_classes": 10,  # noqa: E731
                                                                 "history_row": r})}["label_leak"]["level"]
    assert level(mild) == "warning"
    assert level(dict(row, leak_true_mask_acc=0.2, leak_true_mask_acc_test=0.2)) == "ok"
    plain = make_findings({}, t, {"method": "grad_cam", "n_classes": 10, "history_row": {"epoch": 3, "gap": 0.0}})
    assert "label_leak" not in {f["id"] for f in plain}


def test_report_has_classes_and_render_s_own_history_figures(tiny_run, tmp_path, capsys):
    """Per-class accuracy and a confusion matrix in report.json and report.html; the run history
    figures are exactly render's (same panels, titles, ranges, colours), intervals included."""
    import base64
    import re
    import shutil

    from overfocus.analysis import analyze
    from overfocus.render.figures import run_plots
    from overfocus.render.io import load_analysis

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("audit*", "analysis", "figures"))
    analyze(run, methods=("grad_cam",), device="cpu")
    code, _, err = cli(capsys, run, "--out", tmp_path / "a", "--methods", "grad_cam")
    assert code in (0, 1), err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    classes = report["classes"]
    n = report["inputs"]["images"]
    assert [r["class"] for r in classes["per_class"]] == report["inputs"]["classes"]
    assert sum(map(sum, classes["confusion"])) + classes["outside"] == n == sum(r["images"] for r in classes["per_class"])
    right = sum(classes["confusion"][i][i] for i in range(len(classes["confusion"])))
    assert right / n == pytest.approx(report["metrics"]["accuracy"]["value"])
    for i, r in enumerate(classes["per_class"]):
        assert r["accuracy"] == pytest.approx(classes["confusion"][i][i] / r["images"])
    html = (tmp_path / "a" / "report.html").read_text()
    assert "<h2>Classes</h2>" in html and 'alt="confusion matrix"' in html
    drawn = run_plots(load_analysis(run), load_analysis(run).methods, tmp_path / "render")
    assert [p.name for p in drawn.written] == ["gap.png", "metrics.png"]
    embedded = [base64.b64decode(u) for u in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    for path in drawn.written:
        assert path.read_bytes() in embedded, path.name  # the very figure render draws
