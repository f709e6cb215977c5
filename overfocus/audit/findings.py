"""The audit's findings (ok / warning / problem, one sentence each) and its CI gates.

Thresholds are in THRESHOLDS (documented in docs/audit.md) and can be overridden per call;
`make_findings` turns the audit's metrics into findings and `evaluate_gates` checks `--fail-under`.

Example:
    >>> pct(0.256)
    '26%'
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..attribution.methods import ATTRIBUTIONS, DEFAULT_METHODS
from ..errors import OverfocusError
from ..regularizers.leak import LEAK_MARGIN, TEST_SUFFIX


@dataclass(frozen=True)
class Threshold:
    """A threshold of a finding. `metric` / `flags`: the registered metric it is compared with and
    which side is flagged ("low": values below it, "high": above). The flagged side is the metric's
    worse side (metrics/registry.py `higher_is_better`) unless `against_direction` says that the
    finding flags the better side's extreme on purpose (a map so wide that it says nothing)."""

    default: float
    doc: str
    metric: Optional[str] = None
    flags: Optional[str] = None  # "low" | "high"
    against_direction: bool = False


THRESHOLDS: Dict[str, Threshold] = {
    "chance_factor": Threshold(1.5, "accuracy below chance x this factor is a problem", "accuracy", "low"),
    "accuracy_warning": Threshold(0.5, "accuracy below this is a warning", "accuracy", "low"),
    "area_problem": Threshold(0.03, "mean area ratio (all maps) below this is a problem (overfocused: attention "
                                    "too narrow)", "area_ratio", "low"),
    "area_warning": Threshold(0.08, "mean area ratio (all maps) below this is a warning (narrow attention)",
                              "area_ratio", "low"),
    "area_diffuse": Threshold(0.6, "mean area ratio (all maps) above this is a warning (diffuse, uninformative)",
                              "area_ratio", "high", against_direction=True),
    "outside_problem": Threshold(0.5, "localisation: share of images with energy pointing game < 0.5 above "
                                      "this, with the peak off the object too, is a problem", "outside_box", "high"),
    "outside_warning": Threshold(0.25, "localisation: share of images with energy pointing game < 0.5 above "
                                       "this is a warning", "outside_box", "high"),
    "pointing_warning": Threshold(0.5, "localisation: pointing game (peak on the object) below this is a warning; "
                                       "with most attention outside the box too, a problem", "pointing_game", "low"),
    "degenerate_warning": Threshold(0.1, "share of degenerate maps (all zero or non-finite) above this is a warning",
                                    "degenerate", "high"),
    "narrowing_warning": Threshold(0.2, "area ratio (non-empty maps) down by more than this share since its "
                                        "peak epoch is a warning (run directories analysed by `overfocus analyze`)"),
    "harmonization_warning": Threshold(0.2, "harmonization score below this is a warning", "harmonization", "low"),
    "latent_coverage_warning": Threshold(0.1, "cumulative latent-layer neuron coverage below this is a warning",
                                         "coverage_latent", "low"),
    "gap_warning": Threshold(0.1, "generalization gap (run directories) above this is a warning"),
    "gap_problem": Threshold(0.25, "generalization gap (run directories) above this is a problem"),
    "leak_warning": Threshold(LEAK_MARGIN, "label leak (runs of a label-masked regularizer): accuracy with the true "
                                           "label's mask above the accuracy without a mask by more than this, on "
                                           "the train subset or the test split, is a warning"),
    "leak_problem": Threshold(0.2, "label leak: the same difference above this is a problem"),
    "sanity_level": Threshold(0.5, "median Spearman of the maps with the epoch-0 (untrained) model's maps at or "
                                   "above this at the last analysed epoch is a problem: the model-randomisation "
                                   "sanity check fails (run directories analysed by `overfocus analyze`)",
                              "sanity_init", "high"),
}


LEVELS = ("problem", "warning", "ok")


def pct(value: float) -> str:
    """A share as a percentage, with one decimal below 10% so that 0.4% does not read as 0%.

    Example:
        >>> pct(0.004), pct(0.61), pct(0.0)
        ('0.4%', '61%', '0%')
    """
    return f"{value * 100:.1f}%" if 0 < abs(value) < 0.1 else f"{value * 100:.0f}%"


