"""What a run of `overfocus train` keeps on disk per epoch, and what it lets go.

epoch_NNNN.pt holds the weights only (what analysis, render and audit read), in
`train.checkpoint_dtype`; training_state_NNNN.pt holds the rest of the training state (optimizer,
scheduler, regularizer state such as SGDrop's EMA copy, the RNG of every rank, and the float32
weights when epoch_NNNN.pt is in half precision), kept for the latest epoch and every
`train.keep_full_every`-th. `train.keep_every` keeps the weights of every N-th epoch (epoch 0, the
initial weights, and the latest are always kept). A file is deleted only once the epoch after it
is durable (its `latest` pointer written), so a crash never leaves a run without a resumable epoch.

Example:
    >>> weights_payload({"w": torch.ones(2)}, epoch=3, model_name="cifarnet", num_classes=10,
    ...                 dtype="float16")["model"]["w"].dtype
    torch.float16
    >>> weights_kept(4, latest=7, keep_every=2), weights_kept(5, latest=7, keep_every=2)
    (True, False)
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch

from .rundir import SCHEMA_VERSION, RunDir

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def weights_payload(state: Dict[str, torch.Tensor], epoch: int, model_name: str, num_classes: int,
                    dtype: str = "float32") -> Dict[str, Any]:
    """epoch_NNNN.pt: the model's weights (floating tensors cast to `dtype`) and what names them."""
    target = DTYPES[dtype]
    model = {k: (v.to(target) if v.is_floating_point() else v) for k, v in state.items()}
    return {"schema": SCHEMA_VERSION, "epoch": epoch, "model_name": model_name, "num_classes": num_classes,
            "model": model, "dtype": dtype}


def state_payload(epoch: int, state: Dict[str, torch.Tensor], dtype: str, optimizer: Dict[str, Any],
                  scheduler: Dict[str, Any], regularizer: Dict[str, Any],
                  rng_states: List[Dict[str, Any]]) -> Dict[str, Any]:
    """training_state_NNNN.pt: all that resume needs besides float32 weights (included when the
    weights file holds another dtype, so that resume continues bit for bit)."""
    payload = {"schema": SCHEMA_VERSION, "epoch": epoch, "optimizer": optimizer, "scheduler": scheduler,
               "regularizer": regularizer, "rng": rng_states[0], "rng_per_rank": rng_states}
    if dtype != "float32":
        payload["model"] = state
    return payload


def weights_kept(epoch: int, latest: int, keep_every: int) -> bool:
    """Whether epoch's weights file stays once `latest` is durable."""
    return epoch == 0 or epoch == latest or epoch % keep_every == 0


def state_kept(epoch: int, latest: int, keep_full_every: int) -> bool:
    """Whether epoch's full training state stays once `latest` is durable."""
    return epoch == latest or (keep_full_every > 0 and epoch > 0 and epoch % keep_full_every == 0)


def mark_pruned(entries: List[Dict[str, Any]], latest: int, keep_every: int) -> List[Dict[str, Any]]:
    """run.json `epochs` with the entries whose weights go marked `pruned` (their file and hash dropped)."""
    out = []
    for e in entries:
        if e.get("pruned") or weights_kept(e["epoch"], latest, keep_every):
            out.append(e)
        else:
            out.append({k: v for k, v in e.items() if k not in ("file", "sha256")} | {"pruned": True})
    return out


def prune(run: RunDir, latest: int, keep_every: int, keep_full_every: int) -> None:
    """Delete the weights and states that are not kept, now that `latest` is durable."""
    for path in run.checkpoints.glob("training_state_*.pt"):
        epoch = _epoch_of(path.stem)
        if epoch is not None and epoch < latest and not state_kept(epoch, latest, keep_full_every):
            path.unlink(missing_ok=True)
    for epoch in run.checkpoint_epochs():
        if epoch < latest and not weights_kept(epoch, latest, keep_every):
            run.checkpoint_path(epoch).unlink(missing_ok=True)


def _epoch_of(stem: str):
    try:
        return int(stem.rsplit("_", 1)[-1])
    except ValueError:
        return None
