"""The seed's four claims, judged on finished runs: a verdict per claim with the numbers behind it.

The claims (SGDrop paper, Bertoin et al. 2024):
  1. attention narrows over epochs (the reference method's Grad-CAM area ratio falls after a peak);
  2. SGDrop keeps attention wider (larger area ratio than the reference at the table epoch);
  3. SGDrop raises last-conv neuron coverage;
  4. SGDrop generalizes better (smaller gap and higher test accuracy).

Claims 2-4 compare runs of the SAME seed (paired differences), so seed-to-seed variation of the
data order and the initial weights cancels. The verdict rule is deliberately plain and the same
for every claim: "reproduces" when every seed agrees with the claim, "does not reproduce" when no
seed does, "mixed (k of n seeds)" otherwise. With three seeds this is a sign test at its coarsest;
the table's mean ± std and the per-seed numbers are printed so a reader can judge the size.

Each treatment's label leak (the true-label mask's accuracy minus the no-mask accuracy, train
subset and test split, from metrics.jsonl; docs/methods.md "The label leak") is stated seed by seed
beside the claims: an accuracy claim read from a run whose mask leaks the label says little about
the method, so the claims section says which seeds leak.

Claim 1 reads each reference run's `analysis/onset.json` (written by `overfocus analyze`): a seed
agrees when its area ratio peaks before the last analysed epoch and the slope after the peak has
a 95% bootstrap interval entirely below zero.

Example:
    >>> verdict([0.1, 0.2, 0.05])
    'reproduces'
    >>> verdict([0.1, -0.2, 0.05])
    'mixed (2 of 3 seeds)'
    >>> verdict([])
    'not measured'
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from runs_io import mean_std


@dataclass(frozen=True)
class PairedClaim:
    """A claim judged by the sign of treatment minus reference, seed by seed, in one table column."""

    text: str
    column: str
    sign: int  # +1: the claim says the treatment is higher; -1: lower
    unit: str = ""
    digits: int = 3


# Claim 4 is two columns: both must agree for a seed to count as "generalizes better".
PAIRED_CLAIMS = (
    PairedClaim("SGDrop keeps attention wider (area ratio, non-empty maps)",
                "Area ratio (non-empty)", +1),
    PairedClaim("SGDrop raises last-conv coverage (unit level)", "NC latent (units)", +1),
    PairedClaim("SGDrop generalizes better: smaller gap", "Gap (pp)", -1, " pp", 1),
    PairedClaim("SGDrop generalizes better: higher test accuracy", "Test acc. (%)", +1, " pp", 1),
)


# Leak margin in points: overfocus.regularizers.leak.LEAK_MARGIN (0.05) x 100 (these scripts run
# without the package; tests/test_make_table.py pins that the two agree).
LEAK_MARGIN_PP = 5.0
LEAK_TRAIN, LEAK_TEST = "Leak train (pp)", "Leak test (pp)"


def leak_line(values: Dict[int, Dict[str, Optional[float]]], treatment: str) -> Optional[str]:
    """The treatment's label leak per seed as a Markdown bullet; None when no run measured it.

    Example:
        >>> leak_line({0: {"Leak train (pp)": 34.0, "Leak test (pp)": 33.8}}, "sgdrop").split(" (")[0]
        "- **The label leaks through sgdrop's mask**: in 1 of 1 seed"
    """
    seeds = {s: v for s, v in values.items() if v.get(LEAK_TRAIN) is not None or v.get(LEAK_TEST) is not None}
    if not seeds:
        return None
    leaking = [s for s, v in seeds.items()
               if max(x for x in (v.get(LEAK_TRAIN), v.get(LEAK_TEST)) if x is not None) > LEAK_MARGIN_PP]
    fmt = lambda x: "n/a" if x is None else f"{x:+.1f}"  # noqa: E731
    per_seed = ", ".join(f"seed {s}: {fmt(v.get(LEAK_TRAIN))} / {fmt(v.get(LEAK_TEST))} pp"
                         for s, v in seeds.items())
    head = (f"- **The label leaks through {treatment}'s mask**: in {len(leaking)} of {len(seeds)} seed"
            f"{'s' if len(seeds) > 1 else ''}" if leaking else f"- **No label leak through {treatment}'s mask**: "
            f"in none of {len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    return (head + f" (true-label mask minus no mask, train subset / test split, margin {LEAK_MARGIN_PP:g} pp: "
            f"{per_seed}).")


def verdict(agreeing: Sequence[float]) -> str:
    """'reproduces' / 'does not reproduce' / 'mixed (k of n seeds)' from per-seed signed effects.

    Each value is the effect in the claim's direction (positive = agrees with the claim).
    """
    if not agreeing:
        return "not measured"
    k = sum(1 for v in agreeing if v > 0)
    if k == len(agreeing):
        return "reproduces"
    if k == 0:
        return "does not reproduce"
    return f"mixed ({k} of {len(agreeing)} seeds)"


def paired_differences(reference: Dict[int, Dict[str, Optional[float]]],
                       treatment: Dict[int, Dict[str, Optional[float]]], column: str) -> Dict[int, float]:
    """treatment - reference per seed present in both with a value in `column`."""
    out = {}
    for seed in sorted(set(reference) & set(treatment)):
        a, b = reference[seed].get(column), treatment[seed].get(column)
        if a is not None and b is not None:
            out[seed] = b - a
    return out


def paired_line(claim: PairedClaim, diffs: Dict[int, float], treatment: str, reference: str) -> str:
    """One Markdown bullet: the claim, its verdict, the mean ± std difference and each seed's."""
    signed = [claim.sign * d for d in diffs.values()]
    head = f"- **{claim.text.replace('SGDrop', treatment)}**: {verdict(signed)}."
    if not diffs:
        return head + f" (no seed has both {treatment} and {reference} with `{claim.column}`)"
    mean, std = mean_std(list(diffs.values()))
    per_seed = ", ".join(f"seed {s}: {d:+.{claim.digits}f}" for s, d in diffs.items())
    spread = f" ± {std:.{claim.digits}f}" if len(diffs) > 1 else ""
    return (head + f" {treatment} - {reference} in `{claim.column}`: {mean:+.{claim.digits}f}{spread}"
            f"{claim.unit} ({per_seed}).")


