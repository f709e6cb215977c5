"""The label-leak diagnostic of regularizers whose mask depends on the label (docs/methods.md,
"The label leak").

SGDrop, saliency-guided training and Excitation Dropout build their training mask from the
ground-truth class. A classifier trained only on masked inputs can learn to read the class from
WHERE the mask fell instead of from the image. Each epoch, on a few hundred fixed images of the
train subset and of the test split, the online network (eval mode) is scored four ways:

    leak_true_mask_acc    with the mask made for the true label (what training sees)
    leak_no_mask_acc      without a mask (what evaluation and inference see)
    leak_wrong_mask_acc   with the mask made for a wrong label (fixed per image, seeded)
    leak_pred_mask_acc    with the mask made for the attribution network's own predicted class
                          (SGDrop's EMA copy, else the online network): label-free

The test split's columns end in `_test`. A network that learned the images scores about the same
with and without a mask; one that learned the mask scores far higher with the true label's mask
and near or below chance with a wrong one. `LEAK_MARGIN` is the gap that counts as a leak.

A regularizer takes part by having `leak_logits(model, images, labelings)`: the online network's
logits without a mask, then with the mask made for each labelling of the images (None: the
attribution network's own predicted class). The diagnostic draws random numbers (Excitation Dropout's
Bernoulli mask, random fills) from its own seed inside `torch.random.fork_rng`, so training's
random stream, hence resume, is untouched.

Example:
    >>> y = torch.tensor([0, 1, 2, 0])
    >>> bool((wrong_labels(y, wrong_shifts(4, 3, seed=0), 3) != y).all())
    True
    >>> leak_warning({"leak_true_mask_acc": 0.55, "leak_no_mask_acc": 0.21}, 8, "sgdrop")[:41]
    'warning: sgdrop: the mask leaks the label'
"""
from __future__ import annotations

import sys
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..data import normalize
from ..data.splits import probe_indices
from ..data.subset import Subset
from ..runs.accuracy import make_loader

LEAK_MARGIN = 0.05  # true-mask accuracy above no-mask accuracy by more than this: a leak
LEAK_COLUMNS = ("leak_true_mask_acc", "leak_no_mask_acc", "leak_wrong_mask_acc", "leak_pred_mask_acc")
TEST_SUFFIX = "_test"
_WRONG_SEED = 104_729  # added to the run's seed: the wrong labels differ from any other draw of the run
_DRAW_SEED = 15_485_863  # seeds the diagnostic's own random draws


def is_label_masked(regularizer: Any) -> bool:
    """Whether a regularizer's mask depends on the label (it offers the diagnostic's two methods)."""
    return callable(getattr(regularizer, "leak_logits", None))


def wrong_shifts(n_images: int, num_classes: int, seed: int) -> torch.Tensor:
    """Per image position, a shift r uniform in 1..C-1 drawn from `seed` alone (the same every epoch)."""
    g = torch.Generator().manual_seed(seed + _WRONG_SEED)
    return torch.randint(1, max(num_classes, 2), (n_images,), generator=g)


def wrong_labels(labels: torch.Tensor, shifts: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(y + r) mod C: a class other than y for every image (C >= 2)."""
    return (labels + shifts.to(labels.device)) % num_classes


def leak_warning(row: Dict[str, Any], epoch: int, name: str, margin: float = LEAK_MARGIN) -> Optional[str]:
    """The one warning line when the true-label mask beats no mask by more than `margin`, else None."""
    for suffix, where in (("", "train subset"), (TEST_SUFFIX, "test split")):
        true, none = row.get("leak_true_mask_acc" + suffix), row.get("leak_no_mask_acc" + suffix)
        if true is not None and none is not None and true - none > margin:
            return (f"warning: {name}: the mask leaks the label at epoch {epoch}: accuracy {true:.2f} with the true "
                    f"label's mask vs {none:.2f} without a mask on the {where} (more than {margin:.2f} apart): the "
                    "classifier reads the class from the mask; see docs/methods.md, 'The label leak'")
    return None


@torch.no_grad()
def leak_accuracies(regularizer: Any, model: nn.Module, loader, shifts: torch.Tensor, num_classes: int,
                    device: torch.device, mean, std) -> Dict[str, float]:
    """The four accuracies of `model` in eval mode (its mode restored after) over an in-order loader;
    `shifts[i]` makes the wrong label of the loader's i-th image."""
    counts = dict.fromkeys(LEAK_COLUMNS, 0)
    seen = 0
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            x = normalize(batch.images.to(device), mean, std)
            y = batch.labels.to(device)
            wrong = wrong_labels(y, shifts[seen:seen + len(y)], num_classes)
            logits = regularizer.leak_logits(model, x, [y, wrong, None])
            for column, out in zip(("leak_no_mask_acc", "leak_true_mask_acc", "leak_wrong_mask_acc",
                                    "leak_pred_mask_acc"), logits):
                counts[column] += int((out.argmax(1) == y).sum())
            seen += len(y)
    finally:
        model.train(was_training)
    return {k: v / max(seen, 1) for k, v in counts.items()}


class LeakDiagnostic:
    """The per-epoch leak columns of one run: fixed images of both splits, fixed wrong labels.

    `images` per split: evenly spread over the run's fixed train subset (`train_indices`) and over
    the test split. `row(model, epoch)` returns the eight columns and prints the warning line the
    first time a leak shows.

    Example:
        >>> from overfocus.config import RegularizerConfig
        >>> from overfocus.regularizers import build_regularizer
        >>> LeakDiagnostic.wanted(build_regularizer(RegularizerConfig("sgdrop"), None), 256)
        True
        >>> LeakDiagnostic.wanted(build_regularizer(RegularizerConfig("dropout"), None), 256)
        False
    """

    def __init__(self, regularizer: Any, train_eval, train_indices: Sequence[int], test, images: int,
                 num_classes: int, seed: int, batch_size: int, num_workers: int = 0):
        self.regularizer, self.num_classes, self.seed = regularizer, num_classes, seed
        train_pick = [train_indices[i] for i in probe_indices(len(train_indices), images)]
        test_pick = probe_indices(len(test), images)
        self.loaders = {"": make_loader(Subset(train_eval, train_pick), batch_size, num_workers),
                        TEST_SUFFIX: make_loader(Subset(test, test_pick), batch_size, num_workers)}
        self.shifts = {"": wrong_shifts(len(train_pick), num_classes, seed),
                       TEST_SUFFIX: wrong_shifts(len(test_pick), num_classes, seed + 1)}
        self.warned = False

    @staticmethod
    def wanted(regularizer: Any, images: int) -> bool:
        """On for a label-masked regularizer when `train.leak_images` > 0."""
        return images > 0 and is_label_masked(regularizer)

    def row(self, model: nn.Module, epoch: int, device: torch.device, mean, std) -> Dict[str, float]:
        """The columns of this epoch; the training RNG streams are left exactly as they were."""
        devices = [device] if device.type == "cuda" else []
        out: Dict[str, float] = {}
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + _DRAW_SEED)
            for suffix, loader in self.loaders.items():
                accs = leak_accuracies(self.regularizer, model, loader, self.shifts[suffix], self.num_classes,
                                       device, mean, std)
                out.update({k + suffix: v for k, v in accs.items()})
        line = leak_warning(out, epoch, getattr(self.regularizer, "name", "regularizer"))
        if line and not self.warned:
            print(line, file=sys.stderr, flush=True)
            self.warned = True
        return out
