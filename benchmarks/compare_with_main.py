"""Compare every output file of a demo-sized analysis made with two checkouts of overfocus.

Trains a small builtin run once (with the checkout given by --train-with), analyses it with the
code at --a and at --b (each in its own process, PYTHONPATH pointing at that checkout) into two
folders, and compares records/*.csv, summary.csv and probe/*.npz exactly (analysis.json: every
key the older one has). Exit 0 when identical.

    python benchmarks/compare_with_main.py --a /work/main --b . --work /tmp/cmp
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TRAIN = ("from overfocus.config import build_config; from overfocus.training.engine import train; "
         "cfg = build_config(overrides=['data.spec=builtin?classes=3&train=48&test=40', 'data.image_size=32', "
         "'data.batch_size=16', 'model.name=cifarnet', 'model.width=0.125', 'train.epochs=2', "
         "'train.progress=false']); train(cfg, {run!r})")
ANALYZE = ("import overfocus; overfocus.analyze({run!r}, out={out!r}, device='cpu', show_progress=False, "
           "**{kwargs})")
CASES = {"default": {}, "all_methods": {"methods": ["grad_cam", "sgdrop", "saliency", "input_x_gradient"]},
         "predicted": {"target": "predicted", "limit": 20, "probe": 6},
         "shard": {"methods": ["grad_cam"], "shard": "0/1"}}


LOCK_FILE = "analysis.lock"


def run_with(root: str, code: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(root).resolve())}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def compare(a: Path, b: Path) -> list:
    import numpy as np

    problems = []
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        problems.append(f"file lists differ: {files} vs {sorted(p.relative_to(b) for p in b.rglob('*'))}")
    for rel in files:
        pa, pb = a / rel, b / rel
        if not pb.is_file() or rel.name == LOCK_FILE:  # the lock names the process that held it: no output
            continue
        if rel.suffix == ".npz":
            with np.load(pa) as x, np.load(pb) as y:
                if sorted(x.files) != sorted(y.files) or any(not np.array_equal(x[k], y[k]) for k in x.files):
                    problems.append(f"{rel} differs")
        elif rel.name == "analysis.json":
            old, new = json.loads(pa.read_text()), json.loads(pb.read_text())
            diff = [k for k in old if old[k] != new.get(k)]
            if diff:
                problems.append(f"{rel}: keys {diff} differ")
        elif pa.read_bytes() != pb.read_bytes():
            problems.append(f"{rel} differs")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="reference checkout (e.g. /work/main)")
    ap.add_argument("--b", required=True, help="checkout under test")
    ap.add_argument("--work", required=True, help="scratch folder")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    work = Path(args.work)
    run = work / "run"
    if not (run / "run.json").is_file():
        run_with(args.a, TRAIN.format(run=str(run)))
    failed = False
    for case in args.cases.split(","):
        outs = {}
        for side in ("a", "b"):
            outs[side] = work / f"{case}_{side}"
            run_with(getattr(args, side), ANALYZE.format(run=str(run), out=str(outs[side]), kwargs=CASES[case]))
        problems = compare(outs["a"], outs["b"])
        print(f"{case}: {'identical' if not problems else 'DIFFERENT'}")
        for p in problems:
            print("   ", p)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
