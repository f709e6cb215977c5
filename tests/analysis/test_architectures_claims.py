"""analysis/architectures.py on hand-made run folders whose verdicts are known."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
sys.path.insert(0, str(ANALYSIS))
import architectures  # noqa: E402  (a script folder, not a package)

NARROWS = {"peak_epoch": 3, "last_epoch": 10, "narrowing": 0.4, "slope": -0.02, "slope_ci": [-0.03, -0.01]}
FLAT = {"peak_epoch": 9, "last_epoch": 10, "narrowing": 0.05, "slope": 0.001, "slope_ci": [-0.01, 0.01]}


def make_run(root: Path, arch: str, reg: str, seed: int, methods: dict) -> Path:
    run = root / arch / reg / f"seed{seed}"
    (run / "analysis").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"seed": seed}))
    (run / "analysis" / "onset.json").write_text(json.dumps({"methods": methods}))
    return run


def test_a_vit_that_does_not_narrow_beside_cnns_that_do(tmp_path, capsys):
    runs = []
    for seed in (0, 1, 2):
        for arch in ("vgg11", "resnet18"):
            runs.append(make_run(tmp_path, arch, "vanilla", seed, {"grad_cam": NARROWS}))
            runs.append(make_run(tmp_path, arch, "sgdrop", seed, {"grad_cam": dict(NARROWS, narrowing=0.1)}))
        runs.append(make_run(tmp_path, "vit", "vanilla", seed, {"grad_cam": FLAT, "attention_rollout": FLAT}))
        runs.append(make_run(tmp_path, "vit", "sgdrop", seed, {"grad_cam": FLAT, "attention_rollout": FLAT}))
    out = tmp_path / "architectures.md"
    assert architectures.main([str(r) for r in runs] + ["--out", str(out)]) == 0
    text = out.read_text()
    assert "- **Attention narrows over epochs (vgg11, vanilla, `grad_cam`)**: reproduces." in text
    assert "- **Attention narrows over epochs (vit, vanilla, `attention_rollout`)**: does not reproduce." in text
    assert "like the CNNs' (`grad_cam` for the CNNs)**: no: the ViT does not narrow" in text
    assert "SGDrop narrows less than vanilla (resnet18, `grad_cam`)**: reproduces (seed 0: -30 pp" in text
    assert "| vit | vanilla | `attention_rollout` | 2 | 9 of 10 | 5% | +0.0010 [-0.0100, +0.0100] | no |" in text


def test_a_run_without_onset_is_one_line(tmp_path, capsys):
    run = tmp_path / "vit" / "vanilla" / "seed0"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"seed": 0}))
    assert architectures.main([str(run), "--out", str(tmp_path / "a.md")]) == 2
    err = capsys.readouterr().err
    assert "onset.json is missing" in err and len(err.strip().splitlines()) == 1


def test_seeds_without_an_onset_are_left_out_of_the_verdict_and_said(tmp_path):
    none = {"peak_epoch": None, "search_reason": "the model is never above chance level"}
    runs = [make_run(tmp_path, "vit", "vanilla", 0, {"grad_cam": none}),
            make_run(tmp_path, "vit", "vanilla", 1, {"grad_cam": NARROWS})]
    out = tmp_path / "a.md"
    assert architectures.main([str(r) for r in runs] + ["--out", str(out)]) == 0
    text = out.read_text()
    assert "(vit, vanilla, `grad_cam`)**: reproduces (1 of 2 seeds without an onset to search)." in text
    assert "| vit | vanilla | `grad_cam` | 0 | none: the model is never above chance level | n/a | n/a | not measured |" \
        in text
