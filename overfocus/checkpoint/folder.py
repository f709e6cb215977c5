"""A folder of checkpoint files from any training: which file holds which epoch.

Epoch numbers come from the file names: `epoch_0003.pt`, `epoch=3-step=120.ckpt` (Lightning),
`checkpoint-3.pth`, `model_ep3.safetensors`, `3.pt`; a user's `--epoch-pattern REGEX` (its first
group, else the whole match, is the epoch) replaces these rules. Reading a file is
`overfocus.checkpoint.files.read_weights`; this module only names and orders the files.

Epoch N means "the weights after N epochs of training" (epoch 0 = the initial weights), as in a
run of `overfocus train`. Lightning's ModelCheckpoint names the file saved at the END of its
0-based epoch K `epoch=K-step=S.ckpt`: it holds the weights after K+1 epochs, so it is read as
epoch K+1 (a note says so; `--epoch-offset N` adds N to every file's number instead), and an
`epoch=0` file never becomes the initial weights.

Example:
    >>> [epoch_from_name(n) for n in ("epoch_0003.pt", "epoch=3-step=120.ckpt", "checkpoint-3.pth",
    ...                               "model_ep3.safetensors", "3.pt", "last.ckpt")]
    [3, 3, 3, 3, 3, None]
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import OverfocusError

SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pth.tar")  # .pth.tar: timm's CheckpointSaver
NAME_RULES = (
    re.compile(r"(?:^|[^a-z])ep(?:och)?[=_-]?(\d+)", re.IGNORECASE),  # epoch_0003, epoch=3-step=120, model_ep3
    re.compile(r"(?:^|[^a-z])checkpoint[=_-]?(\d+)$", re.IGNORECASE),  # checkpoint-3
    re.compile(r"^(\d+)$"),  # 3
)


LIGHTNING_NAME = re.compile(r"(?:^|[^a-z])epoch=(\d+)(?:-step=(\d+))?", re.IGNORECASE)


def lightning_name(name: str) -> Optional[re.Match]:
    """The `epoch=K[-step=S]` part of a Lightning ModelCheckpoint file name, or None.

    Example:
        >>> lightning_name("epoch=0-step=26.ckpt").groups(), lightning_name("epoch_0003.pt")
        (('0', '26'), None)
    """
    return LIGHTNING_NAME.search(name)


def compile_pattern(pattern: Optional[str]) -> Optional[re.Pattern]:
    """The user's --epoch-pattern, compiled, or a one-line error."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise OverfocusError(f"--epoch-pattern {pattern!r} is not a regular expression ({exc}); "
                             r"e.g. --epoch-pattern 'ep(\d+)'") from None


def epoch_from_name(name: str, pattern: Optional[re.Pattern] = None) -> Optional[int]:
    """The epoch a file name gives, or None. `pattern` is searched in the whole file name; the
    built-in rules look at the name without its suffix.

    Example:
        >>> epoch_from_name("run7-e12.pt", re.compile(r"-e(\\d+)"))
        12
    """
    if pattern is not None:
        match = pattern.search(name)
        text = (match.group(1) if match.groups() else match.group(0)) if match else None
    else:
        stem = name[: -len(suffix)] if (suffix := checkpoint_suffix(name)) else name
        match = next((m for m in (rule.search(stem) for rule in NAME_RULES) if m), None)
        text = match.group(1) if match else None
    try:
        return int(text) if text is not None else None
    except ValueError:  # a user pattern whose group matched something else than digits
        return None


def checkpoint_suffix(name: str) -> Optional[str]:
    """The checkpoint suffix `name` ends with (the longest), or None for other files.

    Example:
        >>> checkpoint_suffix("checkpoint-3.pth.tar"), checkpoint_suffix("metrics.csv")
        ('.pth.tar', None)
    """
    return max((s for s in SUFFIXES if name.lower().endswith(s)), key=len, default=None)


