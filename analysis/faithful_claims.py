"""Is the narrowing real? Per attribution method, the seed's narrowing claim judged on faithful maps.

Reads each run's `<analysis>/onset.json` and `<analysis>/summary.csv` as `overfocus analyze` wrote
them with the faithfulness metrics on (`--faithfulness-images N`): per attribution method, the
onset is searched only among epochs whose model is above chance, whose maps are mostly
non-degenerate and, where faithfulness is measured, from `faithful_from` on (the first epoch
from which the method beats the random baseline on deletion AND insertion at every later measured
epoch). So a narrowing the onset reports IS a narrowing on faithful maps. For each method this
script answers, seed by seed, the four questions of the faithfulness recipe:

  1. does attention narrow (reference runs: peak before the last epoch, post-peak slope CI < 0)?
  2. from which epoch are the maps faithful (`faithful_from`; "never" when no epoch qualifies)?
  3. does the narrowing happen on faithful maps (1, with `faithful_from` measured and not None)?
  4. does SGDrop's attention stay wider on faithful maps: the paired difference SGDrop - reference
     of the mean non-empty area ratio over the epochs at which BOTH runs' maps are faithful.

Verdicts use the same rule as claims.py ("reproduces" when every seed agrees, "does not
reproduce" when none does, "mixed (k of n seeds)" otherwise). Standard library only.

Example:
    >>> onset = {"peak_epoch": 3, "last_epoch": 20, "slope_ci": [-0.01, -0.002], "faithful_from": 2,
    ...          "faithfulness_measured": True}
    >>> narrows_on_faithful(onset), faithful_text(onset)
    (True, '2')
    >>> faithful_text({"faithful_from": None, "faithfulness_measured": True})
    'never'
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from claims import narrows, verdict
from runs_io import RunsError, atomic_write_text, group_runs, read_manifest, read_summary

MEASURE = "area_ratio_nondegenerate"


def read_onsets(run: Path, analysis: str) -> Dict[str, dict]:
    """{method: onset entry} of RUN/<analysis>/onset.json."""
    path = run / analysis / "onset.json"
    if not path.is_file():
        raise RunsError(f"{path} is missing: run `overfocus analyze {run} --out {run / analysis}` first")
    return json.loads(path.read_text()).get("methods", {})


def faithful_text(onset: Optional[dict]) -> str:
    """`faithful_from` as a table cell: the epoch, 'never', or 'not measured'."""
    if not onset or not onset.get("faithfulness_measured"):
        return "not measured"
    return "never" if onset.get("faithful_from") is None else str(onset["faithful_from"])


def narrows_on_faithful(onset: Optional[dict]) -> bool:
    """The method's maps narrow after a peak that lies on faithful maps."""
    return bool(onset and onset.get("faithfulness_measured") and onset.get("faithful_from") is not None
                and narrows(onset))


def faithful_epochs(onset: Optional[dict]) -> List[int]:
    """The measured epochs from `faithful_from` on (faithful_from holds at every later measured epoch)."""
    if not onset or onset.get("faithful_from") is None:
        return []
    return sorted(int(e) for e in onset.get("faithful_epochs", {}) if int(e) >= onset["faithful_from"])


def wider_on_faithful(treatment: Path, reference: Path, analysis: str, method: str) -> Optional[float]:
    """Mean over the epochs faithful in both runs of treatment - reference area ratio; None if none."""
    t_onset, r_onset = read_onsets(treatment, analysis).get(method), read_onsets(reference, analysis).get(method)
    common = sorted(set(faithful_epochs(t_onset)) & set(faithful_epochs(r_onset)))
    t_sum, r_sum = read_summary(treatment / analysis), read_summary(reference / analysis)
    diffs = [t_sum[(e, method, MEASURE)] - r_sum[(e, method, MEASURE)] for e in common
             if (e, method, MEASURE) in t_sum and (e, method, MEASURE) in r_sum]
    return sum(diffs) / len(diffs) if diffs else None


def seed_of(run: Path) -> int:
    return int(read_manifest(run).get("seed", 0))


def method_table(groups: Dict[str, List[Path]], analysis: str, methods: Sequence[str]) -> str:
    """One row per (method, group): per seed peak / faithful_from / narrows on faithful maps."""
    lines = ["| Attribution | Runs | Peak epoch (per seed) | Faithful from | Sanity from | "
             "Narrows on faithful maps |", "|---|---|---|---|---|---|"]
    for method in methods:
        for group, runs in groups.items():
            onsets = [read_onsets(r, analysis).get(method) for r in runs]
            peaks = ", ".join("-" if not o or o.get("peak_epoch") is None else str(o["peak_epoch"]) for o in onsets)
            faithful = ", ".join(faithful_text(o) for o in onsets)
            sanity = ", ".join("-" if not o or o.get("sanity_from") is None else str(o["sanity_from"])
                               for o in onsets)
            yes = sum(narrows_on_faithful(o) for o in onsets)
            lines.append(f"| `{method}` | {group} | {peaks} | {faithful} | {sanity} | {yes} of {len(runs)} |")
    return "\n".join(lines)


def verdict_lines(groups: Dict[str, List[Path]], analysis: str, methods: Sequence[str], reference: str,
                  treatment: str) -> List[str]:
    """Per method: narrowing on faithful maps (reference runs) and SGDrop wider on faithful maps."""
    lines = []
    ref_runs = {seed_of(r): r for r in groups.get(reference, [])}
    trt_runs = {seed_of(r): r for r in groups.get(treatment, [])}
    for method in methods:
        if method == "random":
            continue  # the chance level itself: it has no faithful epochs by construction
        onsets = {s: read_onsets(r, analysis).get(method) for s, r in sorted(ref_runs.items())}
        signed = [1.0 if narrows_on_faithful(o) else -1.0 for o in onsets.values()]
        faithful = ", ".join(f"seed {s}: {faithful_text(o)}" for s, o in onsets.items())
        lines.append(f"- `{method}`: attention narrows on faithful maps ({reference}): "
                     f"{verdict(signed) if signed else 'not measured'}; maps faithful from epoch ({faithful}).")
        diffs = {s: wider_on_faithful(trt_runs[s], ref_runs[s], analysis, method)
                 for s in sorted(set(ref_runs) & set(trt_runs))}
        measured = {s: d for s, d in diffs.items() if d is not None}
        text = ", ".join(f"seed {s}: {d:+.3f}" for s, d in measured.items()) or "no epoch faithful in both runs"
        lines.append(f"  {treatment} wider than {reference} on faithful maps (mean area ratio difference over "
                     f"the epochs faithful in both): {verdict(list(measured.values())) if measured else 'not measured'}"
                     f" ({text}).")
    return lines


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders, grouped by their parent folder's name")
    p.add_argument("--analysis", default="analysis-faith", help="analysis folder inside each run")
    p.add_argument("--methods", required=True, help="attribution methods, comma-separated")
    p.add_argument("--reference", default="vanilla")
    p.add_argument("--treatment", default="sgdrop")
    p.add_argument("--out", type=Path, help="also write the Markdown here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        groups = group_runs(args.runs)
        text = "\n".join([method_table(groups, args.analysis, methods), "",
                          *verdict_lines(groups, args.analysis, methods, args.reference, args.treatment)]) + "\n"
    except (RunsError, KeyError, ValueError) as err:
        print(f"faithful_claims: {err}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
