"""Which epochs of a run say something about its model: above chance, with mostly non-degenerate
maps, with maps faithful beyond the random baseline and past the sanity level. Pure numpy; the
onset (onset.py) searches its peak among these epochs only, and `overfocus analyze` prints one
verdict line per method (docs/analysis.md, "Is the narrowing real?").

- `above_chance`: test accuracy significantly above the majority-class rate of the analysed
  images: one-sided exact binomial test, p < 0.05 (`CHANCE_ALPHA`).
- mostly non-degenerate: at most half of the maps degenerate (`MAX_DEGENERATE`).
- `faithful_from`: the first epoch from which, at every later measured epoch, the method beats
  the random baseline on deletion (lower) AND insertion (higher): the 95% paired bootstrap
  interval of the per-image difference to the random map excludes 0 on the good side.
- `sanity_from`: the first epoch (after 0) from which the median `sanity_init` (Spearman with the
  epoch-0 map) stays below `SANITY_LEVEL` = 0.5.

Example:
    >>> above_chance(correct=60, n=100, majority=0.5), above_chance(correct=55, n=100, majority=0.5)
    (True, False)
    >>> first_from([0, 1, 2, 3], [False, True, False, True])
    3
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

CHANCE_ALPHA = 0.05
MAX_DEGENERATE = 0.5
SANITY_LEVEL = 0.5
N_BOOT = 1000


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log-space sum).

    Example:
        >>> round(binomial_upper_tail(2, 2, 0.5), 4), binomial_upper_tail(0, 5, 0.3)
        (0.25, 1.0)
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    i = np.arange(k, n + 1, dtype=np.float64)
    lgamma = np.vectorize(math.lgamma)
    logs = lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
    top = logs.max()
    return float(min(1.0, math.exp(top) * np.exp(logs - top).sum()))


def above_chance(correct: int, n: int, majority: float, alpha: float = CHANCE_ALPHA) -> bool:
    """Accuracy `correct / n` significantly above the majority-class rate (one-sided binomial test)."""
    return n > 0 and binomial_upper_tail(int(correct), int(n), float(majority)) < alpha


def first_from(epochs: Sequence[int], ok: Sequence[bool]) -> Optional[int]:
    """The first epoch from which `ok` holds at every later epoch (None when the last does not)."""
    start = None
    for epoch, good in zip(epochs, ok):
        if good and start is None:
            start = int(epoch)
        elif not good:
            start = None
    return start


def paired_better(method: np.ndarray, baseline: np.ndarray, higher_is_better: bool, n_boot: int = N_BOOT,
                  seed: int = 0) -> bool:
    """True when the 95% bootstrap interval of mean(method - baseline) over images where both
    are defined lies entirely on the good side of 0.

    Example:
        >>> paired_better(np.array([0.8, 0.9, 0.7, 0.85]), np.array([0.5, 0.5, 0.5, 0.5]), True)
        True
    """
    method, baseline = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    both = ~(np.isnan(method) | np.isnan(baseline))
    diff = (method - baseline)[both] * (1.0 if higher_is_better else -1.0)
    if diff.size < 2:
        return False
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    return bool(np.percentile(means, 2.5) > 0)


def faithful_epochs(epochs: Sequence[int], method: Dict[str, Dict[int, np.ndarray]],
                    baseline: Dict[str, Dict[int, np.ndarray]]) -> Dict[int, bool]:
    """Per epoch where both are measured: does the method beat the baseline on deletion and insertion?
    `method` / `baseline`: metric -> epoch -> per-image values aligned on the same images."""
    out = {}
    for epoch in epochs:
        pairs = [(method.get(m, {}).get(epoch), baseline.get(m, {}).get(epoch)) for m in ("deletion", "insertion")]
        if any(a is None or b is None for a, b in pairs):
            continue
        (del_m, del_b), (ins_m, ins_b) = pairs
        out[int(epoch)] = paired_better(del_m, del_b, False) and paired_better(ins_m, ins_b, True)
    return out


def sanity_from(medians: Dict[int, float], level: float = SANITY_LEVEL) -> Optional[int]:
    """The first epoch after 0 from which the median sanity_init stays below `level`."""
    epochs = sorted(e for e in medians if e > 0 and not math.isnan(medians[e]))
    return first_from(epochs, [medians[e] < level for e in epochs])


def search_start(epochs: Sequence[int], chance_ok: Optional[Dict[int, bool]], degenerate: Dict[int, float],
                 faithful_from: Optional[int], faithfulness_measured: bool) -> Dict[str, object]:
    """The epochs the onset's peak may sit at and, in words, why the search starts where it does.

    `chance_ok`: per epoch, is the model above chance (None: accuracy not recorded, not applied).
    Returns {"epochs": eligible epochs, "search_from": the first of them or None, "reason": str}.

    Example:
        >>> s = search_start([0, 1, 2, 3], {0: False, 1: False, 2: True, 3: True}, {2: 0.1, 3: 0.0}, None, False)
        >>> s["search_from"], s["reason"]
        (2, 'epoch 0 holds the initial weights; the model is at chance level before epoch 2')
    """
    reasons: List[str] = ["epoch 0 holds the initial weights"]
    eligible = [int(e) for e in epochs if e > 0]
    if chance_ok is not None:
        chance_first = next((e for e in eligible if chance_ok.get(e, False)), None)
        if chance_first is None:
            return {"epochs": [], "search_from": None, "reason": "the model is never above chance level"}
        if chance_first > min(eligible, default=chance_first):
            reasons.append(f"the model is at chance level before epoch {chance_first}")
        eligible = [e for e in eligible if chance_ok.get(e, False)]
    dead = [e for e in eligible if degenerate.get(e, 0.0) > MAX_DEGENERATE]
    eligible = [e for e in eligible if degenerate.get(e, 0.0) <= MAX_DEGENERATE]
    if dead:
        reasons.append(f"most maps are degenerate at epoch{'s' if len(dead) > 1 else ''} {_list(dead)}")
    if faithfulness_measured:
        if faithful_from is None:
            return {"epochs": [], "search_from": None,
                    "reason": "the maps never beat the random baseline on deletion and insertion"}
        before = [e for e in eligible if e < faithful_from]
        eligible = [e for e in eligible if e >= faithful_from]
        if before:
            reasons.append(f"the maps are faithful from epoch {faithful_from} on")
    if not eligible:
        return {"epochs": [], "search_from": None, "reason": "; ".join(reasons) + ": no epoch is left"}
    return {"epochs": eligible, "search_from": eligible[0], "reason": "; ".join(reasons)}


def _list(epochs: Sequence[int]) -> str:
    return ", ".join(map(str, epochs[:5])) + (", ..." if len(epochs) > 5 else "")


def verdict_line(method: str, onset: Optional[Dict[str, object]]) -> str:
    """`narrowing after epoch P on maps faithful from epoch F: yes/no`, with the reason of a no.

    Example:
        >>> verdict_line("grad_cam", {"peak_epoch": 3, "last_epoch": 9, "slope_ci": [-0.02, -0.01],
        ...                           "faithful_from": 2, "faithfulness_measured": True})
        'grad_cam: narrowing after epoch 3 on maps faithful from epoch 2: yes'
    """
    o = onset or {}
    measured, faithful, peak = bool(o.get("faithfulness_measured")), o.get("faithful_from"), o.get("peak_epoch")
    if peak is None:
        return f"{method}: no epoch to search for a narrowing ({o.get('search_reason', 'no maps')}): no"
    hi = (o.get("slope_ci") or [None, None])[1]
    narrows = o.get("last_epoch") != peak and hi is not None and not math.isnan(hi) and hi < 0
    answer = "yes" if narrows else "no (the area ratio does not fall significantly after the peak)"
    if not measured or faithful is None:
        return (f"{method}: narrowing after epoch {peak} (faithfulness of the maps not measured: pass "
                f"--faithfulness-images N): {answer}")
    return f"{method}: narrowing after epoch {peak} on maps faithful from epoch {faithful}: {answer}"
