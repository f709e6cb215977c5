"""`overfocus analyze RUN`: per-image attribution metrics of every checkpoint, incrementally;
RUN is a run directory of `overfocus train` or a folder of checkpoints from any training."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import OverfocusError
from .audit import add_model_args, add_preprocessing_args, model_options, triple
from .common import RAW, add_method_args, finite_float, parse_method_args
from .train import relaunch_with_torchrun, strip_nproc

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus analyze runs/demo                          # every checkpoint not analysed yet
  overfocus analyze runs/demo --epochs 0:50:5          # START:STOP:STEP, STOP included
  overfocus analyze runs/demo --epochs 3,5,7 --methods grad_cam --metrics area_ratio,hit \
      --out runs/demo/analysis-gradcam                 # other settings: another folder (or --force)
  overfocus analyze runs/tin --human osie:../shared/data/osie-150   # needs a Tiny ImageNet run and the OSIE maps
  overfocus analyze runs/demo --target predicted --out runs/demo/analysis-pred
  overfocus analyze runs/demo --epochs 1 --limit 32 --methods grad_cam,grad_cam_pp,score_cam,captum:Saliency \
      --method-args score_cam.batch_size=128 --out runs/demo/analysis-cams   # methods: overfocus list methods
  overfocus analyze runs/demo --nproc 2 --force       # 2 processes on this machine (torchrun)
  torchrun --nproc_per_node=4 -m overfocus analyze runs/demo --device cuda --amp   # needs 4 GPUs
  overfocus analyze runs/demo --shard 0/4 --out runs/demo/analysis-shards   # share 0 of 4 (job array)
  overfocus analyze runs/demo --out runs/demo/analysis-shards   # needs all 4 shards done: merges them

a folder of checkpoints from your own training (no run.json), e.g. epoch=3-step=120.ckpt, epoch_0003.pt,
checkpoint-3.pth, model_ep3.safetensors, 3.pt (state_dicts, Lightning, DDP/compile prefixes, TorchScript):
  overfocus analyze ckpts/ --model resnet18 --data builtin --image-size 64
  overfocus analyze ckpts/ --arch mypkg.nets:Net --layer features --data folder:PHOTOS --watch
  overfocus analyze ckpts/ --model timm:resnet18 --data builtin --metrics-file logs/metrics.csv
  then: overfocus render ckpts/overfocus

writes RUN/analysis/ (see docs/analysis.md): records/epoch_NNNN.csv (one row per image x method x
metric), summary.csv (mean and 95% bootstrap interval per epoch x method x metric), probe/ (the
probe images and their float16 maps per epoch) and analysis.json (settings, epochs done/skipped).
A second call computes only the checkpoints not analysed yet; --force recomputes. Under torchrun
every rank takes its share of each checkpoint's batches and rank 0 writes the same files as one
process would; a killed multi-process call leaves finished parts that the next call reuses
(docs/distributed.md). For a folder of checkpoints the output folder (default FOLDER/overfocus, or
--out) holds run.json, metrics.jsonl (train/test accuracy measured per checkpoint, or read from
--metrics-file) and analysis/: render, compare and tensorboard take it as a run. Files whose names
give no epoch are listed once and skipped; checkpoints that cannot be loaded are named on stderr and
skipped, the others analysed, and the exit code is then 2.
"""


