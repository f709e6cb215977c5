"""Bytes per epoch of a run's checkpoints before and after the weights / training-state split
(README "Checkpoints on disk"): the model, its optimizer after one real step and the regularizer's
state are built and saved both ways; nothing is trained beyond that step.

    python benchmarks/checkpoint_bytes.py            # the default run (cifarnet, 64 px) and VGG16 at 224 px
"""
from __future__ import annotations

import io
import math

import torch

from overfocus.config import build_config
from overfocus.models import build_model, latent_layer_name
from overfocus.regularizers import RegContext, StepInfo, build_regularizer
from overfocus.data import Batch
from overfocus.runs.checkpoints import state_payload, weights_payload
from overfocus.training.engine import build_optimizer, rng_state


def nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def measure(label: str, overrides, num_classes: int, batch: int = 2) -> None:
    cfg = build_config(overrides=overrides)
    size = cfg.data.image_size
    model = build_model(cfg.model.name, num_classes, cfg.model.width, cfg.model.small_input, cfg.model.batch_norm)
    optimizer, scheduler = build_optimizer(model, cfg)
    context = RegContext(cfg.model.name, latent_layer_name(cfg.model.name, cfg.model.latent_layer), num_classes,
                         10, cfg.train.epochs, torch.device("cpu"), False, size, 0)
    regularizer = build_regularizer(cfg.regularizer, context)
    regularizer.setup(model)
    images, labels = torch.rand(batch, 3, size, size), torch.arange(batch) % num_classes
    loss, _ = regularizer.loss(model, Batch(images, labels, [torch.zeros(0, 4)] * batch, [str(i) for i in range(batch)]),
                               StepInfo(0, 1, 0, 1.0))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()  # the optimizer's state (Adam's moments, SGD's momentum) now exists
    regularizer.after_step(model)
    regularizer.teardown(model)
    state, rng = model.state_dict(), [rng_state(torch.device("cpu"))]
    parts = (optimizer.state_dict(), scheduler.state_dict(), regularizer.state_dict(), rng)
    before = nbytes({"schema": 1, "epoch": 1, "model_name": cfg.model.name, "num_classes": num_classes,
                     "model": state, "optimizer": parts[0], "scheduler": parts[1], "regularizer": parts[2],
                     "rng": rng[0], "rng_per_rank": rng})
    weights = {d: nbytes(weights_payload(state, 1, cfg.model.name, num_classes, d)) for d in ("float32", "float16")}
    full = {d: nbytes(state_payload(1, state, d, *parts)) for d in ("float32", "float16")}
    mb = lambda n: f"{n / 1e6:,.1f} MB"  # noqa: E731
    print(f"| {label} | {mb(before)} | {mb(weights['float32'])} | {mb(weights['float16'])} | "
          f"{mb(full['float32'])} | {weights['float32'] / before:.2f} |")


if __name__ == "__main__":
    print("| run | before: per epoch | after: per epoch (float32) | after: per epoch (float16) | "
          "latest epoch's training state (float32 weights) | per epoch after / before |")
    print("|---|---|---|---|---|---|")
    measure("default (`overfocus train`: cifarnet, 64 px, Adam, 6 classes)", [], 6)
    measure("default with SGDrop (EMA)", ["regularizer.name=sgdrop"], 6)
    vgg = ["model.name=vgg16", "data.image_size=224", "optim.name=sgd", "optim.lr=0.01"]
    measure("VGG16, 224 px, 1000 classes, SGD momentum", vgg, 1000)
    measure("VGG16, 224 px, 1000 classes, SGD momentum, SGDrop (EMA)", vgg + ["regularizer.name=sgdrop"], 1000)
