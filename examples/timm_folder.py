"""A timm model trained by a short loop that only saves a checkpoint per epoch, analysed afterwards.

    pip install "overfocus[integrations]"           # timm (and lightning, safetensors)
    python examples/timm_folder.py                  # a few minutes on 2 CPU cores: runs/timm_folder
    python examples/timm_folder.py --epochs 2 --train 48 --test 24 --image-size 32   # a smoke run

Nothing of overfocus runs during training: the loop writes plain state_dicts named by epoch
(`epoch_000.pt` ... as many training scripts do). Afterwards two commands give the analysis, the
evolution video and the gap plot (overfocus measures each checkpoint's train/test accuracy itself):

    overfocus analyze runs/timm_folder/checkpoints --model timm:resnet10t --data builtin?... \\
        --image-size 64 --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 --methods grad_cam
    overfocus render runs/timm_folder/checkpoints/overfocus

This script runs both at the end (through the CLI, exactly as typed above).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

from overfocus.data import collate_samples, normalize, open_dataset

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
NAME = "resnet10t"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/timm_folder")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=1000, help="built-in training images")
    p.add_argument("--test", type=int, default=240, help="built-in test images")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()

    data = f"builtin?classes=3&train={args.train}&test={args.test}"
    train_set = open_dataset(data, "train", args.image_size)
    loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True, collate_fn=collate_samples)
    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False, num_classes=len(train_set.classes))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    folder = Path(args.out) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)

    torch.save(model.state_dict(), folder / "epoch_000.pt")  # the weights before training
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch in loader:
            loss = F.cross_entropy(model(normalize(batch.images, MEAN, STD)), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        torch.save(model.state_dict(), folder / f"epoch_{epoch:03d}.pt")
        print(f"epoch {epoch}: last batch loss {loss.item():.3f}")

    overfocus = [sys.executable, "-m", "overfocus"]
    subprocess.run([*overfocus, "analyze", str(folder), "--model", f"timm:{NAME}", "--data", data,
                    "--image-size", str(args.image_size), "--mean", ",".join(map(str, MEAN)),
                    "--std", ",".join(map(str, STD)), "--methods", "grad_cam", "--device", "cpu"], check=True)
    subprocess.run([*overfocus, "render", str(folder / "overfocus"), "--methods", "grad_cam", "--formats", "gif"],
                   check=True)


if __name__ == "__main__":
    main()