def register(sub) -> None:
    p = sub.add_parser("analyze", help="attribution maps and metrics of a run's checkpoints",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory written by `overfocus train`, or a folder of checkpoint files")
    p.add_argument("--epochs", default="all", help="all (default), START:STOP[:STEP] or a list 3,5,7")
    p.add_argument("--methods", default="grad_cam,sgdrop",
                   help="attribution methods, comma-separated (default grad_cam,sgdrop)")
    add_method_args(p)
    p.add_argument("--metrics", help="map metrics and/or coverage, comma-separated (default: all that the "
                   "data supports; correct and confidence are always recorded)")
    p.add_argument("--probe", type=int, help="probe-set size (default: run.json's probe_ids)")
    p.add_argument("--data", help="dataset spec (default: the run's; pass it when the data has moved)")
    p.add_argument("--split", default="test", choices=["test", "train"], help="images to analyse (default test)")
    p.add_argument("--target", default="gt", choices=["gt", "predicted"],
                   help="class whose logit is explained (default gt: the ground-truth label)")
    p.add_argument("--layer", help="attribution layer (default: the model's Grad-CAM layer; for a model "
                   "we do not know, the last module with a spatial output before the classifier)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the run's)")
    p.add_argument("--limit", type=int, default=0, help="analyse at most N images, evenly spaced over the split so that a class-sorted folder does not yield one class (default all)")
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
    p.add_argument("--out", help="analysis folder (default RUN/analysis); for a folder of checkpoints the output "
                   "folder (default FOLDER/overfocus)")
    p.add_argument("--force", action="store_true", help="recompute the selected epochs; replaces an "
                   "analysis made with other settings")
    p.add_argument("--watch", action="store_true", help="keep polling for new checkpoints until Ctrl-C (a training "
                   "that is still going)")
    p.add_argument("--interval", type=finite_float, default=30.0, help="seconds between polls of --watch (default 30)")
    p.add_argument("--faithfulness-images", type=int, default=256, metavar="N",
                   help="compute the faithfulness and sanity metrics (deletion, insertion, ROAD, confidence, "
                   "sanity_init, sanity_class) and the random baseline on N images evenly spaced over the "
                   "analysed ones (default 256; 0 = none)")
    p.add_argument("--sanity", choices=["cascade"], help="cascade: also run the cascading randomisation test "
                   "(layers re-initialised from the top down to the epoch-0 weights, one at a time) on the last "
                   "analysed epoch over the faithfulness images; writes sanity_cascade.json")
    p.add_argument("--faithfulness-steps", type=int, default=16, metavar="K",
                   help="steps of deletion / insertion (default 16)")
    p.add_argument("--faithfulness-baseline", default="blur", choices=["blur", "mean"],
                   help="what deletion / insertion put in place of removed pixels (default blur: a blurred copy)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning each (default: "
                   "as the run was trained, run.json's data.skip_bad)")
    add_folder_args(p)
    p.set_defaults(func=run)


def add_folder_args(p: argparse.ArgumentParser) -> None:
    """Options of a folder of checkpoints from another training (the model as `overfocus audit` takes it)."""
    g = p.add_argument_group("a folder of checkpoints from your own training")
    add_model_args(g, layer=False)
    add_preprocessing_args(g)
    g.add_argument("--epoch-pattern", metavar="REGEX", help="regular expression finding the epoch in a file name "
                   r"(its first group), e.g. 'ep(\d+)' (default: epoch_3, epoch=3-step=.., checkpoint-3, _ep3, 3)")
    g.add_argument("--epoch-offset", type=int, metavar="N", help="add N to the epoch of every file name (default: "
                   "Lightning's epoch=K files, saved after K+1 epochs, read as epoch K+1; other names as they are)")
    g.add_argument("--metrics-file", metavar="FILE", help="the training's train/test accuracy per epoch (Lightning "
                   "CSVLogger metrics.csv, CSV or JSON lines) instead of measuring it per checkpoint")
    g.add_argument("--epoch-column", default="epoch", help="epoch column of --metrics-file (default epoch)")
    g.add_argument("--train-acc-column", help="train accuracy column (default: train_acc, train_accuracy, ...)")
    g.add_argument("--test-acc-column", help="test accuracy column (default: test_acc, val_acc, ...)")



def _names(text):
    return None if text is None else [t for t in text.split(",") if t.strip()]


# options handed on unchanged to the processes that --nproc launches
VALUE_OPTIONS = ("epochs", "methods", "metrics", "probe", "data", "split", "target", "layer", "batch_size",
                 "limit", "device", "human", "out", "faithfulness_images", "faithfulness_steps",
                 "faithfulness_baseline", "sanity", "model", "arch", "num_classes", "width", "strip_prefix",
                 "image_size", "mean", "std", "epoch_pattern", "epoch_offset", "metrics_file", "epoch_column",
                 "train_acc_column",
                 "test_acc_column")
FLAG_OPTIONS = ("amp", "channels_last", "force", "small_input", "trust_pickle", "skip_bad", "trust_recipe")
FOLDER_ONLY = ("model", "arch", "num_classes", "width", "strip_prefix", "image_size", "mean", "std",
               "epoch_pattern", "epoch_offset", "metrics_file", "train_acc_column", "test_acc_column", "small_input",
               "trust_pickle")


def forwarded_argv(args: argparse.Namespace) -> list:
    """The command line of this call for the launched processes (without --nproc)."""
    argv = [args.run]
    for name in VALUE_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    for item in args.method_args:
        argv += ["--method-args", item]
    return argv + [f"--{name.replace('_', '-')}" for name in FLAG_OPTIONS if getattr(args, name)]


def run(args: argparse.Namespace) -> int:
    from ..analysis import preflight

    foreign = not (Path(args.run) / "run.json").is_file()
    _check_folder_options(args, foreign)
    if args.nproc > 1:
        preflight(args.run, args.epochs, args.device, nproc=args.nproc, shard=args.shard,
                  epoch_pattern=args.epoch_pattern, epoch_offset=args.epoch_offset)
        return relaunch_with_torchrun(args.nproc, "analyze", strip_nproc(forwarded_argv(args)))
    code = _analyze_once(args, foreign, first=True)
    while args.watch:  # Ctrl-C while waiting or analysing: the CLI exits 130, finished epochs kept
        time.sleep(args.interval)
        code = _analyze_once(args, foreign, first=False)
    return code


def _check_folder_options(args: argparse.Namespace, foreign: bool) -> None:
    given = [name for name in FOLDER_ONLY if getattr(args, name) not in (None, False)
             and not (name == "arch" and not foreign and _records_arch(args.run))]
    if given and not foreign:
        raise OverfocusError(f"--{given[0].replace('_', '-')} is for a folder of checkpoints; {args.run} is a run "
                             "directory whose run.json already names its model and data: drop the option")
    if args.watch and (args.nproc > 1 or args.shard):
        raise OverfocusError("--watch polls in one process: drop --nproc/--shard (or run them without --watch)")
    if not 0 < args.interval <= 86400:
        raise OverfocusError(f"--interval {args.interval:g}: use a positive number of seconds, at most 86400 (a day)")


def _records_arch(run: str) -> bool:
    """True for a run whose run.json names its model by an import path (`--arch` then allows it)."""
    from ..runs.rundir import RunDir

    return bool(((RunDir(run).read_manifest().get("config") or {}).get("model") or {}).get("arch"))


def _analyze_once(args: argparse.Namespace, foreign: bool, first: bool) -> int:
    """One analyze call; later polls of --watch speak only when they analysed something."""
    try:
        result = _analyze(args, foreign, show=first)
    except OverfocusError:
        if not env_info_is_main():
            return 2  # rank 0 prints the one line; the other ranks exit quietly
        raise
    if not env_info_is_main():
        return 0
    if args.shard:
        print(f"shard {args.shard}: parts of epochs {_ranges(result.computed) or 'none'} written to "
              f"{result.folder / 'parts'}; run `overfocus analyze {args.run}` once every shard is done")
        return 0
    if first or result.computed:
        _report(result)
    if foreign and result.skipped:
        if first or result.computed:
            print(f"overfocus analyze: error: {len(result.skipped)} checkpoint(s) of {args.run} could not be "
                  f"analysed (listed in {result.folder / 'analysis.json'}); the others were", file=sys.stderr)
        return 2
    return 0


def env_info_is_main() -> bool:
    from ..distributed import env_info

    return env_info().is_main


def _analyze(args: argparse.Namespace, foreign: bool, show: bool = True):
    from ..analysis import analyze

    return analyze(args.run, epochs=args.epochs, methods=_names(args.methods), metrics=_names(args.metrics),
                   probe=args.probe, data=args.data, split=args.split, target=args.target, layer=args.layer,
                   batch_size=args.batch_size, limit=args.limit, device=args.device, amp=args.amp,
                   channels_last=args.channels_last, human=args.human, force=args.force, out=args.out,
                   shard=args.shard, show_progress=show, folder=folder_options(args) if foreign else None,
                   skip_bad=True if args.skip_bad else None, method_args=parse_method_args(args.method_args),
                   trust_recipe=args.trust_recipe, arch=None if foreign else args.arch,
                   faithfulness_images=args.faithfulness_images, faithfulness_steps=args.faithfulness_steps,
                   faithfulness_baseline=args.faithfulness_baseline, sanity=args.sanity or "")


def folder_options(args: argparse.Namespace):
    """FolderOptions from the command line (a folder of checkpoints)."""
    from ..analysis.runsource import FolderOptions
    from ..checkpoint.history import HistoryColumns

    model = model_options(args)  # --layer included
    columns = HistoryColumns(args.epoch_column, args.train_acc_column, args.test_acc_column)
    return FolderOptions(model, args.image_size, triple(args.mean, "--mean"), triple(args.std, "--std"),
                         args.epoch_pattern, args.epoch_offset, args.metrics_file, columns)


def _report(result) -> None:
    from ..analysis.onset import onset_lines, read_onset

    news = f"analysed epochs {_ranges(result.computed)}" if result.computed else "nothing new to analyse"
    print(f"{news}; {len(result.epochs_done)} epoch(s) done in all, {len(result.skipped)} skipped")
    print(f"  summary: {result.folder / 'summary.csv'}\n  records: {result.folder / 'records'}")
    layer_line = _layer_line(result.folder)
    if layer_line:
        print(layer_line)
    for line in _headline(result):
        print(line)
    for line in onset_lines(read_onset(result.folder)):  # the last lines: when attention narrowed
        print(line)


def _layer_line(folder) -> str:
    """'  layer: blocks.11.norm1 (tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8)' from analysis.json."""
    from ..analysis.storage import read_analysis_json

    state = read_analysis_json(folder) or {}
    if not state.get("layer"):
        return ""
    reshape = state.get("layer_reshape")
    return f"  layer: {state['layer']}" + (f" ({reshape})" if reshape else "")


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
