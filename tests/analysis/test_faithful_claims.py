"""analysis/faithful_claims.py on hand-made run folders whose verdicts are known."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
sys.path.insert(0, str(ANALYSIS))
import faithful_claims  # noqa: E402  (a script folder, not a package)

FAITH = "analysis-faith"


def make_run(root: Path, group: str, seed: int, areas, onset: dict) -> Path:
    """A run with summary.csv (area ratio per epoch) and onset.json for grad_cam in analysis-faith/."""
    run = root / group / f"seed{seed}"
    (run / FAITH).mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"seed": seed}))
    lines = ["epoch,method,metric,mean,ci_low,ci_high,n"]
    lines += [f"{e},grad_cam,area_ratio_nondegenerate,{a},,,10" for e, a in enumerate(areas)]
    (run / FAITH / "summary.csv").write_text("\n".join(lines) + "\n")
    (run / FAITH / "onset.json").write_text(json.dumps({"methods": {"grad_cam": onset}}))
    return run


def onset(faithful_from, ci_high=-0.01, epochs=(1, 2, 3)):
    return {"peak_epoch": 1, "last_epoch": 3, "slope_ci": [ci_high - 0.02, ci_high], "faithfulness_measured": True,
            "faithful_from": faithful_from, "faithful_epochs": {str(e): True for e in epochs}, "sanity_from": 1}


def test_narrowing_counts_only_on_faithful_maps():
    assert faithful_claims.narrows_on_faithful(onset(1))
    assert not faithful_claims.narrows_on_faithful(onset(None))       # never faithful: no claim
    assert not faithful_claims.narrows_on_faithful(onset(1, ci_high=0.01))  # slope CI crosses 0
    assert not faithful_claims.narrows_on_faithful({**onset(1), "faithfulness_measured": False})


def test_wider_uses_only_the_epochs_faithful_in_both_runs(tmp_path):
    ref = make_run(tmp_path, "vanilla", 0, [0.9, 0.5, 0.4, 0.3], onset(2))
    trt = make_run(tmp_path, "sgdrop", 0, [0.1, 0.1, 0.6, 0.5], onset(1))
    # epochs 2 and 3 are faithful in both: (0.6 - 0.4 + 0.5 - 0.3) / 2; epochs 0-1 do not count
    assert abs(faithful_claims.wider_on_faithful(trt, ref, FAITH, "grad_cam") - 0.2) < 1e-12


def test_cli_writes_the_verdicts(tmp_path):
    runs = []
    for seed in (0, 1):
        runs.append(make_run(tmp_path, "vanilla", seed, [0.2, 0.5, 0.4, 0.3], onset(1)))
        sgdrop = [0.2, 0.6, 0.5, 0.45] if seed == 0 else [0.2, 0.4, 0.3, 0.2]  # wider in seed 0 only
        runs.append(make_run(tmp_path, "sgdrop", seed, sgdrop, onset(1)))
    out = tmp_path / "faith.md"
    proc = subprocess.run([sys.executable, str(ANALYSIS / "faithful_claims.py"), *map(str, runs),
                           "--methods", "grad_cam", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "attention narrows on faithful maps (vanilla): reproduces" in text
    assert "sgdrop wider than vanilla on faithful maps" in text and "mixed (1 of 2 seeds)" in text
    assert "| `grad_cam` | vanilla | 1, 1 | 1, 1 | 1, 1 | 2 of 2 |" in text


def test_missing_analysis_is_one_line_exit_2(tmp_path):
    (tmp_path / "vanilla" / "seed0").mkdir(parents=True)
    proc = subprocess.run([sys.executable, str(ANALYSIS / "faithful_claims.py"), str(tmp_path / "vanilla" / "seed0"),
                           "--methods", "grad_cam"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
