"""Download and unpack a dataset archive into a local cache, for users who are online.

`overfocus data fetch imagenette` downloads the archive with the standard library alone
(urllib): into `<cache>/downloads/<url key>-<file>.part` (see `download_path`), resumed with an
HTTP Range request when a `.part` is already there, then checked against its sha256 (a mismatch
deletes the file; a complete archive left by an earlier fetch of the same URL is checked the same
way and downloaded again when it does not match), unpacked into a
temporary folder (refusing any member that would land outside it; links and devices are skipped)
and renamed into place as `<cache>/<name>`, so a half-done fetch never looks finished.
Refused with one line each: a cache path that is a file or cannot be written (checked before
any download), an empty download or one that is no tar archive (deleted; the message says what it
looks like: a web page, a zip, text), an archive holding no files, a redirect loop.

The cache is `--cache DIR`, else `$OVERFOCUS_CACHE`, else `~/.cache/overfocus`. Nothing here runs
at import time and nothing else in overfocus touches the network.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import OverfocusError, is_write_failure, shorten_text, write_error
from ..fileio import check_writable, make_dirs, sha256_file, writing
from ..progress import progress
from ..registry import did_you_mean

CHUNK = 1 << 16


@dataclass(frozen=True)
class DownloadSource:
    """Where a named dataset comes from. sha256 "" = no published checksum is known."""

    url: str
    sha256: str = ""
    kind: str = "folder"  # the --data kind that reads the unpacked folder
    description: str = ""


# fast.ai publishes these archives without checksums; the computed sha256 is printed so that a
# user can pin it with --sha256 (no hash is made up here).
KNOWN = {
    "imagenette": DownloadSource("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
                         description="10 easy ImageNet classes, shorter side 160 px, train/ + val/ (fast.ai)"),
    "imagewoof": DownloadSource("https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-160.tgz",
                        description="10 dog breeds of ImageNet, shorter side 160 px, train/ + val/ (fast.ai)"),
}


def cache_dir(cache: Optional[str] = None) -> Path:
    """The cache folder: the argument, else $OVERFOCUS_CACHE, else ~/.cache/overfocus.

    Example:
        >>> cache_dir("/tmp/c")
        PosixPath('/tmp/c')
    """
    chosen = cache or os.environ.get("OVERFOCUS_CACHE") or "~/.cache/overfocus"
    return Path(chosen).expanduser()


def resolve_source(name: str, url: Optional[str] = None, sha256: Optional[str] = None) -> DownloadSource:
    """The DownloadSource of a known name, or of `--url` (with an optional `--sha256`) for any name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise OverfocusError(f"dataset name {name!r}: use letters, digits, '.', '_' or '-' (it names the cache folder)")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise OverfocusError(f"--sha256 {sha256!r} is not a sha256: give the 64 hexadecimal digits")
    if url:
        if not url.startswith(("http://", "https://")):
            raise OverfocusError(f"--url {url!r}: only http:// and https:// addresses can be fetched")
        known = KNOWN.get(name, DownloadSource(url))
        return DownloadSource(url, (sha256 or "").lower(), known.kind, known.description)
    if name not in KNOWN:
        raise OverfocusError(f"unknown dataset {name!r}{did_you_mean(name, KNOWN)}: fetch one of {', '.join(sorted(KNOWN))}, "
                             "or give --url URL (and --sha256 HEX) for another archive")
    source = KNOWN[name]
    return DownloadSource(source.url, (sha256 or source.sha256).lower(), source.kind, source.description)