def finding(fid: str, level: str, message: str, metric: Optional[str] = None,
            value: Optional[float] = None) -> Dict[str, Any]:
    assert level in LEVELS
    return {"id": fid, "level": level, "message": message, "metric": metric, "value": value}


def graded(value: float, problem: bool, warning: bool) -> str:
    return "problem" if problem else "warning" if warning else "ok"


def value_of(metrics: Dict[str, Dict[str, Any]], name: str, primary: str = DEFAULT_METHODS[0]) -> Optional[float]:
    """A metric's value; a bare map metric name (`area_ratio`) means the primary method's."""
    entry = metrics.get(name) if name in metrics or "." in name else metrics.get(f"{primary}.{name}")
    return (entry or {}).get("value")


def accuracy_finding(metrics, t, n_classes: int) -> List[Dict[str, Any]]:
    acc = value_of(metrics, "accuracy")
    chance = 1.0 / max(n_classes, 1)
    if acc is None:
        return []
    level = graded(acc, acc < chance * t["chance_factor"], acc < t["accuracy_warning"])
    text = {"problem": f"accuracy {pct(acc)} is near chance ({pct(chance)})",
            "warning": f"accuracy {pct(acc)} is low (chance {pct(chance)})",
            "ok": f"accuracy {pct(acc)} (chance {pct(chance)})"}[level]
    return [finding("accuracy", level, text, "accuracy", acc)]


def area_finding(metrics, t, title: str) -> List[Dict[str, Any]]:
    area = value_of(metrics, "area_ratio")
    if area is None:
        return []
    level = graded(area, area < t["area_problem"], area < t["area_warning"] or area > t["area_diffuse"])
    text = f"{title} attention covers {pct(area)} of the image on average"
    if level != "ok":
        text += " (diffuse: it marks most of the image)" if area > t["area_diffuse"] else " (overfocused)"
    return [finding("area_ratio", level, text, "area_ratio", area)]


def box_findings(metrics, t, title: str) -> List[Dict[str, Any]]:
    """ONE localisation finding from the box metrics, with its rule stated, so that no two sentences
    can contradict each other (a peak on the object with the map wider than the box is both).

    problem: the peak is off the object (pointing game < pointing_warning) AND most attention lies
    outside the box in more than outside_problem of the images; warning: either one of the two
    (or outside_box above outside_warning); ok otherwise. The hit ratio is reported, not graded:
    a map wider or tighter than the box misses IoU >= 0.5 while pointing at the object.
    """
    pg, outside, hit = (value_of(metrics, name) for name in ("pointing_game", "outside_box", "hit_ratio"))
    if pg is None and outside is None:
        return []
    peak_off = pg is not None and pg < t["pointing_warning"]
    mass_out = outside is not None and outside > t["outside_problem"]
    level = graded(0.0, peak_off and mass_out, peak_off or mass_out or (outside or 0.0) > t["outside_warning"])
    parts = []
    if pg is not None:
        parts.append(f"peak on the object in {pct(pg)} of images")
    if outside is not None:
        parts.append(f"most attention outside the box in {pct(outside)}")
    if hit is not None:
        parts.append(f"main region matches the box (IoU >= 0.5) in {pct(hit)}")
    rule = (f"problem: peak on the object < {pct(t['pointing_warning'])} and mostly outside > "
            f"{pct(t['outside_problem'])}; warning: either, or mostly outside > {pct(t['outside_warning'])}")
    metric, value = ("pointing_game", pg) if pg is not None else ("outside_box", outside)
    return [finding("localisation", level, f"{title} localisation: {', '.join(parts)} ({rule})", metric, value)]


