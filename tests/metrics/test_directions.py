"""One direction per metric: the registry, `overfocus list`, analysis.json's metric_info,
docs/conventions.md, the audit's thresholds and the README's claims say the same thing."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from overfocus.audit.findings import THRESHOLDS
from overfocus.cli import main
from overfocus.metrics.registry import METRICS, SUMMARY_METRICS, metric_info

ROOT = Path(__file__).resolve().parents[2]


def registered(name):
    return (METRICS if name in METRICS else SUMMARY_METRICS).get(name)


def test_area_ratio_is_wider_higher_less_overfocused():
    spec = METRICS.get("area_ratio")
    assert spec.higher_is_better and spec.direction == "higher = wider attention (less overfocused)"
    assert not METRICS.get("gini").higher_is_better and METRICS.get("entropy").higher_is_better
    nondegenerate = SUMMARY_METRICS.get("area_ratio_nondegenerate")
    assert nondegenerate.higher_is_better and nondegenerate.direction == spec.direction
    # every displayed area ratio names its aggregate
    assert spec.title.endswith("(all maps)") and nondegenerate.title.endswith("(non-empty maps)")


def test_overfocus_list_shows_the_registry_direction(capsys):
    assert main(["list", "metrics"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name, line in lines.items():
        spec = registered(name)
        assert spec.direction in line, line
        if spec.higher_means:
            assert line.rstrip(")").split("; ")[-1].split(",")[0].endswith("better" if spec.higher_is_better
                                                                            else "worse"), line


def test_metric_info_of_analysis_json_carries_it():
    info = metric_info(["area_ratio", "gini", "area_ratio_nondegenerate"])
    assert info["area_ratio"]["higher_is_better"] is True and info["gini"]["higher_is_better"] is False
    assert info["area_ratio"]["direction"] == METRICS.get("area_ratio").direction


def conventions_table():
    """metric -> 'yes'/'no' from the "higher is better" column of docs/conventions.md."""
    text = (ROOT / "docs" / "conventions.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| (yes|no)\b[^|]*\|", text, flags=re.MULTILINE)
    listed = dict(rows)
    map_only = {m for m in METRICS.names() if not getattr(METRICS.get(m), "needs_model", False)}
    assert map_only <= set(listed), sorted(map_only - set(listed))  # every map metric has its row
    return listed


def test_conventions_table_agrees_with_the_registry():
    for name, said in conventions_table().items():
        assert (said == "yes") == METRICS.get(name).higher_is_better, name


def test_audit_thresholds_flag_the_worse_side():
    checked = 0
    for name, t in THRESHOLDS.items():
        if t.metric is None:
            continue
        worse_low = registered(t.metric).higher_is_better  # the worse side is the low one
        flags_worse = (t.flags == "low") == worse_low
        assert flags_worse != t.against_direction, f"{name} flags the {t.flags} side of {t.metric}"
        checked += 1
    assert checked >= 8 and THRESHOLDS["area_problem"].flags == "low"


def test_readme_claims_read_the_area_ratio_in_the_same_direction():
    sys.path.insert(0, str(ROOT / "analysis"))
    try:
        from claims import PAIRED_CLAIMS
    finally:
        sys.path.pop(0)
    wider = next(c for c in PAIRED_CLAIMS if c.column.startswith("Area ratio"))
    assert "wider" in wider.text and wider.sign == (+1 if METRICS.get("area_ratio").higher_is_better else -1)
    readme = (ROOT / "README.md").read_text()
    assert "keeps attention wider (area ratio, non-empty maps)" in readme