def fetch(name: str, cache: Optional[str] = None, url: Optional[str] = None, sha256: Optional[str] = None,
          show_progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Download (resuming), verify and unpack a dataset into the cache; return its folder.

    Example:
        >>> fetch("imagenette")  # doctest: +SKIP
        PosixPath('/home/me/.cache/overfocus/imagenette')
    """
    source = resolve_source(name, url, sha256)
    target = cache_dir(cache) / name
    if target.is_dir():
        log(f"{name} is already in {target} (delete that folder to fetch it again)")
        return target
    check_cache(target.parent)
    archive = download_path(target.parent, source.url)
    if archive.is_file() and not _cached_archive_matches(archive, source.sha256, name, log):
        archive.unlink()  # it fails the checksum asked for: fetch it again
    if not archive.is_file():
        part = archive.with_name(archive.name + ".part")
        download(source.url, part, show_progress, name)
        check_archive(part, source.url)
        check_sha256(part, source.sha256, name, log)
        os.replace(part, archive)  # only a verified, complete download gets the final name
    safe_extract(archive, target, log)
    archive.unlink()
    return target


def check_cache(cache: Path) -> None:
    """The cache must be a folder that can be written (it is created when missing): refused at
    once otherwise, naming it and how to choose another."""
    try:
        check_writable(cache)
    except OverfocusError as exc:
        raise OverfocusError(f"{exc}; or pass --cache DIR (or set $OVERFOCUS_CACHE) to use another cache folder") \
            from None


def check_archive(part: Path, url: str) -> None:
    """A download that is empty or no tar archive is deleted and refused, saying what it is."""
    size = part.stat().st_size
    problem = None if size else "the server sent an empty file"
    if size and not tarfile.is_tarfile(part):
        with open(part, "rb") as fh:
            problem = f"the download is {_looks_like(fh.read(512))}, not a tar archive"
    if problem:
        part.unlink()
        raise OverfocusError(f"{problem} from {shorten_text(url)}: check the URL (it must name a .tar, .tgz, .tar.gz, "
                             ".tar.bz2 or .tar.xz file); the download was deleted")


def _looks_like(head: bytes) -> str:
    """What the first bytes of a file suggest it is, in words."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (unpack it yourself and point --data at the folder)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return "a web page"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file holding no tar archive"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "a binary file of an unknown kind"


def download_path(cache: Path, url: str) -> Path:
    """Where the archive of `url` is downloaded: `<cache>/downloads/<url key>-<file name>`.

    The key (16 hex digits of the URL's sha256) keeps two URLs with the same file name apart, so
    a leftover of one is never taken for the other.

    Example:
        >>> download_path(Path("/c"), "https://example.org/a/data.tgz").name
        '68c411f297c547ca-data.tgz'
    """
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(cache) / "downloads" / f"{key}-{archive_name(url)}"


def _cached_archive_matches(archive: Path, expected: str, name: str, log: Callable[[str], None]) -> bool:
    """A complete earlier download of the same URL: checked against `expected` like a new one."""
    actual = sha256_file(archive)
    if expected and actual != expected.lower():
        log(f"the cached download {archive} has sha256 {actual}, not {expected}: downloading {name} again")
        return False
    log(f"using the cached download {archive} (sha256 {actual}"
        f"{', verified' if expected else ''})")
    return True


def archive_name(url: str) -> str:
    """The file name of a URL's path (query dropped), safe to use in the cache."""
    base = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return safe or "download"


def download(url: str, part: Path, show_progress: bool = True, label: str = "") -> None:
    """Download `url` into `part`, continuing an existing `.part` with an HTTP Range request."""
    make_dirs(part.parent)
    start = part.stat().st_size if part.is_file() else 0
    response = _open(url, start)
    if response is None:  # 416: the .part already holds the whole file
        return
    with response:
        start = _resume_offset(response, start)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        _copy(response, part, start, total, show_progress, label or url)
    if total is not None and part.stat().st_size != total:
        raise OverfocusError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes: "
                             "run the same command again to resume")


