"""Does a vision transformer's attention narrow over epochs like the CNNs'? And does SGDrop change it?

Reads the runs of the architectures recipe (`analysis/recipes/architectures/run.sh`), laid out as
OUT/ARCH/REGULARIZER/seedS, each analysed by `overfocus analyze` (its `analysis/onset.json`: per
attribution method the peak epoch of the non-degenerate area ratio, the post-peak slope with its
95% bootstrap interval, the narrowing since the peak). Writes:

- a table, one row per architecture x regularizer x map x seed: onset (peak epoch), narrowing,
  post-peak slope with its interval, and whether that run narrows (claims.py's rule: a peak before
  the last analysed epoch and a slope interval entirely below zero);
- the claim lines: per architecture and map, does attention narrow (vanilla runs; verdict over
  seeds as in claims.py: every seed = "reproduces", none = "does not reproduce", else mixed); the
  seed's statement, checked: does the ViT narrow like the CNNs; and per architecture, does SGDrop
  change the narrowing (paired by seed: SGDrop's narrowing minus vanilla's, per map).

Standard library only (the recipe's figures come from `overfocus compare` and make_figures.py).

Example:
    >>> vit_claim({"narrows": "does not reproduce"}, {"vgg11": "reproduces", "resnet18": "reproduces"})
    'no: the ViT does not narrow (does not reproduce) where the CNNs do (resnet18: reproduces; vgg11: reproduces)'
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from claims import narrows, read_onset, verdict
from runs_io import RunsError, atomic_write_text, read_manifest

VANILLA, SGDROP = "vanilla", "sgdrop"
Key = Tuple[str, str, str]  # (architecture, regularizer, attribution method)


def run_onsets(runs: Sequence[Path], analysis: str = "analysis") -> Dict[Key, Dict[int, dict]]:
    """{(arch, regularizer, method): {seed: onset}} from OUT/ARCH/REGULARIZER/seedS run folders."""
    found: Dict[Key, Dict[int, dict]] = {}
    for run in runs:
        run = Path(run)
        arch, reg = run.parent.parent.name, run.parent.name
        seed = int(read_manifest(run).get("seed", 0))
        path = run / analysis / "onset.json"
        if not path.is_file():
            raise RunsError(f"{path} is missing: run `overfocus analyze {run}` first")
        for method in json.loads(path.read_text()).get("methods", {}):
            onset = read_onset(run, analysis, method)
            if onset is not None:
                found.setdefault((arch, reg, method), {})[seed] = onset
    return found


def _num(value: Optional[float], digits: int = 4, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def table_markdown(onsets: Dict[Key, Dict[int, dict]]) -> str:
    """One row per architecture x regularizer x map x seed."""
    lines = ["| architecture | regularizer | map | seed | onset (peak epoch) | narrowing since the peak | "
             "post-peak slope / epoch [95% CI] | narrows |", "|---|---|---|---|---|---|---|---|"]
    for (arch, reg, method), by_seed in sorted(onsets.items()):
        for seed, o in sorted(by_seed.items()):
            if o.get("peak_epoch") is None:  # nothing to search: say why
                lines.append(f"| {arch} | {reg} | `{method}` | {seed} | none: {o.get('search_reason') or 'no peak'} | "
                             "n/a | n/a | not measured |")
                continue
            ci = o.get("slope_ci") or [None, None]
            narrowing = o.get("narrowing")
            lines.append(f"| {arch} | {reg} | `{method}` | {seed} | {o['peak_epoch']} of {o.get('last_epoch')} | "
                         f"{'n/a' if narrowing is None else f'{100 * narrowing:.0f}%'} | "
                         f"{_num(o.get('slope'))} [{_num(ci[0])}, {_num(ci[1])}] | "
                         f"{'yes' if narrows(o) else 'no'} |")
    return "\n".join(lines)


def narrowing_verdicts(onsets: Dict[Key, Dict[int, dict]], reg: str = VANILLA) -> Dict[Tuple[str, str], str]:
    """{(arch, method): verdict over seeds} of "attention narrows" for the `reg` runs; seeds whose
    onset could not be searched (e.g. a model never above chance) are left out and counted."""
    out = {}
    for (arch, r, method), by_seed in sorted(onsets.items()):
        if r != reg:
            continue
        measured = [o for o in by_seed.values() if o.get("peak_epoch") is not None]
        text = verdict([1.0 if narrows(o) else -1.0 for o in measured])
        if len(measured) < len(by_seed):
            text += f" ({len(by_seed) - len(measured)} of {len(by_seed)} seeds without an onset to search)"
        out[(arch, method)] = text
    return out


def vit_claim(vit: Dict[str, str], cnns: Dict[str, str]) -> str:
    """Does the ViT narrow like the CNNs? `vit`: {label: verdict} of its maps; `cnns`: {arch: verdict}."""
    cnn_text = "; ".join(f"{a}: {v}" for a, v in sorted(cnns.items())) or "no CNN measured"
    vit_text = "; ".join(f"{m}: {v}" for m, v in sorted(vit.items())) if len(vit) > 1 else next(iter(vit.values()))
    cnn_narrow = bool(cnns) and all(v == "reproduces" for v in cnns.values())
    vit_narrow = all(v == "reproduces" for v in vit.values())
    vit_never = all(v == "does not reproduce" for v in vit.values())
    if cnn_narrow and vit_never:
        return f"no: the ViT does not narrow ({vit_text}) where the CNNs do ({cnn_text})"
    if cnn_narrow and vit_narrow:
        return f"yes: the ViT narrows ({vit_text}) as the CNNs do ({cnn_text})"
    return f"not clear-cut: ViT {vit_text}; CNNs {cnn_text}"


def sgdrop_lines(onsets: Dict[Key, Dict[int, dict]]) -> List[str]:
    """Per architecture and map: SGDrop's narrowing minus vanilla's, paired by seed."""
    lines = []
    for (arch, reg, method), sg in sorted(onsets.items()):
        if reg != SGDROP or (arch, VANILLA, method) not in onsets:
            continue
        va = onsets[(arch, VANILLA, method)]
        diffs = {s: sg[s]["narrowing"] - va[s]["narrowing"] for s in sorted(set(sg) & set(va))
                 if sg[s].get("narrowing") is not None and va[s].get("narrowing") is not None
                 and sg[s].get("peak_epoch") is not None and va[s].get("peak_epoch") is not None}
        if not diffs:
            continue
        per_seed = ", ".join(f"seed {s}: {100 * d:+.0f} pp" for s, d in diffs.items())
        lines.append(f"- **SGDrop narrows less than vanilla ({arch}, `{method}`)**: "
                     f"{verdict([-d for d in diffs.values()])} ({per_seed}; narrowing since the peak, "
                     "SGDrop minus vanilla).")
    return lines


def report_markdown(onsets: Dict[Key, Dict[int, dict]], vit_arch: str, method: str,
                    vit_methods: Sequence[str]) -> str:
    verdicts = narrowing_verdicts(onsets)
    lines = ["# Architectures: does attention narrow over epochs?", "",
             "Verdicts over seeds: every seed agrees = reproduces, none = does not reproduce, otherwise mixed "
             "(a run narrows when its area ratio peaks before the last analysed epoch and the post-peak "
             "slope's 95% interval lies below zero).", ""]
    for (arch, m), v in verdicts.items():
        lines.append(f"- **Attention narrows over epochs ({arch}, vanilla, `{m}`)**: {v}.")
    vit = {m: verdicts[(vit_arch, m)] for m in vit_methods if (vit_arch, m) in verdicts}
    cnns = {a: v for (a, m), v in verdicts.items() if m == method and a != vit_arch}
    if vit:
        lines.append(f"- **The ViT's attention narrows like the CNNs' (`{method}` for the CNNs)**: "
                     f"{vit_claim(vit, cnns)}.")
    lines += sgdrop_lines(onsets)
    return "\n".join(lines + ["", table_markdown(onsets), ""])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders OUT/ARCH/REGULARIZER/seedS, analysed")
    parser.add_argument("--vit", default="vit", help="the ViT's architecture folder name (default vit)")
    parser.add_argument("--method", default="grad_cam", help="the map compared across architectures")
    parser.add_argument("--vit-methods", default="grad_cam,attention_rollout",
                        help="the ViT's maps judged against the CNNs (comma-separated)")
    parser.add_argument("--analysis", default="analysis", help="analysis folder inside each run")
    parser.add_argument("--out", required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    try:
        onsets = run_onsets([Path(r) for r in args.runs], args.analysis)
    except RunsError as exc:
        print(f"architectures: {exc}", file=sys.stderr)
        return 2
    text = report_markdown(onsets, args.vit, args.method, args.vit_methods.split(","))
    atomic_write_text(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
