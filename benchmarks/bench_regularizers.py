"""Time per training step of every regularizer against the plain step, and SGDrop's peak memory.

For each model (VGG11 and ResNet18, width 0.25, 64 px, small_input) every method trains its own
copy of the same initial weights on the same batch; the steps of all methods are interleaved round
by round (so a load change on a shared machine hits them alike) and the median of N timed steps
after warm-up is reported with its ratio to the plain (`none`) step. A step is what the engine does:
regularizer loss, zero_grad, backward, Adam step, after_step. Peak memory of an SGDrop step vs a
plain one is measured in fresh subprocesses (max RSS from getrusage; on CUDA also the peak of
allocated GPU memory), since a process's max RSS never goes down.

Usage: python benchmarks/bench_regularizers.py [--quick] [--device cpu|cuda] [--batch 32] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from overfocus.config import RegularizerConfig  # noqa: E402
from overfocus.data import Batch  # noqa: E402
from overfocus.models import build_model, latent_layer_name  # noqa: E402
from overfocus.regularizers import RegContext, StepInfo, build_regularizer  # noqa: E402

MODELS = ("vgg11", "resnet18")
WIDTH, SIZE, CLASSES = 0.25, 64, 10
METHODS: List[Tuple[str, str, Dict]] = [
    ("none", "none", {}),
    ("dropout", "dropout", {}),
    ("sgdrop (EMA)", "sgdrop", {"ema": True}),
    ("sgdrop (no EMA)", "sgdrop", {"ema": False}),
    ("excitation_dropout", "excitation_dropout", {}),
    ("catchup_mix", "catchup_mix", {}),
    ("guidance (energy, Grad-CAM)", "guidance", {}),
    ("saliency_guided", "saliency_guided", {}),
]


def make_batch(batch_size: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, SIZE, SIZE, generator=g)
    labels = torch.randint(CLASSES, (batch_size,), generator=g)
    boxes = [torch.tensor([[8.0, 8.0, 40.0, 48.0]]) for _ in range(batch_size)]
    return Batch(images, labels, boxes, [f"img_{i}" for i in range(batch_size)]).to(device)


def make_runner(model_name: str, reg_name: str, params: Dict, device: torch.device, steps_per_epoch: int = 100):
    """A fresh model (same initial weights for every method), Adam, and the set-up regularizer."""
    torch.manual_seed(0)
    model = build_model(model_name, CLASSES, WIDTH, True).to(device)
    ctx = RegContext(model_name, latent_layer_name(model_name), CLASSES, steps_per_epoch, 20, device, True, SIZE)
    reg = build_regularizer(RegularizerConfig(reg_name, dict(params)), ctx)
    reg.setup(model)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4), reg


def timed_step(runner, batch: Batch, step: int, device: torch.device) -> float:
    model, opt, reg = runner
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss, _ = reg.loss(model, batch, StepInfo(step, 1, step))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    reg.after_step(model)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_methods(model_name: str, batch: Batch, warmup: int, reps: int, device: torch.device) -> Dict[str, float]:
    """Median seconds per step of every method, steps interleaved round by round."""
    runners = {label: make_runner(model_name, name, params, device) for label, name, params in METHODS}
    times: Dict[str, List[float]] = {label: [] for label in runners}
    for step in range(warmup + reps):
        for label, runner in runners.items():
            seconds = timed_step(runner, batch, step, device)
            if step >= warmup:
                times[label].append(seconds)
    return {label: statistics.median(ts) for label, ts in times.items()}


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak_rss() -> float:
    """Reset the peak-RSS mark to the current RSS (Linux clear_refs "5"); returns the current RSS.

    Without it the peak would still hold the import of torch, which dwarfs a small model's step.
    Where it is not possible (not Linux) the process-lifetime max RSS of getrusage is used.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mib("VmRSS")
    except OSError:
        return 0.0


def read_peak_rss() -> float:
    try:
        return _status_mib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(model_name: str, label: str, batch_size: int, device_name: str, threads: int) -> None:
    """Subprocess body: a few steps of one method, then print its peak memory as JSON."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    _, name, params = next(m for m in METHODS if m[0] == label)
    runner = make_runner(model_name, name, params, device)
    batch = make_batch(batch_size, device)
    timed_step(runner, batch, 0, device)  # first step: lazy allocations (optimizer state, kernels)
    base = reset_peak_rss()
    for step in range(1, 4):
        timed_step(runner, batch, step, device)
    peak = {"rss_mib": read_peak_rss(), "base_mib": base}
    if device.type == "cuda":
        peak["gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    print(json.dumps(peak))


def measure_memory(model_name: str, label: str, args) -> Dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", model_name, label, "--batch", str(args.batch),
           "--device", args.device, "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_timing_table(results: Dict[str, Dict[str, float]]) -> None:
    print("| model | method | median ms / step | ratio to plain |")
    print("|---|---|---:|---:|")
    for model_name, medians in results.items():
        plain = medians["none"]
        for label, seconds in medians.items():
            print(f"| {model_name} | {label} | {seconds * 1e3:.1f} | {seconds / plain:.2f}x |")


def print_memory_table(memory: Dict[Tuple[str, str], Dict[str, float]]) -> None:
    """RSS before the timed steps (model, EMA copy, libraries), its peak during them, and the growth."""
    gpu = any("gpu_mib" in m for m in memory.values())
    print("\n| model | method | RSS before steps MiB | peak RSS in steps MiB | peak vs plain | growth in steps MiB |"
          + (" peak GPU MiB | GPU vs plain |" if gpu else ""))
    print("|---|---|---:|---:|---:|---:|" + ("---:|---:|" if gpu else ""))
    for (model_name, label), m in memory.items():
        base = memory[(model_name, "none")]
        row = (f"| {model_name} | {label} | {m['base_mib']:.0f} | {m['rss_mib']:.0f} | "
               f"{m['rss_mib'] / base['rss_mib']:.2f}x | {m['rss_mib'] - m['base_mib']:.1f} |")
        if gpu:
            row += f" {m['gpu_mib']:.0f} | {m['gpu_mib'] / base['gpu_mib']:.2f}x |"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and a smaller batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default 32, 16 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--memory-child", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (16 if args.quick else 32)
    if args.memory_child:
        memory_child(*args.memory_child, args.batch, args.device, args.threads)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup, reps = (3, 10) if args.quick else (5, 30)
    print(f"device={device} threads={args.threads} batch={args.batch} width={WIDTH} size={SIZE} "
          f"warmup={warmup} timed={reps} torch={torch.__version__}\n")
    batch = make_batch(args.batch, device)
    results = {m: time_methods(m, batch, warmup, reps, device) for m in MODELS}
    print_timing_table(results)
    memory = {(m, label): measure_memory(m, label, args) for m in MODELS
              for label in ("none", "sgdrop (EMA)", "sgdrop (no EMA)")}
    print_memory_table(memory)


if __name__ == "__main__":
    main()
