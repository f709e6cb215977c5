"""Benchmark of `overfocus analyze` against its peers (ratios, not absolute times).

Rows of the Markdown table it prints:
  (a) the marginal cost of one more checkpoint in `overfocus.analyze()` (public API: load the
      checkpoint, Grad-CAM + SGDrop from one forward/backward, all map metrics (area_ratio,
      box_iou, hit, pointing_game, energy_pg, gini, entropy) for both methods, neuron coverage,
      probe maps, the epoch's files and the rebuilt summary with its bootstrap intervals; not the
      faithfulness pass, `faithfulness_images=0`: bench_faithfulness.py row (g) rates that one),
      measured as (T(3 checkpoints) - T(1 checkpoint)) / 2, vs ONE bare Captum LayerGradCam call
      per batch over the same images, same layer, same device (goal: <= 1.25x). The images are
      decoded once by analyze() either way (it caches them across checkpoints), so both sides
      start from decoded images;
  (a') the same vs ONE Captum LayerGradCam call with the parameters frozen (requires_grad off,
      as analyze() runs its evaluation): no autograd graph before the layer, one forward and one
      backward to the layer, which is the real floor (goal: <= 1.20x);
  (b) pytorch-grad-cam's GradCAM producing only Grad-CAM maps vs our attribute() producing
      Grad-CAM and SGDrop maps (goal: ours >= 1.5x faster);
  (c) Quantus PointingGame + AttributionLocalisation (given precomputed box masks) vs our
      pointing_game + energy_pg through compute_map_metrics (which builds the masks from the
      boxes itself) on the same maps (goal: ours >= 10x faster); the share of the full metric set
      in the attribution time is shown as information;
  (d) peak resident memory of analysing 50 checkpoints vs 5, each in a fresh subprocess
      (goal: <= 1.1x; the growth above the post-import baseline is shown as well).

`--parts` prints, instead, where the marginal checkpoint's time goes: the functions of each part
(loading, forward+backward, coverage hooks, metrics, records, drift, writes, summary) are timed
in place during the same analyze() calls as row (a) (process CPU time, (3 checkpoints - 1) / 2,
median of the rounds), beside the frozen Captum floor. Both calls leave epochs 1-3 analysed, so
both rebuild the summary of all three and its cost cancels out of the marginal (as in row (a)).

How it times: every contender is warmed up once, then the contenders of a row run in turn,
`--repeats` rounds (the order rotates each round so that a burst of load on a shared machine hits
all of them alike); each time is the MEDIAN over rounds. Both wall time and process CPU time are
reported: with one torch thread (the default) CPU time is what the work costs, unaffected by
other processes waiting for the same cores; on a quiet machine the two agree. On CUDA only wall
time is meaningful (synchronised before and after each call).

Usage:
    python benchmarks/bench_analysis.py            # 256 images, VGG11 x0.25 at 64 px (the demo model)
    python benchmarks/bench_analysis.py --quick    # 64 images, fewer rounds
    python benchmarks/bench_analysis.py --device cuda
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402



def all_map_metrics() -> List[str]:
    """Every registered map metric the builtin data supports (not those needing human maps, nor the
    model-dependent ones, which compute_map_metrics leaves to compute_model_metrics)."""
    from overfocus.metrics import METRICS

    return [n for n in METRICS.registered() if not METRICS.get(n).needs_human and not METRICS.get(n).needs_model]


@dataclass
class Timing:
    """Median wall and process-CPU seconds of one contender."""

    wall: float
    cpu: float


def _timed(fn: Callable[[], object], device: torch.device) -> tuple:
    if device.type == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def interleaved(contenders: Dict[str, Callable[[], object]], repeats: int, device: torch.device) -> Dict[str, Timing]:
    """Median times of each contender, run in rotating turns after one warm-up call each."""
    names = list(contenders)
    for name in names:
        contenders[name]()
    walls: Dict[str, List[float]] = {n: [] for n in names}
    cpus: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = _timed(contenders[name], device)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {n: Timing(statistics.median(walls[n]), statistics.median(cpus[n])) for n in names}


def make_run(folder: Path, n_images: int, model: str, width: float, size: int, epochs: int) -> Path:
    """A small trained run on the builtin data (timings do not depend on accuracy, maps do a little)."""
    from overfocus.config import build_config
    from overfocus.training.engine import train

    cfg = build_config(overrides=[f"data.spec=builtin?classes=6&train={max(n_images, 64)}&test={n_images}",
                                  f"data.image_size={size}", "data.batch_size=64", f"model.name={model}",
                                  f"model.width={width}", f"train.epochs={epochs}", "train.progress=false"])
    return train(cfg, folder, force=True)


def copy_checkpoints(run: Path, last: int) -> None:
    """Epochs 2..last as copies of epoch 1: the cost of a checkpoint does not depend on its weights."""
    from overfocus.runs.rundir import RunDir

    src = RunDir(run).checkpoint_path(1)
    for e in range(2, last + 1):
        shutil.copy(src, RunDir(run).checkpoint_path(e))


class Fixture:
    """The analysed images (normalised, on the device), their labels and boxes, and the model."""

    def __init__(self, run: Path, epoch: int, device: torch.device, batch_size: int):
        from overfocus.analysis import RunInfo
        from overfocus.data import collate_samples, normalize, open_dataset
        from overfocus.models import build_model
        from overfocus.runs.rundir import RunDir
        from overfocus.checkpoint.files import load_checkpoint

        self.info = info = RunInfo.from_manifest(RunDir(run).read_manifest())
        ds = open_dataset(info.data_spec, "test", info.image_size)
        self.batches = []
        for start in range(0, len(ds), batch_size):
            batch = collate_samples([ds[i] for i in range(start, min(len(ds), start + batch_size))])
            x = normalize(batch.images, info.mean, info.std).to(device)
            self.batches.append((x, batch.labels.to(device), batch.boxes))
        self.model = build_model(info.model_name, info.num_classes, info.width, info.small_input)
        self.model.load_state_dict(load_checkpoint(RunDir(run).checkpoint_path(epoch))["model"])
        self.model.to(device).eval()
        self.layer = info.gradcam_layer


def captum_fn(fx: Fixture, frozen: bool = False) -> Callable[[], object]:
    """LayerGradCam over all batches; `frozen`: with requires_grad off on the parameters during the
    call (as attribute() does), so no autograd graph is recorded before the layer."""
    from captum.attr import LayerGradCam
    from overfocus.models import get_module

    lgc = LayerGradCam(fx.model, get_module(fx.model, fx.layer))
    params = list(fx.model.parameters())

    def run():
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(not frozen and p.requires_grad)
        try:
            return [lgc.attribute(x, target=y) for x, y, _ in fx.batches]
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
    return run


def analyze_fn(run: Path, epochs: str, device: torch.device) -> Callable[[], object]:
    """analyze() as rows (a) and (a') time it: both maps, every map metric, coverage, the files;
    without the model-dependent metrics (faithfulness, sanity), which bench_faithfulness.py rates."""
    from overfocus.analysis import analyze

    return lambda: analyze(run, epochs=epochs, methods=("grad_cam", "sgdrop"), device=str(device), force=True,
                           show_progress=False, faithfulness_images=0)


# (part, module, attribute) of the functions timed in place by --parts; a coverage hook runs inside
# the forward, so the forward+backward part is reported net of the coverage hooks
PARTS = [("loading", "overfocus.analysis.evaluator", "EpochEvaluator.load"),
         ("forward+backward", "overfocus.analysis.core", "attribute"),
         ("coverage hooks", "overfocus.metrics.coverage", "NeuronCoverage._layer_hook"),
         ("coverage hooks", "overfocus.metrics.coverage", "NeuronCoverage._mark_latent"),
         ("coverage hooks", "overfocus.metrics.coverage", "NeuronCoverage._finish_forward"),
         ("coverage hooks", "overfocus.analysis.evaluator", "coverage_image_rows"),
         ("metrics", "overfocus.analysis.core", "MapBatch"),
         ("metrics", "overfocus.analysis.core", "compute_map_metrics"),
         ("records", "overfocus.analysis.evaluator", "batch_rows"),
         ("records", "overfocus.analysis.evaluator", "EpochEvaluator._keep_probe"),
         ("records", "overfocus.analysis.evaluator", "EpochEvaluator.probe_arrays"),
         ("drift (small maps, trajectory)", "overfocus.analysis.evaluator", "EpochEvaluator._keep_small"),
         ("drift (small maps, trajectory)", "overfocus.analysis.runner", "update_trajectory"),
         ("writes", "overfocus.analysis.runner", "Runner._write_epoch"),
         ("writes", "overfocus.analysis.runner", "update_state"),
         ("summary", "overfocus.analysis.runner", "rebuild_summary"),
         ("summary", "overfocus.analysis.runner", "update_onset")]


class PartClock:
    """Wraps the PARTS functions in place, adding each call's process CPU time to its part."""

    def __init__(self):
        self.spent: Dict[str, float] = {}
        self._restore: List[tuple] = []

    def _timed(self, part: str, fn: Callable, hook_factory: bool) -> Callable:
        def add(t0: float) -> None:
            self.spent[part] = self.spent.get(part, 0.0) + time.process_time() - t0

        def timed(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                add(t0)

        def factory(*args, **kwargs):  # _layer_hook returns the hook: time the hook's calls
            return self._timed(part, fn(*args, **kwargs), False)
        return factory if hook_factory else timed

    def __enter__(self) -> "PartClock":
        import importlib

        for part, module, attr in PARTS:
            owner = importlib.import_module(module)
            *outer, name = attr.split(".")
            for step in outer:
                owner = getattr(owner, step)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            self._restore.append((owner, name, original))
            setattr(owner, name, self._timed(part, original, name == "_layer_hook"))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore = []

    def take(self) -> Dict[str, float]:
        """The time per part since the last take, forward+backward net of the coverage hooks."""
        spent, self.spent = self.spent, {}
        spent["forward+backward"] = spent.get("forward+backward", 0.0) - spent.get("coverage hooks", 0.0)
        return spent


def bench_parts(work: Path, n: int, device: torch.device, repeats: int) -> List[str]:
    """Rows: CPU seconds per part of one more checkpoint, its share, and the frozen Captum floor."""
    run = make_run(work / "parts", n, "vgg11", 0.25, 64, epochs=1)
    copy_checkpoints(run, 3)
    fx = Fixture(run, 1, device, 64)
    floor = captum_fn(fx, frozen=True)
    one, three = analyze_fn(run, "1", device), analyze_fn(run, "1:3", device)
    floors, totals, parts = [], [], []
    with PartClock() as clock:
        for r in range(repeats + 1):  # the first round is the warm-up
            t0 = time.process_time()
            floor()
            t1 = time.process_time()
            clock.take()
            one()
            t2, p1 = time.process_time(), clock.take()
            three()
            t3, p3 = time.process_time(), clock.take()
            if r:
                floors.append(t1 - t0)
                totals.append(((t3 - t2) - (t2 - t1)) / 2)
                parts.append({k: (p3.get(k, 0.0) - p1.get(k, 0.0)) / 2 for k in set(p1) | set(p3)})
    total, base = statistics.median(totals), statistics.median(floors)
    names = list(dict.fromkeys(p for p, *_ in PARTS))
    per_part = {k: statistics.median(p.get(k, 0.0) for p in parts) for k in names}
    per_part["other (plan, loop, files not named)"] = total - sum(per_part.values())
    rows = [f"| {k} | {v:.3f} | {100 * v / total:.0f}% | {v / base:.2f} |" for k, v in per_part.items()]
    rows.append(f"| one more checkpoint in analyze() | {total:.3f} | 100% | {total / base:.2f} |")
    rows.append(f"| Captum LayerGradCam, parameters frozen (the floor) | {base:.3f} | - | 1.00 |")
    return rows


def attribute_fn(fx: Fixture) -> Callable[[], object]:
    from overfocus.attribution import attribute

    return lambda: [attribute(fx.model, x, y, ("grad_cam", "sgdrop"), layer=fx.layer) for x, y, _ in fx.batches]


def pytorch_grad_cam_fn(fx: Fixture) -> Callable[[], object]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from overfocus.models import get_module

    def run():
        with GradCAM(model=fx.model, target_layers=[get_module(fx.model, fx.layer)]) as cam:
            for x, y, _ in fx.batches:
                cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])
    return run