def read_onset(run: Path, analysis: str, method: str) -> Optional[dict]:
    """The onset of `method` in RUN/<analysis>/onset.json, or None when it was not written."""
    path = run / analysis / "onset.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("methods", {}).get(method)


def narrows(onset: dict) -> bool:
    """A run narrows: peak before the last epoch and a post-peak slope CI entirely below zero."""
    ci = onset.get("slope_ci") or [None, None]
    return (onset.get("peak_epoch") is not None and onset["peak_epoch"] < onset.get("last_epoch", -1)
            and ci[1] is not None and ci[1] < 0)


def narrowing_line(onsets: Dict[int, dict], reference: str, method: str) -> str:
    """Claim 1 as a Markdown bullet, from the reference runs' onsets."""
    head = f"- **Attention narrows over epochs ({reference}, `{method}`)**: "
    if not onsets:
        return head + "not measured (no onset.json: run `overfocus analyze` on the runs)."
    signed = [1.0 if narrows(o) else -1.0 for o in onsets.values()]
    parts = []
    for seed, o in onsets.items():
        if o.get("peak_epoch") is None:  # the onset found no epoch to search (e.g. maps never faithful)
            parts.append(f"seed {seed}: no peak ({o.get('search_reason') or 'no onset'})")
            continue
        ci = o.get("slope_ci") or [float("nan")] * 2
        parts.append(f"seed {seed}: peak at epoch {o['peak_epoch']}, {100 * o['narrowing']:.0f}% narrower "
                     f"by epoch {o['last_epoch']}, slope {o['slope']:+.4f}/epoch "
                     f"[{ci[0]:+.4f}, {ci[1]:+.4f}], gap {100 * o['gap_growth']:+.1f} pp since the peak")
    return head + verdict(signed) + ". " + "; ".join(parts) + "."


def claims_markdown(values_by_group: Dict[str, Dict[int, Dict[str, Optional[float]]]],
                    onsets: Dict[int, dict], reference: str, treatment: str, method: str) -> str:
    """The claims section: a heading, the verdict rule, one bullet per claim."""
    lines = [f"Claims ({treatment} vs {reference}, paired by seed; verdict: every seed agrees = "
             "reproduces, none = does not reproduce, otherwise mixed):", "",
             narrowing_line(onsets, reference, method)]
    ref, treat = values_by_group.get(reference, {}), values_by_group.get(treatment, {})
    for claim in PAIRED_CLAIMS:
        lines.append(paired_line(claim, paired_differences(ref, treat, claim.column), treatment, reference))
    leak = leak_line(treat, treatment)
    if leak is not None:
        lines.append(leak)
    return "\n".join(lines) + "\n"


def by_seed(runs: List) -> Dict[int, Dict[str, Optional[float]]]:
    """{seed: column values} of a group's runs (objects with .seed and .values)."""
    return {r.seed: r.values for r in runs}
