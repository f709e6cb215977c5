"""Engine overhead: time per epoch of overfocus's Trainer against a bare hand-written torch loop.

Same model, data, batch size and optimizer in one process; the ratio is what matters (goal: at
most 1.05). Evaluation and checkpointing are excluded from both sides: this measures the step
loop. Run: `python benchmarks/bench_engine.py [--quick]`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from overfocus.config import build_config
from overfocus.data import collate_samples, normalize, open_dataset
from overfocus.models import build_model
from overfocus.training.engine import Trainer


def bare_epoch(model, optimizer, dataset, batch_size, mean, std, seed) -> float:
    """The loop a user would write by hand."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed), collate_fn=collate_samples)
    model.train()
    t0 = time.perf_counter()
    for batch in loader:
        loss = F.cross_entropy(model(normalize(batch.images, mean, std)), batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t0


def engine_epoch(trainer: Trainer, epoch: int) -> float:
    t0 = time.perf_counter()
    trainer.train_epoch(epoch)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="vgg11")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_train, repeats = (512, 3) if args.quick else (2000, 5)
    spec = f"builtin?classes=6&train={n_train}&test=64"
    cfg = build_config(overrides=[f"data.spec={spec}", "data.image_size=64", f"model.name={args.model}",
                                  "model.width=0.25", "train.progress=false", "train.epochs=100"])
    trainer = Trainer(cfg, "/tmp/overfocus-bench-engine", force=True)
    torch.manual_seed(0)
    model = build_model(args.model, 6, 0.25, True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dataset = open_dataset(spec, "train", 64)
    bare, ours = [], []
    for r in range(repeats + 1):  # the first pair is warm-up
        b = bare_epoch(model, optimizer, dataset, cfg.data.batch_size, cfg.data.mean, cfg.data.std, r)
        e = engine_epoch(trainer, r + 1)
        if r:
            bare.append(b)
            ours.append(e)
    b, e = statistics.median(bare), statistics.median(ours)
    print("| model | images/epoch | bare loop s/epoch | engine s/epoch | ratio (goal <= 1.05) | engine img/s |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.model} w0.25 64px | {n_train} | {b:.3f} | {e:.3f} | {e / b:.3f} | {n_train / e:.0f} |")


if __name__ == "__main__":
    main()