def map_quality_findings(metrics, t, title: str, layer: Optional[str]) -> List[Dict[str, Any]]:
    out = []
    dead = value_of(metrics, "degenerate")
    if dead is not None and dead > t["degenerate_warning"]:
        out.append(finding("degenerate", "warning", f"{title} is empty (all zero or non-finite) for {pct(dead)} of "
                           f"images (no positive evidence at layer {layer}); the thresholded metrics count them as "
                           "0, their `_nondegenerate` variants leave them out; try another --layer",
                           "degenerate", dead))
    harm = value_of(metrics, "harmonization")
    if harm is not None:
        level = graded(harm, False, harm < t["harmonization_warning"])
        out.append(finding("harmonization", level, f"{title} agrees {'weakly ' if level != 'ok' else ''}with "
                           f"the human maps (harmonization {harm:.2f})", "harmonization", harm))
    return out


def coverage_finding(metrics, t) -> List[Dict[str, Any]]:
    cov = value_of(metrics, "coverage_latent")
    if cov is None:
        return []
    level = graded(cov, False, cov < t["latent_coverage_warning"])
    text = f"{'only ' if level != 'ok' else ''}{pct(cov)} of the latent layer's neurons fire for any audited image"
    return [finding("coverage_latent", level, text, "coverage_latent", cov)]


def gap_finding(row: Optional[Dict[str, Any]], t) -> List[Dict[str, Any]]:
    gap = (row or {}).get("gap")
    if gap is None:
        return []
    level = graded(gap, gap > t["gap_problem"], gap > t["gap_warning"])
    text = (f"generalization gap {gap * 100:.1f} points at epoch {row.get('epoch')} (train accuracy "
            f"{pct(row.get('train_acc', 0.0))}, test {pct(row.get('test_acc', 0.0))})")
    return [finding("gap", level, text, "gap", gap)]


def leak_finding(row: Optional[Dict[str, Any]], t) -> List[Dict[str, Any]]:
    """The label leak of the audited epoch (metrics.jsonl's leak columns, regularizers/leak.py):
    how much better the network does with the mask of the true label than without a mask."""
    row = row or {}
    splits = [(suffix, where) for suffix, where in (("", "train subset"), (TEST_SUFFIX, "test split"))
              if row.get("leak_true_mask_acc" + suffix) is not None and row.get("leak_no_mask_acc" + suffix) is not None]
    if not splits:
        return []
    lift = {s: row["leak_true_mask_acc" + s] - row["leak_no_mask_acc" + s] for s, _ in splits}
    worst = max(lift, key=lift.get)
    level = graded(lift[worst], lift[worst] > t["leak_problem"], lift[worst] > t["leak_warning"])

    def accs(suffix: str) -> str:
        parts = [("true-label mask", "true"), ("no mask", "no"), ("wrong-label mask", "wrong"),
                 ("predicted-class mask", "pred")]
        return ", ".join(f"{text} {pct(row[f'leak_{k}_mask_acc{suffix}'])}" for text, k in parts
                         if row.get(f"leak_{k}_mask_acc{suffix}") is not None)

    head = ("the label leaks through the training mask" if level != "ok" else "no label leak through the training mask")
    detail = "; ".join(f"{where}: {accs(s)}" for s, where in splits)
    text = (f"{head} at epoch {row.get('epoch')}: accuracy {lift[worst] * 100:+.1f} points with the true label's "
            f"mask over no mask ({detail})")
    return [finding("label_leak", level, text, "label_leak", lift[worst])]


def onset_finding(onset: Optional[Dict[str, Any]], method: str, t) -> List[Dict[str, Any]]:
    """The run's overfocus onset (RUN/analysis/onset.json of `overfocus analyze`) as a finding:
    how much the area ratio (non-degenerate maps) lost since its peak epoch, and the gap meanwhile."""
    o = ((onset or {}).get("methods") or {}).get(method)
    if not o or o.get("narrowing") is None:
        return []
    if o["last_epoch"] == o["peak_epoch"]:
        return [finding("onset", "ok", f"attention is widest at the last analysed epoch ({o['last_epoch']}): "
                        "no narrowing yet", "narrowing", 0.0)]
    text = f"attention narrowed by {pct(o['narrowing'])} since epoch {o['peak_epoch']}"
    growth = o.get("gap_growth")
    if growth is not None:
        text += f" while the gap {'grew' if growth >= 0 else 'shrank'} by {abs(growth) * 100:.1f} points"
    text += (f" (area ratio of non-empty maps {o['peak_area']:.3f} -> {o['last_area']:.3f} "
             f"at epoch {o['last_epoch']})")
    if o.get("search_from") is not None:  # where the peak was searched from (onset.json, schema 2)
        text += f"; peak searched from epoch {o['search_from']}: {o.get('search_reason', '')}"
    level = "warning" if o["narrowing"] > t["narrowing_warning"] else "ok"
    return [finding("onset", level, text, "narrowing", o["narrowing"])]


