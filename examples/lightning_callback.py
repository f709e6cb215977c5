"""A LightningModule trained by `lightning.Trainer` with overfocus's callback, then analysed and rendered.

    pip install "overfocus[integrations]"           # lightning (and timm, safetensors)
    python examples/lightning_callback.py           # a few minutes on 2 CPU cores: runs/lightning
    python examples/lightning_callback.py --epochs 2 --train 48 --test 24 --image-size 32   # a smoke run

The callback writes an ordinary overfocus run directory (epoch 0 = the weights before training),
so `overfocus analyze runs/lightning` and `overfocus render runs/lightning` work on it. The
accuracies the module logs as `train_acc` / `val_acc` become the run's train/test accuracy.
"""
from __future__ import annotations

import argparse

import lightning as L
import torch
import torch.nn.functional as F

import overfocus
from overfocus.data import collate_samples, normalize, open_dataset
from overfocus.integrations.lightning import OverfocusCallback
from overfocus.models import build_model
from overfocus.render import RenderOptions, render_run

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class Classifier(L.LightningModule):
    def __init__(self, num_classes: int):
        super().__init__()
        self.model = build_model("vgg11", num_classes, width=0.25, small_input=True)  # what the callback records

    def forward(self, images):
        return self.model(normalize(images, MEAN, STD))

    def training_step(self, batch, _index):
        logits = self(batch.images)
        loss = F.cross_entropy(logits, batch.labels)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _index):
        accuracy = (self(batch.images).argmax(1) == batch.labels).float().mean()
        self.log("val_acc", accuracy, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/lightning")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=1200, help="built-in training images")
    p.add_argument("--test", type=int, default=240, help="built-in test images")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args()

    data = f"builtin?classes=3&train={args.train}&test={args.test}"
    train_set, test_set = (open_dataset(data, split, args.image_size) for split in ("train", "test"))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, collate_fn=collate_samples)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=64, collate_fn=collate_samples)
    L.seed_everything(0, verbose=False)

    # test accuracy: the logged val_acc; the train accuracy is measured in eval mode by the tracker
    callback = OverfocusCallback(args.out, data=data, model_name="vgg11",
                                 model_kwargs={"width": 0.25, "small_input": True}, image_size=args.image_size,
                                 mean=MEAN, std=STD, test_acc_key="val_acc", force=True)
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Classifier(len(train_set.classes)), train_loader, test_loader)

    overfocus.analyze(args.out, methods=["grad_cam"], device="cpu")
    figures = render_run(args.out, RenderOptions(methods=["grad_cam"], formats=["gif"], size=480)).written
    print("figures:", ", ".join(str(f) for f in figures))


if __name__ == "__main__":
    main()