def metric_inputs(fx: Fixture) -> List[tuple]:
    """Per batch: raw Grad-CAM and SGDrop maps (CPU), labels, boxes, and Quantus's numpy arrays."""
    from overfocus.attribution import attribute
    from overfocus.metrics import boxes_to_masks

    out = []
    for x, y, boxes in fx.batches:
        maps = {k: v.cpu() for k, v in attribute(fx.model, x, y, ("grad_cam", "sgdrop"), layer=fx.layer).items()}
        gc = maps["grad_cam"]
        masks = boxes_to_masks(boxes, gc.shape[1], gc.shape[2]).numpy()[:, None].astype(float)
        out.append((maps, y.cpu(), boxes, x.cpu().numpy(), y.cpu().numpy(), gc.numpy()[:, None], masks))
    return out


def quantus_fn(fx: Fixture, inputs: List[tuple]) -> Callable[[], object]:
    import quantus

    model = fx.model  # unused by these two metrics given a_batch; Quantus wants one anyway
    pg = quantus.PointingGame(disable_warnings=True)
    al = quantus.AttributionLocalisation(disable_warnings=True)

    def run():
        for *_, xq, yq, aq, sq in inputs:
            for metric in (pg, al):
                metric(model=model, x_batch=xq, y_batch=yq, a_batch=aq, s_batch=sq, channel_first=True,
                       device="cpu", batch_size=len(xq))
    return run


