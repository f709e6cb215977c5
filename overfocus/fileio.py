"""Reading and writing files, for every stage: atomic writes, sha256, the default file mode, the
NaN-to-null of JSON (`json_safe`), and bounded reads of what users wrote (YAML, JSON, text).

Writing: atomic means: written to a temporary name in the same folder, flushed, fsynced and renamed into
place, so a crash (even `kill -9`) leaves either the old file or the new one, never half of one.
A write that fails for want of space or permission raises a one-line OverfocusError naming the
path (`writing`); other OSErrors pass unchanged. This module imports only overfocus.errors (and
PyYAML), so data, runs, analysis and render can all use it.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
>>> atomic_write_text(path, "hello")
>>> path.read_text()
'hello'
>>> sha256_file(path)[:12]
'2cf24dba5fb0'

Reading: YAML (and JSON, a subset of it) read from users' files and strings, with bounds. Every YAML overfocus reads (config files, `--set` values, `--data` spec options, a YOLO
data.yaml) goes through `load_yaml` / `read_yaml_file`, which refuse what would make a small
input expensive or crash the parser:

- **aliases** (`*name`): a few lines of anchors and aliases expand to billions of values (an
  "alias bomb"), so an alias is refused at once, before anything is expanded;
- **nesting** deeper than `MAX_DEPTH` (the composer recurses: it would end in RecursionError);
- **size**: a YAML file over `MAX_BYTES` is refused (a JSON object, e.g. a run.json, is read by
  the json module up to `MAX_JSON_BYTES`);
- **encoding**: the bytes must be UTF-8; the message names the line of the first bad byte.

Errors are one-line OverfocusErrors naming `where` (the file, or e.g. "--set optim.lr").

Example:
    >>> load_yaml("optim: {lr: 0.1}", "cfg.yaml")
    {'optim': {'lr': 0.1}}
    >>> load_yaml("a: &x [1, 2]\\nb: *x", "cfg.yaml")
    Traceback (most recent call last):
    ...
    overfocus.errors.OverfocusError: cfg.yaml uses a YAML alias (*x) at line 2: aliases are not read (they can expand without bound); write the value out
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator, List

import yaml

from .errors import OverfocusError, is_write_failure, shorten_text, write_error


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


def json_safe(obj: Any) -> Any:
    """THE NaN-to-null of every JSON file: `obj` with each non-finite float (NaN, inf) replaced by None,
    in dicts, lists and tuples at any depth, so it writes as strict JSON (`allow_nan=False`).

    Example:
        >>> json_safe({"epoch": 3, "train_loss": float("nan"), "curve": [0.5, float("inf")]})
        {'epoch': 3, 'train_loss': None, 'curve': [0.5, None]}
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


# ---- bounded reads of users' YAML, JSON and text ------------------------------------------------
MAX_BYTES = 1 << 20  # 1 MiB of YAML: a configuration or a data.yaml is far smaller
MAX_JSON_BYTES = 64 << 20  # a run.json (epochs, probe ids, skipped files) read as a configuration
MAX_DEPTH = 32  # sections within sections: a configuration needs 3


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and nesting deeper than MAX_DEPTH while composing."""

    where = "the YAML text"

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise OverfocusError(f"{self.where} uses a YAML alias (*{event.anchor}) at line "
                                 f"{event.start_mark.line + 1}: aliases are not read (they can expand "
                                 "without bound); write the value out")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise OverfocusError(f"{self.where} nests deeper than {MAX_DEPTH} levels at line {mark.line + 1}: "
                                     "a configuration has sections of keys, not deep trees")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML/JSON text with aliases and deep nesting refused; invalid YAML is one line too."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses characters YAML does not allow
        loader.where = where
        return loader.get_single_data()
    except OverfocusError:
        raise
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # ValueError: e.g. an integer of 5000 digits
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OverfocusError(f"{where} is not valid YAML/JSON: {first[:120]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_scalar(raw: str, where: str) -> Any:
    """A `--set` value or a spec option read as YAML (numbers, booleans, lists); text that is not
    valid YAML stays the string it is. Aliases and deep nesting are refused like in files.

    Example:
        >>> load_scalar("1e-3", "--set optim.lr"), load_scalar("0.5", "x"), load_scalar("a: b: c", "x")
        ('1e-3', 0.5, 'a: b: c')
    """
    if raw == "":
        return ""
    if len(raw) > MAX_BYTES:
        raise OverfocusError(f"{where}: the value has {len(raw):,} characters, more than the {MAX_BYTES:,} "
                             "overfocus reads")
    try:
        return load_yaml(raw, where)
    except OverfocusError as exc:
        if "not valid YAML" in str(exc):
            return raw
        raise


def read_text_file(path: Path, what: str = "file", limit: int = MAX_BYTES) -> str:
    """The text of a small UTF-8 file; too big, not UTF-8 or unreadable is one line naming it.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "latin1.txt"; _ = p.write_bytes("caf\\xe9".encode("latin-1"))
        >>> read_text_file(p, "label file")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        overfocus.errors.OverfocusError: label file .../latin1.txt is not UTF-8 text (byte 0xe9 at line 1): save it as UTF-8
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise OverfocusError(f"{what} {path} has {size:,} bytes, more than the {limit:,} overfocus reads: "
                                 "is it the right file?")
        data = path.read_bytes()
    except OSError as exc:
        raise OverfocusError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise OverfocusError(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}): "
                             "save it as UTF-8") from None


def read_yaml_file(path: Path, what: str = "file") -> Any:
    """`read_text_file` + `load_yaml`: a bounded YAML/JSON file, every failure one line.

    A JSON object (a run.json) is read by the json module, which is fast and knows no aliases, up
    to MAX_JSON_BYTES; YAML up to MAX_BYTES (the pure-Python composer is what counts aliases).
    """
    where = f"{what} {shorten_text(path, 200)}"
    text = read_text_file(path, what, MAX_JSON_BYTES)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except RecursionError:
            raise OverfocusError(f"{where} nests deeper than Python can read: a configuration has sections of keys, "
                                 "not deep trees") from None
        except json.JSONDecodeError:
            pass  # YAML's flow style also starts with "{": let the YAML reader judge it
    if len(text.encode("utf-8", "surrogateescape")) > MAX_BYTES:
        raise OverfocusError(f"{where} has more than the {MAX_BYTES:,} bytes of YAML overfocus reads: is it the "
                             "right file?")
    return load_yaml(text, where)
