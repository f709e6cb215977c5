"""YAML (and JSON, a subset of it) read from users' files and strings, with bounds.

Every YAML overfocus reads (config files, `--set` values, `--data` spec options, a YOLO
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

import json
from pathlib import Path
from typing import Any

import yaml

from .errors import OverfocusError, shorten_text

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
