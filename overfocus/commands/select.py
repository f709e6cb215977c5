"""`overfocus select RUN`: the Pareto-optimal epochs of a run over accuracy and attention objectives."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import RAW
from .render import csv_list

# The library is imported inside the functions that run the command (not at the top), so that
# `overfocus --help`, `overfocus COMMAND --help` and a bad option answer without loading torch.

EXAMPLES = """examples:
  overfocus select runs/demo                      # test_acc, energy_pg_nondegenerate, area_ratio_nondegenerate
  overfocus select runs/demo --pick knee          # ... and name one epoch: the knee of the front
  overfocus select runs/demo --objectives test_acc,hit_ratio --method sgdrop

prints one line per Pareto-optimal epoch (no other epoch is as good on every objective and better
on one), each objective as mean [95% interval], and writes RUN/analysis/select.json (--out to
change). Which way an objective is better comes from the metric registry (`overfocus list`).
Objectives: the run's metrics.jsonl numbers (test_acc, train_acc, gap) and any metric of the
analysis summary (of --method, default the first analysed). The explorer marks these epochs.
"""


def register(sub) -> None:
    from ..analysis.select import DEFAULT_OBJECTIVES, PICKS

    p = sub.add_parser("select", help="Pareto-optimal checkpoints over accuracy and attention metrics",
                       epilog=EXAMPLES, formatter_class=RAW)
    p.add_argument("run", help="run directory analysed by `overfocus analyze`")
    p.add_argument("--objectives", type=csv_list, default=list(DEFAULT_OBJECTIVES),
                   help=f"comma-separated metric names (default {','.join(DEFAULT_OBJECTIVES)})")
    p.add_argument("--method", help="attribution method of the map metrics (default: the first analysed)")
    p.add_argument("--pick", choices=PICKS, help="name one epoch of the front: knee = nearest the ideal point "
                   "with each objective scaled to [0, 1] over the front")
    p.add_argument("--out", type=Path, help="select.json path (default RUN/analysis/select.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.select import SELECT_FILE, select_run, select_table, write_select

    result = select_run(args.run, args.objectives, method=args.method, pick=args.pick)
    out = write_select(result, args.out or Path(args.run) / "analysis" / SELECT_FILE)
    arrows = ", ".join(f"{o['name']} {'higher' if o['higher_is_better'] else 'lower'} is better"
                       for o in result["objectives"])
    print(f"Pareto-optimal epochs of {args.run} ({result['method']}; {arrows}; "
          f"{len(result['front'])} of {len(result['epochs_considered'])} epochs):")
    for line in select_table(result):
        print(f"  {line}")
    if result.get("pick"):
        print(f"knee: epoch {result['pick']['epoch']}")
    print(f"wrote {out}")
    return 0
