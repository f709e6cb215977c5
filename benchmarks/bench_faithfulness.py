"""Benchmark of the faithfulness pass (ratios, not absolute times).

Rows of the Markdown table it prints:
  (f) deletion + insertion with K steps (default 16) on N images (MapPerturbation: the perturbed
      copies built on the device, chunks of `forward_batch` copies per forward) vs the floor: 2K
      plain batched no-grad forwards of those N images (every perturbed copy needs one forward;
      the 2K images are prebuilt, nothing else is done) (goal: <= 1.3x);
  (g) the default `overfocus analyze` of 2 checkpoints (faithfulness and sanity metrics on
      `--faithfulness-images` 256 evenly spaced images, the random baseline, drift) vs the same
      call with `faithfulness_images=0` (what analyze computed before them): information, no goal.
  (h) ROAD (5 percentages, MoRF + LeRF) vs deletion + insertion on the same images: information
      (ROAD is on request only because of this ratio).

Timing: a warm-up, then the contenders in turn for `--repeats` rounds (the order rotates), the
MEDIAN wall time and process CPU time; on CUDA wall time with a synchronise around each call.

Usage:
    python benchmarks/bench_faithfulness.py            # 256 images, VGG11 x0.25 at 64 px
    python benchmarks/bench_faithfulness.py --quick    # 64 images, fewer rounds
    python benchmarks/bench_faithfulness.py --device cuda
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def timed(fn: Callable[[], object], device: torch.device) -> tuple:
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def race(contenders: Dict[str, Callable[[], object]], repeats: int, device: torch.device) -> Dict[str, tuple]:
    names = list(contenders)
    for name in names:
        contenders[name]()  # warm-up
    times: Dict[str, List[tuple]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(contenders[name], device))
    return {n: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for n, v in times.items()}


def model_and_images(n: int, size: int, device: torch.device):
    from overfocus.data import collate_samples, open_dataset
    from overfocus.models import build_model

    model = build_model("vgg11", 6, width=0.25).to(device).eval()
    ds = open_dataset(f"builtin?classes=6&train=8&test={n}", "test", size)
    batch = collate_samples([ds[i] for i in range(n)])
    return model, batch.images.to(device), batch.labels.to(device)


def row_f(args, device) -> List[str]:
    from overfocus.attribution import attribute
    from overfocus.data import normalize
    from overfocus.metrics.faithfulness import FaithfulnessOptions, MapPerturbation, PerturbationBatch

    model, images, labels = model_and_images(args.images, args.size, device)
    mean, std = (0.5,) * 3, (0.25,) * 3
    for p in model.parameters():
        p.requires_grad_(False)
    maps = attribute(model, normalize(images, mean, std), labels, methods="grad_cam", layer="features")["grad_cam"]
    k, chunk = args.steps, args.forward_batch
    opts = FaithfulnessOptions(steps=k, forward_batch=chunk)

    def predict(x, t):
        return torch.softmax(model(normalize(x, mean, std)), 1).gather(1, t.view(-1, 1))[:, 0]

    def ours():
        batch = PerturbationBatch(predict, images, labels, opts, fill=torch.tensor(mean, device=device))
        p = MapPerturbation(batch, maps)
        return p.deletion(), p.insertion()

    copies = images.repeat_interleave(2 * k, 0)  # 2K forwards per image, prebuilt

    @torch.no_grad()
    def floor():
        for start in range(0, len(copies), chunk):
            model(normalize(copies[start:start + chunk], mean, std))

    def road():
        opts_r = FaithfulnessOptions(forward_batch=chunk)
        batch = PerturbationBatch(predict, images, labels, opts_r, fill=torch.tensor(mean, device=device))
        p = MapPerturbation(batch, maps)
        return p.road_morf(), p.road_lerf()

    t = race({"ours": ours, "floor": floor}, args.repeats, device)
    rows = [f"| (f) deletion + insertion K={k}, {args.images} images vs {2 * k} plain forwards each | "
            f"{t['ours'][0] / t['floor'][0]:.2f} wall / {t['ours'][1] / max(t['floor'][1], 1e-9):.2f} CPU | <= 1.3 |"]
    if not args.skip_road:
        r = race({"road": road, "ours": ours}, max(1, args.repeats // 2), device)
        rows.append(f"| (h) ROAD (5 percentages x MoRF/LeRF) vs deletion + insertion K={k} | "
                    f"{r['road'][0] / r['ours'][0]:.2f} wall / {r['road'][1] / max(r['ours'][1], 1e-9):.2f} CPU | "
                    "information |")
    return rows


def row_g(args, device) -> List[str]:
    from overfocus.analysis import analyze
    from overfocus.config import build_config
    from overfocus.training.engine import train

    work = Path(tempfile.mkdtemp(prefix="bench-faith-"))
    try:
        cfg = build_config(overrides=[f"data.spec=builtin?classes=6&train=64&test={args.images}",
                                      f"data.image_size={args.size}", "data.batch_size=64", "model.name=vgg11",
                                      "model.width=0.25", "train.epochs=1", "train.progress=false",
                                      f"train.device={device.type}"])
        run = train(cfg, work / "run")

        def with_new():
            analyze(run, device=str(device), show_progress=False, force=True, out=work / "a")

        def without():
            analyze(run, device=str(device), show_progress=False, force=True, out=work / "b", faithfulness_images=0)

        t = race({"new": with_new, "old": without}, max(1, args.repeats // 2), device)
        return [f"| (g) default analyze, 2 checkpoints x {args.images} images: with the faithfulness pass "
                f"(256 images) vs faithfulness_images=0 | {t['new'][0] / t['old'][0]:.2f} wall / "
                f"{t['new'][1] / max(t['old'][1], 1e-9):.2f} CPU | information |"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--forward-batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-road", action="store_true")
    parser.add_argument("--skip-analysis", action="store_true")
    parser.add_argument("--skip-deletion", action="store_true", help="leave out rows (f) and (h): row (g) only")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 64, 3
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"VGG11 x0.25, {args.size} px, {args.images} images, device {device}, {torch.get_num_threads()} threads")
    print("| row | ratio | goal |\n|---|---|---|")
    for line in ([] if args.skip_deletion else row_f(args, device)):
        print(line, flush=True)
    if not args.skip_analysis:
        for line in row_g(args, device):
            print(line, flush=True)


if __name__ == "__main__":
    main()
