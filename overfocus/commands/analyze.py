"""`overfocus analyze RUN`: per-image attribution metrics of every checkpoint, incrementally."""
from __future__ import annotations

import argparse

from ..errors import OverfocusError
from .common import RAW
from .train import relaunch_with_torchrun, strip_nproc

EXAMPLES = """examples:
  overfocus analyze runs/demo                          # every checkpoint not analysed yet
  overfocus analyze runs/demo --epochs 0:50:5          # START:STOP:STEP, STOP included
  overfocus analyze runs/demo --epochs 3,5,7 --methods grad_cam --metrics area_ratio,hit
  overfocus analyze runs/tin --human osie:../shared/data/osie-150   # adds harmonization
  overfocus analyze runs/demo --target predicted --out runs/demo/analysis-pred
  overfocus analyze runs/demo --nproc 2               # 2 processes on this machine (torchrun)
  torchrun --nproc_per_node=4 -m overfocus analyze runs/demo --device cuda --amp --channels-last
  overfocus analyze runs/demo --shard 0/4             # share 0 of 4 (job array); a plain call merges

writes RUN/analysis/ (see docs/analysis.md): records/epoch_NNNN.csv (one row per image x method x
metric), summary.csv (mean and 95% bootstrap interval per epoch x method x metric), probe/ (the
probe images and their float16 maps per epoch) and analysis.json (settings, epochs done/skipped).
A second call computes only the checkpoints not analysed yet; --force recomputes. Under torchrun
every rank takes its share of each checkpoint's batches and rank 0 writes the same files as one
process would; a killed multi-process call leaves finished parts that the next call reuses
(docs/distributed.md).
"""


def register(sub) -> None:
    p = sub.add_parser("analyze", help="attribution maps and metrics of a run's checkpoints",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory written by `overfocus train`")
    p.add_argument("--epochs", default="all", help="all (default), START:STOP[:STEP] or a list 3,5,7")
    p.add_argument("--methods", default="grad_cam,sgdrop",
                   help="attribution methods, comma-separated (default grad_cam,sgdrop)")
    p.add_argument("--metrics", help="map metrics and/or coverage, comma-separated (default: all that the "
                   "data supports; correct and confidence are always recorded)")
    p.add_argument("--probe", type=int, help="probe-set size (default: run.json's probe_ids)")
    p.add_argument("--data", help="dataset spec (default: the run's; pass it when the data has moved)")
    p.add_argument("--split", default="test", choices=["test", "train"], help="images to analyse (default test)")
    p.add_argument("--target", default="gt", choices=["gt", "predicted"],
                   help="class whose logit is explained (default gt: the ground-truth label)")
    p.add_argument("--layer", help="attribution layer (default: the model's Grad-CAM layer)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the run's)")
    p.add_argument("--limit", type=int, default=0, help="analyse at most N images (default all)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default); under torchrun "
                   "cuda/auto mean each rank's own GPU")
    p.add_argument("--amp", action="store_true", help="mixed precision (autocast, bfloat16 where supported) "
                   "for the model; maps and metrics stay float32; meant for CUDA")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (faster convolutions on "
                   "recent GPUs)")
    p.add_argument("--nproc", type=int, default=0,
                   help="launch N processes with torchrun on this machine, each analysing a share")
    p.add_argument("--shard", metavar="R/W", help="compute only share R of W (0-based) into analysis/parts, "
                   "without torch.distributed; a later call without --shard merges complete sets")
    p.add_argument("--human", help="dataset with human importance maps, e.g. osie:PATH (adds harmonization)")
    p.add_argument("--out", help="analysis folder (default RUN/analysis)")
    p.add_argument("--force", action="store_true", help="recompute the selected epochs; replaces an "
                   "analysis made with other settings")
    p.set_defaults(func=run)


def _names(text):
    return None if text is None else [t for t in text.split(",") if t.strip()]


# options handed on unchanged to the processes that --nproc launches
VALUE_OPTIONS = ("epochs", "methods", "metrics", "probe", "data", "split", "target", "layer", "batch_size",
                 "limit", "device", "human", "out")
FLAG_OPTIONS = ("amp", "channels_last", "force")


def forwarded_argv(args: argparse.Namespace) -> list:
    """The command line of this call for the launched processes (without --nproc)."""
    argv = [args.run]
    for name in VALUE_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv + [f"--{name.replace('_', '-')}" for name in FLAG_OPTIONS if getattr(args, name)]


def run(args: argparse.Namespace) -> int:
    from ..analysis import preflight
    from ..distributed import env_info

    if args.nproc > 1:
        preflight(args.run, args.epochs, args.device, nproc=args.nproc, shard=args.shard)
        return relaunch_with_torchrun(args.nproc, "analyze", strip_nproc(forwarded_argv(args)))
    try:
        result = _analyze(args)
    except OverfocusError:
        if not env_info().is_main:
            return 2  # rank 0 prints the one line; the other ranks exit quietly
        raise
    if not env_info().is_main:
        return 0
    if args.shard:
        print(f"shard {args.shard}: parts of epochs {_ranges(result.computed) or 'none'} written to "
              f"{result.folder / 'parts'}; run `overfocus analyze {args.run}` once every shard is done")
        return 0
    _report(result)
    return 0


def _analyze(args: argparse.Namespace):
    from ..analysis import analyze

    return analyze(args.run, epochs=args.epochs, methods=_names(args.methods), metrics=_names(args.metrics),
                   probe=args.probe, data=args.data, split=args.split, target=args.target, layer=args.layer,
                   batch_size=args.batch_size, limit=args.limit, device=args.device, amp=args.amp,
                   channels_last=args.channels_last, human=args.human, force=args.force, out=args.out,
                   shard=args.shard)


def _report(result) -> None:
    from ..analysis.onset import onset_lines, read_onset

    news = f"analysed epochs {_ranges(result.computed)}" if result.computed else "nothing new to analyse"
    print(f"{news}; {len(result.epochs_done)} epoch(s) done in all, {len(result.skipped)} skipped")
    print(f"  summary: {result.folder / 'summary.csv'}\n  records: {result.folder / 'records'}")
    for line in _headline(result):
        print(line)
    for line in onset_lines(read_onset(result.folder)):  # the last lines: when attention narrowed
        print(line)


def _ranges(epochs) -> str:
    """3, 4, 5, 9 -> '3-5, 9'."""
    out, start = [], None
    for i, e in enumerate(epochs):
        start = e if start is None else start
        if i + 1 == len(epochs) or epochs[i + 1] != e + 1:
            out.append(str(e) if e == start else f"{start}-{e}")
            start = None
    return ", ".join(out)


def _headline(rows) -> list:
    """The last epoch's main numbers, one line per method."""
    if not rows:
        return []
    last = max(r["epoch"] for r in rows)
    wanted = ("area_ratio", "area_ratio_nondegenerate", "degenerate", "hit", "pointing_game", "energy_pg", "correct",
              "coverage_latent_cumulative", "unit_coverage_latent_cumulative")
    by_method: dict = {}
    for r in rows:
        if r["epoch"] == last and r["metric"] in wanted:
            by_method.setdefault(r["method"], []).append(f"{r['metric']}={r['mean']:.3f}")
    return [f"epoch {last}:"] + [f"  {m}: {' '.join(v)}" for m, v in sorted(by_method.items())]
