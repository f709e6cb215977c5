"""Benchmark of `overfocus analyze` against its peers (ratios, not absolute times).

Rows of the Markdown table it prints:
  (a) one checkpoint's whole analysis (load, Grad-CAM + SGDrop from one forward/backward, every
      box metric, neuron coverage, probe maps, files written) vs ONE bare Captum LayerGradCam
      pass over the same images (goal: <= 1.25x);
  (b) pytorch-grad-cam's GradCAM producing only Grad-CAM maps vs our attribute() producing
      Grad-CAM and SGDrop maps (goal: ours >= 1.5x faster);
  (c) Quantus PointingGame + AttributionLocalisation vs our pointing_game + energy_pg on the same
      maps and boxes (goal: ours >= 10x faster); our full box-metric set is reported too;
  (d) peak resident memory of analysing 50 checkpoints vs 5, each in a fresh subprocess
      (goal: <= 1.1x; the growth above the post-import baseline is shown as well).

Usage:
    python benchmarks/bench_analysis.py            # 256 images, VGG11 x0.25 at 64 px (the demo model)
    python benchmarks/bench_analysis.py --quick    # 64 images, fewer repeats
    python benchmarks/bench_analysis.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def best_time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of `repeats` calls after one warm-up (CUDA synchronised)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def make_run(folder: Path, n_images: int, model: str, width: float, size: int, epochs: int) -> Path:
    """A small trained run on the builtin data (timings do not depend on accuracy, maps do a little)."""
    from overfocus.config import build_config
    from overfocus.train import train

    cfg = build_config(overrides=[f"data.spec=builtin?classes=6&train={max(n_images, 64)}&test={n_images}",
                                  f"data.image_size={size}", "data.batch_size=64", f"model.name={model}",
                                  f"model.width={width}", f"train.epochs={epochs}", "train.progress=false"])
    return train(cfg, folder, force=True)


class Fixture:
    """The analysed images (normalised, on the device), their labels and boxes, and the model."""

    def __init__(self, run: Path, epoch: int, device: torch.device, batch_size: int):
        from overfocus.analyze import BatchSource, RunInfo
        from overfocus.data import normalize, open_dataset
        from overfocus.rundir import RunDir, load_checkpoint
        from overfocus.models import build_model

        self.info = info = RunInfo.from_manifest(RunDir(run).read_manifest())
        ds = open_dataset(info.data_spec, "test", info.image_size)
        self.batches = []
        for batch, _ in BatchSource(ds, batch_size):
            x = normalize(batch.images, info.mean, info.std).to(device)
            self.batches.append((x, batch.labels.to(device), batch.boxes))
        self.model = build_model(info.model_name, info.num_classes, info.width, info.small_input)
        self.model.load_state_dict(load_checkpoint(RunDir(run).checkpoint_path(epoch))["model"])
        self.model.to(device).eval()
        self.layer = info.gradcam_layer


def time_ours_whole(run: Path, epoch: int, device: torch.device, batch_size: int, repeats: int) -> float:
    """Marginal cost of one more checkpoint in `analyze` (images already decoded, as for the 2nd on)."""
    from overfocus.analyze import RunInfo, _Job, _prepare_folder
    from overfocus.rundir import RunDir

    run_dir = RunDir(run)
    job = _Job(run_dir, RunInfo.from_manifest(run_dir.read_manifest()), device, False)
    job.open_data(job.info.data_spec, "test", 0, batch_size, None)
    settings = job.resolve(("grad_cam", "sgdrop"), None, "gt", None, None)
    folder = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    _prepare_folder(folder, settings, job.data.classes, force=True)
    job._write_probe_images(folder, settings, rewrite=True)
    try:
        return best_time(lambda: job._one_epoch(folder, settings, epoch), repeats, device)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def time_captum(fx: Fixture, repeats: int, device: torch.device) -> float:
    from captum.attr import LayerGradCam
    from overfocus.models import get_module

    lgc = LayerGradCam(fx.model, get_module(fx.model, fx.layer))
    return best_time(lambda: [lgc.attribute(x, target=y) for x, y, _ in fx.batches], repeats, device)


def time_ours_attribute(fx: Fixture, repeats: int, device: torch.device) -> float:
    from overfocus.attribution import attribute

    run = lambda: [attribute(fx.model, x, y, ("grad_cam", "sgdrop"), layer=fx.layer) for x, y, _ in fx.batches]
    return best_time(run, repeats, device)


def time_pytorch_grad_cam(fx: Fixture, repeats: int, device: torch.device) -> float:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from overfocus.models import get_module

    def run():
        with GradCAM(model=fx.model, target_layers=[get_module(fx.model, fx.layer)]) as cam:
            for x, y, _ in fx.batches:
                cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])
    return best_time(run, repeats, device)


def metric_inputs(fx: Fixture) -> List[tuple]:
    """Per batch: raw Grad-CAM maps, labels, boxes (ours) and the same as Quantus arrays."""
    from overfocus.attribution import attribute
    from overfocus.metrics import boxes_to_masks

    out = []
    for x, y, boxes in fx.batches:
        maps = attribute(fx.model, x, y, ("grad_cam",), layer=fx.layer)["grad_cam"].cpu()
        masks = boxes_to_masks(boxes, maps.shape[1], maps.shape[2]).numpy()[:, None].astype(float)
        out.append((maps, y.cpu(), boxes, x.cpu().numpy(), y.cpu().numpy(), maps.numpy()[:, None], masks))
    return out


def time_quantus(fx: Fixture, inputs: List[tuple], repeats: int, device: torch.device) -> float:
    import quantus

    model = fx.model.cpu()  # Quantus works on numpy arrays on the CPU
    pg = quantus.PointingGame(disable_warnings=True)
    al = quantus.AttributionLocalisation(disable_warnings=True)

    def run():
        for *_, xq, yq, aq, sq in inputs:
            for metric in (pg, al):
                metric(model=model, x_batch=xq, y_batch=yq, a_batch=aq, s_batch=sq, channel_first=True,
                       device="cpu", batch_size=len(xq))
    try:
        return best_time(run, repeats, torch.device("cpu"))
    finally:
        fx.model.to(device)


def time_our_metrics(inputs: List[tuple], names: List[str], repeats: int) -> float:
    from overfocus.metrics import compute_map_metrics

    run = lambda: [compute_map_metrics(m, names, boxes=b, labels=y) for m, y, b, *_ in inputs]
    return best_time(run, repeats, torch.device("cpu"))


MEMORY_CHILD = """
import json, sys, torch
torch.set_num_threads(1)
from overfocus.analyze import analyze
import overfocus.attribution, overfocus.metrics
def status_mb(key):  # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) / 1024
base = status_mb('VmRSS')
res = analyze(sys.argv[1], device='cpu', show_progress=False, methods=('grad_cam', 'sgdrop'))
peak = status_mb('VmHWM')
print(json.dumps({'base_mb': base, 'peak_mb': peak, 'computed': len(res.computed)}))
"""


def memory_run(base_run: Path, n_checkpoints: int, workdir: Path) -> Dict[str, float]:
    """Peak RSS of a fresh process analysing a copy of `base_run` with `n_checkpoints` checkpoints."""
    from overfocus.rundir import RunDir

    run = workdir / f"run{n_checkpoints}"
    shutil.copytree(base_run, run, ignore=shutil.ignore_patterns("analysis"))
    src = RunDir(run).checkpoint_path(1)
    for e in range(2, n_checkpoints):  # more checkpoints of the same size: what matters is their number
        shutil.copy(src, RunDir(run).checkpoint_path(e))
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(run)], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_row(name: str, ours: float, peer: float, ratio: float, goal: str, met: bool) -> str:
    return f"| {name} | {ours:.3f} | {peer:.3f} | {ratio:.2f} | {goal} | {'yes' if met else 'no'} |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 images, 2 repeats, 32 px model for the memory run")
    p.add_argument("--images", type=int, help="images analysed (default 256, quick 64)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.images or (64 if args.quick else 256)
    repeats = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    try:
        rows = bench_speed(work, n, device, repeats)
        if not args.skip_memory:
            rows.append(bench_memory(work, 16 if args.quick else 32))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{n} images, vgg11 x0.25 at 64 px, batch 64, device {device}, {args.threads} thread(s), "
          f"torch {torch.__version__}\n")
    print("| comparison | ours | peer | ratio | goal | met |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


def bench_speed(work: Path, n: int, device: torch.device, repeats: int) -> List[str]:
    run = make_run(work / "speed", n, "vgg11", 0.25, 64, epochs=1)
    fx = Fixture(run, 1, device, 64)
    whole = time_ours_whole(run, 1, device, 64, repeats)
    captum = time_captum(fx, repeats, device)
    ours_attr = time_ours_attribute(fx, repeats, device)
    pgc = time_pytorch_grad_cam(fx, repeats, device)
    inputs = metric_inputs(fx)
    quantus_t = time_quantus(fx, inputs, repeats, device)
    ours_pg = time_our_metrics(inputs, ["pointing_game", "energy_pg"], repeats)
    ours_box = time_our_metrics(inputs, ["area_ratio", "box_iou", "hit", "pointing_game", "energy_pg"], repeats)
    return [
        fmt_row("(a) whole analysis of 1 checkpoint vs bare Captum LayerGradCam (s)", whole, captum,
                whole / captum, "<= 1.25", whole / captum <= 1.25),
        fmt_row("(b) attribute() grad_cam+sgdrop vs pytorch-grad-cam GradCAM (s; ratio = peer/ours)", ours_attr,
                pgc, pgc / ours_attr, ">= 1.5", pgc / ours_attr >= 1.5),
        fmt_row("(c) pointing_game+energy_pg vs Quantus PointingGame+AttributionLocalisation (s; peer/ours)",
                ours_pg, quantus_t, quantus_t / ours_pg, ">= 10", quantus_t / ours_pg >= 10),
        fmt_row("(c') all 5 box metrics vs the same 2 Quantus metrics (s; peer/ours)", ours_box, quantus_t,
                quantus_t / ours_box, "(info)", True),
    ]


def bench_memory(work: Path, n: int) -> str:
    base = make_run(work / "memory", n, "cifarnet", 0.125, 32, epochs=1)
    small = memory_run(base, 5, work)
    large = memory_run(base, 50, work)
    assert small["computed"] == 5 and large["computed"] == 50
    ratio = large["peak_mb"] / small["peak_mb"]
    growth = f"growth above baseline {small['peak_mb'] - small['base_mb']:.0f} -> " \
             f"{large['peak_mb'] - large['base_mb']:.0f} MB"
    return (f"| (d) peak RSS, 50 vs 5 checkpoints (MB; {growth}) | {large['peak_mb']:.0f} | "
            f"{small['peak_mb']:.0f} | {ratio:.2f} | <= 1.1 | {'yes' if ratio <= 1.1 else 'no'} |")


if __name__ == "__main__":
    sys.exit(main())