def sanity_findings(onset: Optional[Dict[str, Any]], method: str, t) -> List[Dict[str, Any]]:
    """The run's sanity and faithfulness verdicts (onset.json of `overfocus analyze`) as findings:
    maps that still resemble those of the untrained model (median Spearman with the epoch-0 map
    at or above the sanity level at the last analysed epoch) or that never beat the random
    baseline on deletion and insertion are a problem: what they show is not the model's."""
    o = ((onset or {}).get("methods") or {}).get(method) or {}
    found = []
    medians = o.get("sanity_init_median") or {}
    later = {int(e): v for e, v in medians.items() if int(e) > 0 and v is not None}
    if later:
        last = max(later)
        level = t["sanity_level"]
        if later[last] >= level:
            found.append(finding("sanity_init", "problem",
                                 f"the maps still resemble those of the untrained model: median Spearman with the "
                                 f"epoch-0 map {later[last]:.2f} >= {level:g} at epoch {last} (model-parameter "
                                 "randomisation sanity check failed)", "sanity_init", later[last]))
        else:
            since = o.get("sanity_from")
            found.append(finding("sanity_init", "ok",
                                 f"the maps depend on the learned weights: median Spearman with the epoch-0 map "
                                 f"{later[last]:.2f} < {level:g} at epoch {last}"
                                 + (f" (since epoch {since})" if since is not None else ""), "sanity_init",
                                 later[last]))
    if o.get("faithfulness_measured"):
        if o.get("faithful_from") is None:
            found.append(finding("faithfulness", "problem", "the maps never beat the random baseline on deletion "
                                 "and insertion over the analysed epochs: they are not faithful to the model"))
        else:
            found.append(finding("faithfulness", "ok", f"the maps beat the random baseline on deletion and insertion "
                                 f"from epoch {o['faithful_from']} on"))
    return found


def make_findings(metrics, thresholds, facts: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every finding, problems first; `facts` carries what is not a metric (classes, notes, ...)."""
    title = ATTRIBUTIONS.get(facts["method"]).title if facts["method"] in ATTRIBUTIONS else facts["method"]
    prefix = facts["method"] + "."
    metrics = {**metrics, **{k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}}
    found = accuracy_finding(metrics, thresholds, facts["n_classes"])
    found += area_finding(metrics, thresholds, title) + box_findings(metrics, thresholds, title)
    found += map_quality_findings(metrics, thresholds, title, facts.get("layer"))
    found += coverage_finding(metrics, thresholds) + gap_finding(facts.get("history_row"), thresholds)
    found += leak_finding(facts.get("history_row"), thresholds)
    found += onset_finding(facts.get("onset"), facts["method"], thresholds)
    found += sanity_findings(facts.get("onset"), facts["method"], thresholds)
    found += [finding(f"note_{i}", "warning", text) for i, text in enumerate(facts.get("warnings", []))]
    return sorted(found, key=lambda f: LEVELS.index(f["level"]))


def evaluate_gates(gates: Sequence[Tuple[str, float]], metrics, primary: str) -> List[Dict[str, Any]]:
    """Each `--fail-under name=min` as {metric, min, value, passed}; an uncomputed metric is bad input."""
    out = []
    for name, minimum in gates:
        value = value_of(metrics, name, primary)
        if value is None:
            raise OverfocusError(f"--fail-under {name}: this metric was not computed for this audit "
                                 "(it needs boxes, human maps or attention maps that this input lacks)")
        out.append({"metric": name, "min": minimum, "value": value, "passed": bool(value >= minimum)})
    return out
