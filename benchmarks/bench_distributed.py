"""Benchmark: analysis throughput of one run's checkpoints with 1, 2, ... processes (torchrun).

Each row analyses every checkpoint of the same run from scratch (`overfocus analyze --force`,
a fresh `--out`), with `--nproc N` for N > 1. The fixed cost of a call (interpreter start,
imports, process group, data and model setup) is measured by a second call that finds nothing
to do, and subtracted: `net s` is the analysis itself. Throughput is in analysed
(image, checkpoint) pairs per second, i.e. images per second per checkpoint. On the CPU every
configuration gets the same cores (OMP_NUM_THREADS = cores / N per process), so the ratio shows
what splitting the work over processes buys, not what more cores buy. The merged files of every
N are checked against the one-process files (records within 1e-5).

Usage:
    python benchmarks/bench_distributed.py --quick                  # CPU, small run
    python benchmarks/bench_distributed.py --device cuda --nproc 4  # one GPU per process
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_run(folder: Path, n_images: int, model: str, width: float, size: int, epochs: int) -> Path:
    """A small trained run on the builtin data (the analysis cost does not depend on accuracy)."""
    from overfocus.config import build_config
    from overfocus.training.engine import train

    cfg = build_config(overrides=[f"data.spec=builtin?classes=6&train=64&test={n_images}",
                                  f"data.image_size={size}", "data.batch_size=32", f"model.name={model}",
                                  f"model.width={width}", f"train.epochs={epochs}", "train.progress=false",
                                  "train.device=cpu"])
    return train(cfg, folder, force=True)


def analyze_call(run: Path, out: Path, nproc: int, device: str, threads: int, force: bool) -> float:
    """Wall seconds of one `overfocus analyze` command."""
    cmd = [sys.executable, "-m", "overfocus", "analyze", str(run), "--out", str(out), "--device", device]
    cmd += (["--force"] if force else []) + ([f"--nproc={nproc}"] if nproc > 1 else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"analyze --nproc {nproc} failed:\n{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def max_difference(run: Path, one: Path, other: Path) -> float:
    """Largest |value difference| between two analyses' records (inf when the rows differ)."""
    from overfocus.analysis.storage import read_records

    a, b = read_records(run, out=one), read_records(run, out=other)
    key = ("epoch", "method", "image_id", "metric")
    if [tuple(r[k] for k in key) for r in a] != [tuple(r[k] for k in key) for r in b]:
        return math.inf
    diffs = [abs(x["value"] - y["value"]) for x, y in zip(a, b) if not (math.isnan(x["value"]) and math.isnan(y["value"]))]
    return max(diffs, default=0.0)


def measure(run: Path, work: Path, nproc: int, device: str, cores: int, repeats: int) -> Dict[str, float]:
    """Best full and net time of `repeats` from-scratch analyses with `nproc` processes."""
    threads = max(1, cores // nproc) if device == "cpu" else 1
    out = work / f"nproc{nproc}"
    full = min(analyze_call(run, out, nproc, device, threads, force=True) for _ in range(repeats))
    fixed = analyze_call(run, out, nproc, device, threads, force=False)  # nothing left to do
    return {"nproc": nproc, "threads": threads, "full": full, "fixed": fixed, "net": max(full - fixed, 1e-9)}


def table(rows: List[Dict[str, float]], pairs: int, diffs: Dict[int, float]) -> str:
    lines = ["| processes | threads each | wall s | fixed s | net s | img x ckpt / s (net) | speed-up (net) "
             "| max record diff vs 1 |", "|---|---|---|---|---|---|---|---|"]
    base = rows[0]["net"]
    for r in rows:
        lines.append(f"| {r['nproc']} | {r['threads']} | {r['full']:.2f} | {r['fixed']:.2f} | {r['net']:.2f} | "
                     f"{pairs / r['net']:.1f} | {base / r['net']:.2f}x | {diffs.get(r['nproc'], 0.0):.1e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 images, 2 epochs, cifarnet, 1 repeat")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (one GPU per process)")
    parser.add_argument("--nproc", type=int, default=2, help="largest number of processes (default 2)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs: checkpoints = epochs + 1")
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.epochs, args.model, args.width, args.size, args.repeats = 64, 2, "cifarnet", 0.25, 32, 1
    nmax = args.nproc
    if args.device.startswith("cuda"):
        import torch

        nmax = min(nmax, torch.cuda.device_count())
        if nmax < 1:
            raise SystemExit("--device cuda: no GPU is visible")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        work = Path(tmp)
        run = make_run(work / "run", args.images, args.model, args.width, args.size, args.epochs)
        rows = [measure(run, work, n, args.device, cores, args.repeats) for n in range(1, nmax + 1)]
        diffs = {n: max_difference(run, work / "nproc1", work / f"nproc{n}") for n in range(2, nmax + 1)}
    pairs = args.images * (args.epochs + 1)
    print(f"analysis of {args.epochs + 1} checkpoints x {args.images} images ({args.model} x{args.width}, "
          f"{args.size} px, grad_cam + sgdrop, every metric, coverage) on {args.device}, {cores} cores\n")
    print(table(rows, pairs, diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
