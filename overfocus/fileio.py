"""Small file helpers every stage may use: atomic writes, sha256, the default file mode.

Atomic means: written to a temporary name in the same folder, flushed, fsynced and renamed into
place, so a crash (even `kill -9`) leaves either the old file or the new one, never half of one.
A write that fails for want of space or permission raises a one-line OverfocusError naming the
path (`writing`); other OSErrors pass unchanged. This module imports only overfocus.errors, so
data, runs, analysis and render can all use it.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> atomic_write_text(path, "hello")
>>> path.read_text()
'hello'
>>> sha256_file(path)[:12]
'2cf24dba5fb0'
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, List

from .errors import OverfocusError, is_write_failure, write_error


@functools.lru_cache(maxsize=1)
def file_mode() -> int:
    """The mode open() would give a new file (0o666 less the umask); mkstemp's files are 0600.

    Read from /proc where it can be, so that no umask is changed, not even for a moment; elsewhere
    the umask is read by setting it and putting it back at once (on first use, not at import).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write of `path` (disk full, read-only, permission) into a one-line OverfocusError.

    >>> import errno
    >>> with writing(Path("/x/y")):  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...     raise OSError(errno.EROFS, "Read-only file system")
    Traceback (most recent call last):
    overfocus.errors.OverfocusError: cannot write /x/y: the file system is read-only: write elsewhere
    """
    try:
        yield
    except OSError as exc:
        if is_write_failure(exc):
            raise write_error(path, exc) from None
        raise


def make_dirs(folder: Path) -> None:
    """mkdir -p with the one-line error of `writing`."""
    with writing(folder):
        Path(folder).mkdir(parents=True, exist_ok=True)


def check_writable(folder: Path) -> None:
    """Refuse now, with the one-line error of `writing`, if files cannot be written into `folder`.

    Probes the folder, or its nearest existing parent when it does not exist yet (nothing is
    created), with a temporary file that is removed at once. For commands that compute for a
    long time before writing.

    Example:
        >>> import tempfile
        >>> check_writable(Path(tempfile.gettempdir()) / "not-yet" / "there")
    """
    probe_in = Path(folder)
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        raise OverfocusError(f"cannot write into {folder}: {probe_in} is an existing file; choose another folder")
    with writing(folder):
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(probe_in / "overfocus-probe"), suffix=TEMP_MARK, dir=probe_in)
        os.close(fd)
        os.unlink(tmp)


TEMP_MARK = ".tmp"  # every temporary name: .<name>.<host>~<pid>~<random>.tmp[.ext]
WRITER_TAG = re.compile(r"\.(?P<host>[A-Za-z0-9_-]*)~(?P<pid>\d+)~[^.]*\.tmp")


def temp_prefix(path: Path) -> str:
    """The start of a temporary name for `path`: hidden, and naming its writer (host and pid), so
    that the next call can tell a dead writer's leftovers from a live writer's file.

    Example:
        >>> temp_prefix(Path("run/metrics.jsonl")).startswith(".metrics.jsonl.")
        True
    """
    return f".{Path(path).name}.{_host()}~{os.getpid()}~"


@functools.lru_cache(maxsize=1)
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:32]


def clean_stale_temps(folder: Path, recursive: bool = False) -> List[Path]:
    """Delete the temporary files killed writers left in `folder` (and below, `recursive`); return them.

    A `kill -9` skips every `finally`, so the next call into the folder is the first chance to
    tidy up. A file whose writer is alive (or wrote on another host: a shared file system) is
    kept; a name without a writer tag (an older version's) is taken as stale.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / ".metrics.jsonl.myhost~999999999~ab12.tmp").write_bytes(b"")
        >>> _ = (d / ".evolution_x.mp4.ab12.tmp.mp4").write_bytes(b"")
        >>> mine = d / (temp_prefix(d / "summary.csv") + "cd34.tmp"); _ = mine.write_bytes(b"")
        >>> sorted(p.name for p in clean_stale_temps(d))[-1], mine.exists()
        ('.evolution_x.mp4.ab12.tmp.mp4', True)
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    candidates = folder.rglob(".*") if recursive else folder.glob(".*")
    stale = [p for p in candidates if _is_temp(p.name) and p.is_file() and not _writer_alive(p.name)]
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
    return stale


def _is_temp(name: str) -> bool:
    return name.startswith(".") and (name.endswith(TEMP_MARK) or f"{TEMP_MARK}." in name)


def _writer_alive(name: str) -> bool:
    tag = WRITER_TAG.search(name)
    if tag is None:
        return False
    if tag["host"] != _host():
        return True  # another machine's writer: its life cannot be seen from here
    try:
        os.kill(int(tag["pid"]), 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temp file in the same folder + fsync + rename)."""
    path = Path(path)
    with writing(path):
        _atomic_write_bytes(path, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_MARK, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))  # file-name bytes that are no UTF-8 kept


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
