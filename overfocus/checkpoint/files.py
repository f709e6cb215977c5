"""Every reader of a checkpoint file: what a file is (sniffing), `torch.load(weights_only=True)`,
safetensors, TorchScript, and the state_dict of any accepted file (`read_weights`).

Checkpoints are untrusted: pickles run code, so `load_checkpoint` refuses anything beyond tensors
and plain containers unless the user opts in (`trust_pickle=True`, `--trust-pickle`).
"""
from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict

import torch
import torch.nn as nn

from ..errors import OverfocusError, first_line, shorten_text
from .keys import extract_state_dict


def load_checkpoint(path: Path, trust_pickle: bool = False) -> Dict[str, Any]:
    """Load a checkpoint as untrusted input: weights_only=True unless the user opted in.

    A truncated or corrupt file raises OverfocusError naming it (callers skip it and go on). The
    message says what the file is: "needs --trust-pickle" only for a real PyTorch pickle that holds
    Python objects, never for an image, a text file or a TorchScript archive.
    """
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"checkpoint {path} does not exist")
    kind = sniff_file_kind(path)
    if kind == "torchscript":
        raise OverfocusError(f"checkpoint {path} is a TorchScript archive, not a checkpoint: load it as such "
                             "(torch.jit.load; `overfocus audit` accepts it)")
    if kind not in ("zip", "pickle"):
        raise OverfocusError(f"checkpoint {path} is {kind}, not a PyTorch file: check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises many types for bad files; all mean "unusable"
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        if not trust_pickle and "Weights only load failed" in text:
            raise OverfocusError(pickle_refusal(path, text)) from None
        raise OverfocusError(f"checkpoint {path} is corrupt or truncated ({reason})") from None


def pickle_refusal(path: Path, torch_message: str) -> str:
    """The line for a file that `torch.load(weights_only=True)` refused: the Python global it needs
    (from torch's "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y" wording) and the
    opt-in, never "corrupt".

    Example:
        >>> pickle_refusal(Path("m.pt"), "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.")
        'checkpoint m.pt needs the Python global posix.system to load: it holds pickled Python objects, not only weights, and unpickling them runs code; pass --trust-pickle only if you trust its source'
    """
    found = re.search(r"unsupported global:? (?:GLOBAL )?([A-Za-z_][\w.]*)", torch_message, re.IGNORECASE)
    needs = f"needs the Python global {found.group(1)[:120]} to load" if found else "cannot load as weights only"
    return (f"checkpoint {shorten_text(str(path), 100)} {needs}: it holds pickled Python objects, not only "
            "weights, and unpickling them runs code; pass --trust-pickle only if you trust its source")


FILE_MAGIC = [(b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
              (b"%PDF", "a PDF document"), (b"\x1f\x8b", "a gzip archive"), (b"\x93NUMPY", "a NumPy .npy file")]


def sniff_file_kind(path: Path) -> str:
    """What a file is from its first bytes: 'zip', 'torchscript', 'pickle' or a description.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "notes.pt"
        >>> _ = p.write_text("hello")
        >>> sniff_file_kind(p)
        'a text file'
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"PK"):
        return "torchscript" if is_torchscript(path) else "zip"
    if head[:1] == b"\x80" or head.startswith(b"\x8a\x0a"):  # pickle protocol 2+, legacy torch magic
        return "pickle"
    for magic, name in FILE_MAGIC:
        if head.startswith(magic):
            return name
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "an unknown binary file"


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a `<name>/code/` folder; torch.save zips have none."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def is_safetensors(path: Path) -> bool:
    return Path(path).suffix == ".safetensors"


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """A .safetensors file's tensors (no pickle involved); the package is an optional extra."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise OverfocusError(f"{path} is a safetensors file and the safetensors package is not installed: "
                             'pip install safetensors (or pip install "overfocus[integrations]")') from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise OverfocusError(f"{path} is not a readable safetensors file ({first_line(exc)})") from None


def read_weights(path: Path | str, trust_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """The state_dict of any accepted file, prefixes of the model's keys still on (see fit_keys).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "epoch=3-step=120.ckpt"
        >>> torch.save({"epoch": 3, "state_dict": {"model.fc.weight": torch.zeros(2, 4)}}, path)
        >>> list(read_weights(path))
        ['model.fc.weight']
    """
    path = Path(path)
    if not path.is_file():
        raise OverfocusError(f"checkpoint {path} does not exist: check the path")
    if is_safetensors(path):
        return read_safetensors(path)
    if is_torchscript(path):
        return dict(load_torchscript(path).state_dict())
    payload = load_checkpoint(path, trust_pickle=trust_pickle)
    state = payload if isinstance(payload, nn.Module) else extract_state_dict(payload, path)
    return dict(state.state_dict()) if isinstance(state, nn.Module) else state


def load_torchscript(path: Path):
    try:
        with warnings.catch_warnings():  # torch.jit.* deprecation warnings are not the user's business
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError and friends for damaged archives
        raise OverfocusError(f"TorchScript file {path} cannot be loaded ({first_line(exc)})") from None
