"""`overfocus analyze RUN`: per-image attribution metrics of every checkpoint, incrementally."""
from __future__ import annotations

import argparse

from .common import RAW

EXAMPLES = """examples:
  overfocus analyze runs/demo                          # every checkpoint not analysed yet
  overfocus analyze runs/demo --epochs 0:50:5          # START:STOP:STEP, STOP included
  overfocus analyze runs/demo --epochs 3,5,7 --methods grad_cam --metrics area_ratio,hit
  overfocus analyze runs/tin --human osie:../shared/data/osie-150   # adds harmonization
  overfocus analyze runs/demo --target predicted --out runs/demo/analysis-pred

writes RUN/analysis/ (see docs/analysis.md): records/epoch_NNNN.csv (one row per image x method x
metric), summary.csv (mean and 95% bootstrap interval per epoch x method x metric), probe/ (the
probe images and their float16 maps per epoch) and analysis.json (settings, epochs done/skipped).
A second call computes only the checkpoints not analysed yet; --force recomputes.
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
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--human", help="dataset with human importance maps, e.g. osie:PATH (adds harmonization)")
    p.add_argument("--out", help="analysis folder (default RUN/analysis)")
    p.add_argument("--force", action="store_true", help="recompute the selected epochs; replaces an "
                   "analysis made with other settings")
    p.set_defaults(func=run)


def _names(text):
    return None if text is None else [t for t in text.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    from ..analyze import analyze

    result = analyze(args.run, epochs=args.epochs, methods=_names(args.methods), metrics=_names(args.metrics),
                     probe=args.probe, data=args.data, split=args.split, target=args.target, layer=args.layer,
                     batch_size=args.batch_size, limit=args.limit, device=args.device, human=args.human,
                     force=args.force, out=args.out)
    news = f"analysed epochs {_ranges(result.computed)}" if result.computed else "nothing new to analyse"
    print(f"{news}; {len(result.epochs_done)} epoch(s) done in all, {len(result.skipped)} skipped")
    print(f"  summary: {result.folder / 'summary.csv'}\n  records: {result.folder / 'records'}")
    for line in _headline(result):
        print(line)
    return 0


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
    wanted = ("area_ratio", "hit", "pointing_game", "energy_pg", "correct", "coverage_latent_cumulative")
    by_method: dict = {}
    for r in rows:
        if r["epoch"] == last and r["metric"] in wanted:
            by_method.setdefault(r["method"], []).append(f"{r['metric']}={r['mean']:.3f}")
    return [f"epoch {last}:"] + [f"  {m}: {' '.join(v)}" for m, v in sorted(by_method.items())]
