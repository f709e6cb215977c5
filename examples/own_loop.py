"""Your own PyTorch training loop, recorded by overfocus.Tracker, then analysed and rendered.

    python examples/own_loop.py                    # a few minutes on 2 CPU cores: runs/own_loop
    python examples/own_loop.py --epochs 2 --train 48 --test 24 --image-size 32   # a smoke run

The loop below is plain PyTorch; the tracker adds two calls (start before training, epoch_end
after each epoch) and writes an ordinary run directory, so the usual commands work on it:
`overfocus analyze runs/own_loop`, `overfocus render runs/own_loop`, `overfocus audit runs/own_loop`.
With --tensorboard DIR it also logs the accuracies and the probe-set attention to TensorBoard
while it trains (`tensorboard --logdir DIR`).
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import overfocus
from overfocus.data import collate_samples, normalize, open_dataset
from overfocus.models import build_model
from overfocus.render import RenderOptions, render_run

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/own_loop")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=1200, help="built-in training images")
    p.add_argument("--test", type=int, default=240, help="built-in test images")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--tensorboard", help="TensorBoard log folder (optional)")
    args = p.parse_args()

    data = f"builtin?classes=3&train={args.train}&test={args.test}"
    train_set = open_dataset(data, "train", args.image_size)
    loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, collate_fn=collate_samples)
    torch.manual_seed(0)
    model = build_model("vgg11", len(train_set.classes), width=0.25, small_input=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    # the recipe (registry name and the arguments it was built with) lets the analysis rebuild the model
    tracker = overfocus.Tracker(args.out, data=data, model_name="vgg11",
                                model_kwargs={"width": 0.25, "small_input": True}, image_size=args.image_size,
                                mean=MEAN, std=STD, tensorboard=args.tensorboard, force=True)
    tracker.start(model)  # epoch 0: the weights before training
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for batch in loader:
            loss = F.cross_entropy(model(normalize(batch.images, MEAN, STD)), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        # train/test accuracy are measured by the tracker (eval mode) unless you pass them
        row = tracker.epoch_end(epoch, model, optimizer=optimizer, train_loss=total / len(loader))
        print(f"epoch {epoch}: train {row['train_acc']:.2f}  test {row['test_acc']:.2f}  gap {row['gap']:+.2f}")
    tracker.finish()

    overfocus.analyze(args.out, methods=["grad_cam"], device="cpu")
    figures = render_run(args.out, RenderOptions(methods=["grad_cam"], formats=["gif"], size=480)).written
    print("figures:", ", ".join(str(f) for f in figures))


if __name__ == "__main__":
    main()