def our_metrics_fn(inputs: List[tuple], names: List[str], methods=("grad_cam",)) -> Callable[[], object]:
    from overfocus.metrics import compute_map_metrics

    return lambda: [compute_map_metrics(maps[m], names, boxes=b, labels=y) for maps, y, b, *_ in inputs
                    for m in methods]


MEMORY_CHILD = """
import json, sys, torch
torch.set_num_threads(1)
from overfocus.analysis import analyze
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
    run = workdir / f"run{n_checkpoints}"
    shutil.copytree(base_run, run, ignore=shutil.ignore_patterns("analysis"))
    copy_checkpoints(run, n_checkpoints - 1)  # epochs 0 .. n-1
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(run)], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt_row(name: str, ours: Timing, peer: Timing, goal: str, check: Callable[[float], bool],
            peer_over_ours: bool, cpu: bool) -> str:
    """One table row; ratio = ours/peer (or peer/ours), by wall time and by CPU time."""
    def ratio(a: float, b: float) -> float:
        return (b / a) if peer_over_ours else (a / b)
    rw = ratio(ours.wall, peer.wall)
    rc = ratio(ours.cpu, peer.cpu) if cpu else float("nan")
    met = f"{'yes' if check(rw) else 'no'} / {('yes' if check(rc) else 'no') if cpu else '-'}"
    met = "-" if goal == "(info)" else met
    cpu_cells = f"{ours.cpu:.3f} | {peer.cpu:.3f} | {rc:.2f}" if cpu else "- | - | -"
    return f"| {name} | {ours.wall:.3f} | {peer.wall:.3f} | {rw:.2f} | {cpu_cells} | {goal} | {met} |"


def bench_speed(work: Path, n: int, device: torch.device, repeats: int) -> List[str]:
    cpu = device.type == "cpu"
    run = make_run(work / "speed", n, "vgg11", 0.25, 64, epochs=1)
    copy_checkpoints(run, 3)
    fx = Fixture(run, 1, device, 64)
    t = interleaved({"captum": captum_fn(fx), "frozen": captum_fn(fx, frozen=True),
                     "one": analyze_fn(run, "1", device), "three": analyze_fn(run, "1:3", device)}, repeats, device)
    whole = Timing((t["three"].wall - t["one"].wall) / 2, (t["three"].cpu - t["one"].cpu) / 2)
    b = interleaved({"ours": attribute_fn(fx), "pgc": pytorch_grad_cam_fn(fx)}, repeats, device)
    inputs = metric_inputs(fx)
    c = interleaved({"quantus": quantus_fn(fx, inputs), "ours": our_metrics_fn(inputs, ["pointing_game", "energy_pg"]),
                     "all": our_metrics_fn(inputs, all_map_metrics(), ("grad_cam", "sgdrop"))},
                    max(repeats, 5), torch.device("cpu"))
    return [
        fmt_row("(a) 1 more checkpoint in analyze() vs bare Captum LayerGradCam (s; ours/peer)", whole,
                t["captum"], "<= 1.25", lambda r: r <= 1.25, False, cpu),
        fmt_row("(a') the same vs Captum LayerGradCam with the parameters frozen (s; ours/peer)", whole,
                t["frozen"], "<= 1.20", lambda r: r <= 1.20, False, cpu),
        fmt_row("(b) attribute() grad_cam+sgdrop vs pytorch-grad-cam GradCAM (s; peer/ours)", b["ours"], b["pgc"],
                ">= 1.5", lambda r: r >= 1.5, True, cpu),
        fmt_row("(c) pointing_game+energy_pg vs Quantus PointingGame+AttributionLocalisation (s; peer/ours)",
                c["ours"], c["quantus"], ">= 10", lambda r: r >= 10, True, True),
        fmt_row(f"(info) all {len(all_map_metrics())} map metrics x 2 methods vs bare Captum LayerGradCam "
                "(s; ours/peer)", c["all"],
                t["captum"], "(info)", lambda r: True, False, cpu),
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
            f"{small['peak_mb']:.0f} | {ratio:.2f} | - | - | - | <= 1.1 | {'yes' if ratio <= 1.1 else 'no'} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="64 images, 3 rounds, 32 px model for the memory run")
    p.add_argument("--images", type=int, help="images analysed (default 256, quick 64)")
    p.add_argument("--repeats", type=int, help="timed rounds per row (default 7, quick 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time = cost)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--parts", action="store_true", help="where one more checkpoint's time goes, per part")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.images or (64 if args.quick else 256)
    repeats = args.repeats or (3 if args.quick else 7)
    work = Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    if args.parts:
        try:
            rows = bench_parts(work, n, device, repeats)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"\n{n} images, vgg11 x0.25 at 64 px, batch 64, device {device}, {args.threads} thread(s), "
              f"process CPU time, median of {repeats} rounds after a warm-up, torch {torch.__version__}\n")
        print("| part of one more checkpoint | CPU s | share | x floor |\n|---|---|---|---|")
        print("\n".join(rows))
        return 0
    try:
        rows = bench_speed(work, n, device, repeats)
        if not args.skip_memory:
            rows.append(bench_memory(work, 16 if args.quick else 32))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{n} images, vgg11 x0.25 at 64 px, batch 64, device {device}, {args.threads} thread(s), "
          f"median of {repeats} interleaved rounds after a warm-up, torch {torch.__version__}\n")
    print("| comparison | ours wall | peer wall | ratio wall | ours CPU | peer CPU | ratio CPU | goal "
          "| met (wall / CPU) |\n|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