@dataclass
class FolderScan:
    """The checkpoint files of a folder by epoch, and the files that could not be placed."""

    folder: Path
    files: Dict[int, Path] = field(default_factory=dict)
    unnamed: List[Path] = field(default_factory=list)  # no epoch in the name
    duplicates: List[Path] = field(default_factory=list)  # a second file of an epoch
    steps: Dict[int, int] = field(default_factory=dict)  # optimizer steps done, where the name gives them
    offset: Optional[int] = None  # the user's --epoch-offset, added to every file's number
    lightning: List[Path] = field(default_factory=list)  # epoch=K files read as epoch K+1 (no --epoch-offset)

    @property
    def epochs(self) -> List[int]:
        return sorted(self.files)

    @property
    def epoch0_is_initial(self) -> bool:
        """Whether epoch N means "after N epochs" (epoch 0 = the initial weights): False only where the
        user read Lightning's epoch=K files as named (`--epoch-offset 0`: epoch 0 is a trained model)."""
        return not (self.offset == 0 and any(lightning_name(p.name) for p in self.files.values()))

    @property
    def history_offset(self) -> int:
        """What to add to the epochs of the same training's own log (Lightning's metrics.csv counts from 0 too)."""
        return self.offset if self.offset is not None else (1 if self.lightning else 0)

    def notes(self) -> List[str]:
        """One line per kind of file left out or renumbered (printed once per call)."""
        out = []
        if self.lightning:
            shown = ", ".join(f"{p.name} -> epoch {e}" for e, p in sorted(self.files.items())
                              if p in self.lightning[:2])
            out.append(f"Lightning's epoch=K files hold the weights after K+1 epochs: {len(self.lightning)} read as "
                       f"epoch K+1 ({shown}{', ...' if len(self.lightning) > 2 else ''}); --epoch-offset 0 reads "
                       "them as named")
        if self.unnamed:
            out.append(f"{len(self.unnamed)} file(s) give no epoch in their names and are skipped: "
                       f"{_names(self.unnamed)} (name the epoch with --epoch-pattern REGEX)")
        if self.duplicates:
            out.append(f"{len(self.duplicates)} file(s) repeat an epoch of another file and are skipped: "
                       f"{_names(self.duplicates)}")
        return out


def scan_folder(folder: Path | str, pattern: Optional[str] = None, epoch_offset: Optional[int] = None) -> FolderScan:
    """The checkpoint files (SUFFIXES) directly inside `folder`, by epoch; for an epoch named by two
    files the first in name order is kept. `epoch_offset` is added to every file's number; without
    it Lightning's `epoch=K` files are read as epoch K+1 (the weights after K+1 epochs).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for name in ("epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt", "last.ckpt", "notes.txt"):
        ...     _ = (d / name).write_bytes(b"")
        >>> scan = scan_folder(d)
        >>> scan.epochs, scan.steps, [p.name for p in scan.unnamed], scan.epoch0_is_initial
        ([1, 2], {1: 4, 2: 8}, ['last.ckpt'], True)
        >>> scan_folder(d, epoch_offset=0).epochs, scan_folder(d, epoch_offset=0).epoch0_is_initial
        ([0, 1], False)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise OverfocusError(f"{folder} is not a folder: pass a run directory or a folder of checkpoint files")
    if epoch_offset is not None and epoch_offset < 0:
        raise OverfocusError(f"--epoch-offset {epoch_offset}: use 0 or more (what to add to the epoch in each name)")
    regex = compile_pattern(pattern)
    scan = FolderScan(folder, offset=epoch_offset)
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and checkpoint_suffix(p.name))
    if not candidates:
        raise OverfocusError(f"{folder} holds no checkpoint files ({' '.join(SUFFIXES)}) and no run.json: pass "
                             "a run directory of `overfocus train` or the folder your training saved into")
    for path in candidates:
        named = epoch_from_name(path.name, regex)
        lightning = lightning_name(path.name) if regex is None else None
        if named is None:
            scan.unnamed.append(path)
            continue
        epoch = named + (epoch_offset if epoch_offset is not None else (1 if lightning else 0))
        if epoch in scan.files:
            scan.duplicates.append(path)
            continue
        scan.files[epoch] = path
        if lightning is not None and epoch_offset is None:
            scan.lightning.append(path)
        if lightning is not None and lightning.group(2) is not None:
            scan.steps[epoch] = int(lightning.group(2))
    if not scan.files:
        rule = f"--epoch-pattern {pattern!r}" if pattern else "epoch_0003.pt, epoch=3-step=120.ckpt, checkpoint-3.pth"
        raise OverfocusError(f"none of the {len(candidates)} checkpoint files of {folder} gives an epoch "
                             f"({_names(candidates)}; expected names like {rule}): pass --epoch-pattern REGEX")
    return scan


def _names(paths: List[Path], shown: int = 4) -> str:
    names = ", ".join(p.name for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
