"""analysis/make_table.py and analysis/claims.py on hand-made run folders with known numbers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
sys.path.insert(0, str(ANALYSIS))
import claims  # noqa: E402  (a script folder, not a package)

MAP_METRICS = ("area_ratio", "area_ratio_nondegenerate", "degenerate", "hit", "energy_pg")
MODEL_METRICS = ("unit_coverage_global", "unit_coverage_latent", "coverage_global", "coverage_latent")


def make_run(root: Path, method: str, seed: int, *, test_acc: float, gap: float, area: float,
             unit_latent: float, onset: dict | None = None, leak: dict | None = None) -> Path:
    """A run folder with the files make_table reads; epoch 2 carries the given numbers (`leak`:
    metrics.jsonl's leak columns, every epoch)."""
    run = root / method / f"seed{seed}"
    (run / "analysis").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"seed": seed, "config": {"data": {"spec": "toy:1"}}}))
    rows = [{"epoch": e, "test_acc": test_acc, "train_acc": test_acc + gap, "gap": gap, **(leak or {})}
            for e in range(3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ["epoch,method,metric,mean,ci_low,ci_high,n"]
    for epoch in range(3):
        for metric in MAP_METRICS:
            value = area if metric.startswith("area") else 0.1
            lines.append(f"{epoch},grad_cam,{metric},{value},,,10")
        for metric in MODEL_METRICS:
            lines.append(f"{epoch},model,{metric},{unit_latent},,,10")
    (run / "analysis" / "summary.csv").write_text("\n".join(lines) + "\n")
    (run / "analysis" / "analysis.json").write_text(json.dumps({"layer": "features.20", "target": "label"}))
    if onset is not None:
        (run / "analysis" / "onset.json").write_text(json.dumps({"methods": {"grad_cam": onset}}))
    return run


def onset(peak: int, ci_high: float) -> dict:
    return {"peak_epoch": peak, "last_epoch": 2, "narrowing": 0.25, "slope": ci_high - 0.01,
            "slope_ci": [ci_high - 0.02, ci_high], "gap_growth": 0.05}


def run_table(runs, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(ANALYSIS / "make_table.py"), *map(str, runs),
                           "--out", str(out), "--csv", str(tmp_path / "table.csv"), *extra],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_text()


def test_verdict_counts_agreeing_seeds():
    assert claims.verdict([1, 2, 3]) == "reproduces"
    assert claims.verdict([-1, 0, -3]) == "does not reproduce"
    assert claims.verdict([1, -2, 3]) == "mixed (2 of 3 seeds)"
    assert claims.verdict([]) == "not measured"


def test_paired_differences_match_seeds_and_skip_missing_values():
    ref = {0: {"x": 1.0}, 1: {"x": 2.0}, 2: {"x": None}}
    treat = {0: {"x": 1.5}, 1: {"x": 1.0}, 2: {"x": 5.0}, 3: {"x": 9.0}}
    assert claims.paired_differences(ref, treat, "x") == {0: 0.5, 1: -1.0}


def test_table_has_mean_std_and_claims_with_known_verdicts(tmp_path):
    runs = []
    for seed in (0, 1, 2):
        runs.append(make_run(tmp_path, "vanilla", seed, test_acc=0.50, gap=0.30, area=0.20 + 0.01 * seed,
                             unit_latent=0.10, onset=onset(peak=1, ci_high=-0.001 if seed < 2 else 0.01)))
        # SGDrop: wider maps in every seed, more coverage, smaller gap in every seed, accuracy mixed
        runs.append(make_run(tmp_path, "sgdrop", seed, test_acc=0.49 + 0.01 * seed, gap=0.20,
                             area=0.40 + 0.01 * seed, unit_latent=0.30))
    text = run_table(runs, tmp_path)
    vanilla_row = next(line for line in text.splitlines() if line.startswith("| vanilla"))
    assert "| 3 | 50.0 ± 0.0 | 30.0 ± 0.0 | 0.210 ± 0.010 | 0.210 ± 0.010 | 10.0 ± 0.0 |" in vanilla_row
    assert "NC latent (units)" in text and "unit level, per-image" in text
    assert "Attention narrows over epochs (vanilla, `grad_cam`)**: mixed (2 of 3 seeds)" in text
    assert "keeps attention wider (area ratio, non-empty maps)**: reproduces. sgdrop - vanilla in " \
           "`Area ratio (non-empty)`: +0.200 ± 0.000" in text
    assert "raises last-conv coverage (unit level)**: reproduces" in text
    assert "smaller gap**: reproduces" in text
    assert "higher test accuracy**: mixed (1 of 3 seeds)" in text
    csv_text = (tmp_path / "table.csv").read_text()
    assert "sgdrop,Area ratio (non-empty),0.41" in csv_text


def test_channel_level_and_no_claims_without_the_reference(tmp_path):
    runs = [make_run(tmp_path, "dropout", 0, test_acc=0.5, gap=0.1, area=0.3, unit_latent=0.2),
            make_run(tmp_path, "sgdrop", 0, test_acc=0.5, gap=0.1, area=0.3, unit_latent=0.2)]
    text = run_table(runs, tmp_path, "--coverage-level", "channel", "--coverage", "cumulative")
    assert "NC latent (channels)" in text and "Claims" not in text


@pytest.mark.parametrize("onset_value, expected", [
    ({"peak_epoch": 2, "last_epoch": 2, "slope_ci": [-1, -0.5]}, False),   # peak at the end
    ({"peak_epoch": 0, "last_epoch": 2, "slope_ci": [-1, 0.1]}, False),    # interval crosses 0
    ({"peak_epoch": 0, "last_epoch": 2, "slope_ci": [-1, -0.1]}, True),
    ({"peak_epoch": 0, "last_epoch": 2, "slope_ci": None}, False),         # too few epochs
])
def test_narrows_needs_an_early_peak_and_a_negative_interval(onset_value, expected):
    assert claims.narrows(onset_value) is expected


def test_narrowing_line_names_a_seed_without_a_peak_and_its_reason():
    gated = {"peak_epoch": None, "search_reason": "the maps never beat the random baseline on deletion and insertion"}
    line = claims.narrowing_line({0: onset(1, -0.001), 1: gated}, "vanilla", "grad_cam")
    assert "mixed (1 of 2 seeds)" in line
    assert "seed 1: no peak (the maps never beat the random baseline on deletion and insertion)" in line


def test_figures_plot_the_non_empty_area_ratio_by_default(tmp_path):
    runs = [make_run(tmp_path, "vanilla", s, test_acc=0.5, gap=0.1 * s, area=0.2 + 0.1 * s, unit_latent=0.2)
            for s in (0, 1)]
    proc = subprocess.run([sys.executable, str(ANALYSIS / "make_figures.py"), *map(str, runs),
                           "--out", str(tmp_path / "fig")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "fig" / "fig1_area_ratio_nondegenerate_gap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "fig" / "fig1_area_ratio_nondegenerate_gap.csv").read_text().splitlines()
    assert "vanilla,area_ratio_nondegenerate,2,0.25,0.07071067811865477,2" in rows  # mean, std (ddof 1)


def test_faithfulness_figure_has_the_random_maps_curves_beside_the_methods(tmp_path):
    runs = [make_run(tmp_path, "vanilla", s, test_acc=0.5, gap=0.1, area=0.3, unit_latent=0.2) for s in (0, 1)]
    for seed, run in enumerate(runs):
        rows = [f"{e},{method},{metric},{value + 0.1 * seed},,,10" for e in range(3)
                for method, metric, value in (("grad_cam", "insertion", 0.6), ("grad_cam", "deletion", 0.2),
                                              ("grad_cam", "sanity_init", 0.1), ("random", "insertion", 0.4),
                                              ("random", "deletion", 0.4))]
        with (run / "analysis" / "summary.csv").open("a") as f:
            f.write("\n".join(rows) + "\n")
    proc = subprocess.run([sys.executable, str(ANALYSIS / "make_figures.py"), *map(str, runs), "--faithfulness",
                           "--out", str(tmp_path / "fig")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "fig" / "faith_grad_cam.png").read_bytes()[:4] == b"\x89PNG"
    rows = {(r[1], r[2]): (float(r[3]), float(r[4])) for r in
            (line.split(",") for line in (tmp_path / "fig" / "faith_grad_cam.csv").read_text().splitlines()[1:])}
    assert rows["random:insertion", "1"] == pytest.approx((0.45, 0.1 / 2 ** 0.5))  # mean, std (ddof 1)
    assert rows["sanity_init", "1"] == pytest.approx((0.15, 0.1 / 2 ** 0.5))
    # without the random method's rows the figure says what is missing
    (runs[0] / "analysis" / "summary.csv").write_text((runs[0] / "analysis" / "summary.csv").read_text()
                                                      .replace(",random,", ",other,"))
    proc = subprocess.run([sys.executable, str(ANALYSIS / "make_figures.py"), *map(str, runs), "--faithfulness",
                           "--out", str(tmp_path / "fig2")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no random/insertion rows" in proc.stderr


def leak_columns(true: float, none: float, wrong: float, pred: float, test_shift: float = 0.0) -> dict:
    values = {"true": true, "no": none, "wrong": wrong, "pred": pred}
    out = {f"leak_{k}_mask_acc": v for k, v in values.items()}
    out.update({f"leak_{k}_mask_acc_test": v + test_shift for k, v in values.items()})
    return out


def test_leak_columns_and_the_leak_line_of_each_treatment(tmp_path):
    runs = []
    for seed in (0, 1):
        runs.append(make_run(tmp_path, "vanilla", seed, test_acc=0.50, gap=0.30, area=0.2, unit_latent=0.1))
        # the published SGDrop leaks in seed 0 only; the remedy in neither
        runs.append(make_run(tmp_path, "sgdrop", seed, test_acc=0.45, gap=0.2, area=0.3, unit_latent=0.2,
                             leak=leak_columns(0.55 if seed == 0 else 0.30, 0.21 if seed == 0 else 0.29, 0.15, 0.17,
                                               test_shift=-0.02)))
        runs.append(make_run(tmp_path, "sgdrop_remedy", seed, test_acc=0.52, gap=0.2, area=0.3, unit_latent=0.2,
                             leak=leak_columns(0.40, 0.41, 0.40, 0.41)))
    text = run_table(runs, tmp_path)
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert header.endswith("| Leak train (pp) | Leak test (pp) | True-mask acc. (%) | No-mask acc. (%) | "
                           "Wrong-mask acc. (%) | Pred-mask acc. (%) |")
    sgdrop_row = next(line for line in text.splitlines() if line.startswith("| sgdrop |"))
    assert "| 17.5 ± 23.3 | 17.5 ± 23.3 | 40.5 ± 17.7 | 23.0 ± 5.7 | 13.0 ± 0.0 | 15.0 ± 0.0 |" in sgdrop_row
    assert next(line for line in text.splitlines() if line.startswith("| vanilla")).endswith(
        "| n/a | n/a | n/a | n/a | n/a | n/a |")
    assert "Leak = accuracy of the online network with the training mask" in text
    assert ("- **The label leaks through sgdrop's mask**: in 1 of 2 seeds (true-label mask minus no mask, train "
            "subset / test split, margin 5 pp: seed 0: +34.0 / +34.0 pp, seed 1: +1.0 / +1.0 pp).") in text
    assert "- **No label leak through sgdrop_remedy's mask**: in none of 2 seeds" in text
    assert "sgdrop_remedy generalizes better: higher test accuracy**: reproduces" in text
    assert "sgdrop,Leak train (pp),17.5" in (tmp_path / "table.csv").read_text()


def test_no_leak_columns_without_a_label_masked_run(tmp_path):
    runs = [make_run(tmp_path, "vanilla", 0, test_acc=0.5, gap=0.1, area=0.3, unit_latent=0.2)]
    assert "Leak" not in run_table(runs, tmp_path)


def test_leak_margin_of_the_scripts_is_the_packages():
    from overfocus.regularizers.leak import LEAK_MARGIN

    assert claims.LEAK_MARGIN_PP == 100 * LEAK_MARGIN


def test_table_recipe_knows_sgdrop_with_the_remedy():
    """run.sh's method_args: sgdrop_remedy is SGDrop (same regularizer name, so a rerun resumes) plus
    the remedy options of docs/methods.md; REMEDY overrides them."""
    script = ANALYSIS / "recipes" / "table" / "run.sh"
    body = script.read_text()
    function = body[body.index("method_args() {"):body.index("\n}\n", body.index("method_args() {")) + 3]
    remedy = next(line for line in body.splitlines() if line.startswith("REMEDY="))

    def args(method: str, env: str = "") -> str:
        cmd = f"RHO=0.01; {env} {remedy}\n{function}\nmethod_args {method}"
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.strip()

    assert args("sgdrop") == "sgdrop --set regularizer.name=sgdrop --set regularizer.rho=0.01"
    assert args("sgdrop_remedy") == ("sgdrop --set regularizer.name=sgdrop --set regularizer.rho=0.01 "
                                     "--set regularizer.mask_label=predicted")
    assert args("sgdrop_remedy", "REMEDY='--set regularizer.mask_fraction=0.5';").endswith("mask_fraction=0.5")