def _open(url: str, start: int):
    """urlopen with a Range header when resuming; None when the server says nothing is left."""
    headers = {"User-Agent": "overfocus-fetch"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start and _range_total(exc.headers.get("Content-Range", "")) == start:
            return None
        if 300 <= exc.code < 400:  # urllib follows redirects; one that reaches here loops or goes nowhere
            raise OverfocusError(f"download of {url} failed: the server redirects in a loop (HTTP {exc.code}, "
                                 "more than 10 redirects): check the URL or fetch it in a browser") from None
        reason = str(exc.reason).splitlines()[0] if str(exc.reason).strip() else ""
        raise OverfocusError(f"download of {url} failed: HTTP {exc.code} {reason}".rstrip()) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OverfocusError(f"cannot download {url} ({reason}): check the address and your connection, "
                             "then run the same command again (it resumes)") from None


def _range_total(content_range: str) -> Optional[int]:
    """The total size of a `Content-Range: bytes a-b/TOTAL` (or `bytes */TOTAL`) header."""
    match = re.search(r"/(\d+)\s*$", content_range or "")
    return int(match.group(1)) if match else None


def _resume_offset(response, start: int) -> int:
    """Where the body starts: `start` for a matching 206 answer, 0 when the server sent it all."""
    if not start or response.status != 206:
        return 0  # no Range asked for, or the server ignored it: write the file from the start
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != start:
        raise OverfocusError(f"the server answered the resume request with range "
                             f"{response.headers.get('Content-Range')!r}, not from byte {start}: "
                             "delete the .part file and fetch again")
    return start


def _copy(response, part: Path, start: int, total: Optional[int], show_progress: bool, label: str) -> None:
    """Stream the body into `part` (appending when resuming), with a progress bar."""
    bar = progress(None, enabled=show_progress, total=total, initial=start, unit="B", unit_scale=True,
                   unit_divisor=1024, desc=label)
    try:
        with open(part, "ab" if start else "wb") as fh:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                fh.write(chunk)
                bar.update(len(chunk))
    except OSError as exc:
        if is_write_failure(exc):  # the cache, not the connection: disk full, read-only
            raise write_error(part, exc) from None
        raise OverfocusError(f"download interrupted ({exc}): run the same command again to resume") from None
    except http.client.HTTPException as exc:  # connection lost: .part keeps what came
        raise OverfocusError(f"download interrupted ({exc}): run the same command again to resume") from None
    finally:
        bar.close()


def check_sha256(path: Path, expected: str, name: str, log: Callable[[str], None] = print) -> str:
    """Compare the file's sha256 with `expected`; a mismatch deletes the file and is an error."""
    actual = sha256_file(path)
    if not expected:
        log(f"sha256 of {name}: {actual} (no published checksum is known: pass --sha256 {actual} "
            "to check it on later fetches)")
    elif actual != expected.lower():
        path.unlink()
        raise OverfocusError(f"sha256 of the download of {name} is {actual}, expected {expected}: the file "
                             "was corrupt or replaced and has been deleted; check the URL and hash")
    else:
        log(f"sha256 of {name} verified: {actual}")
    return actual


def safe_extract(archive: Path, target: Path, log: Callable[[str], None] = print) -> None:
    """Unpack a tar archive (any compression) into `target`, atomically and safely.

    Members are written into a temporary folder beside `target`; a member whose path would land
    outside it is an error; links and devices are skipped (counted). A single top-level folder
    becomes `target` itself (imagenette2-160/train -> <cache>/imagenette/train).
    """
    make_dirs(target.parent)
    with writing(target.parent):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        skipped = _extract_all(archive, tmp)
        if not any(p.is_file() for p in tmp.rglob("*")):
            raise OverfocusError(f"the archive {archive.name} holds no files"
                                 f"{f' (only {skipped} links or special files)' if skipped else ''}: check the URL; "
                                 f"delete {archive} to fetch it again")
        if skipped:
            log(f"skipped {skipped} link(s) or special file(s) of {archive.name}")
        entries = list(tmp.iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        os.replace(top, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract_all(archive: Path, dest: Path) -> int:
    try:
        with tarfile.open(archive, "r:*") as tar:
            return sum(_extract_member(tar, member, dest) for member in tar)
    except OSError as exc:
        if is_write_failure(exc):
            raise write_error(Path(exc.filename or dest), exc) from None
        raise OverfocusError(f"cannot unpack {archive} ({exc}): if it is damaged, delete it and fetch again") from None
    except (tarfile.TarError, EOFError) as exc:
        raise OverfocusError(f"cannot unpack {archive} ({exc}): if it is damaged, delete it and fetch again") from None


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> int:
    """Write one member under `dest`; return 1 when it was skipped (link, device), else 0."""
    root = dest.resolve()
    path = (root / member.name).resolve()
    if member.name.startswith(("/", "\\")) or (path != root and root not in path.parents):
        raise OverfocusError(f"archive member {member.name!r} would be written outside {dest}: "
                             "refusing to unpack an unsafe archive")
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return 0
    if not member.isfile():
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with tar.extractfile(member) as src, open(path, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
    return 0
