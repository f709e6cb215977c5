"""`overfocus data fetch` against a tiny .tgz served from 127.0.0.1 by a thread of the test itself.

Nothing here touches the internet: the server is http.server on a free local port.
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from overfocus.cli import main
from overfocus.data import open_dataset
from overfocus.data.fetch import KNOWN, download_path, fetch
from overfocus.errors import OverfocusError


def png_bytes(value: int) -> bytes:
    ok, data = cv2.imencode(".png", np.full((20, 30, 3), value, np.uint8))
    assert ok
    return data.tobytes()


def make_tgz(members: dict, links: dict = None) -> bytes:
    """A gzip tar of {name: bytes}, plus symlinks {name: target}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def imagenette_like() -> bytes:
    """The layout of imagenette2-160.tgz: one top folder with train/ and val/ class folders."""
    members = {}
    for split, n in (("train", 3), ("val", 2)):
        for cls in ("n01440764", "n02102040"):
            for i in range(n):
                members[f"imagenette2-160/{split}/{cls}/{cls}_{i}.JPEG.png"] = png_bytes(30 * i)
    members["imagenette2-160/noisy_imagenette.csv"] = b"path,label\n"
    return make_tgz(members)


class Server:
    """What the handler serves and what it saw; `mode`: range | ignore-range | cut."""

    def __init__(self):
        self.payload, self.mode, self.cut_at = b"", "range", 0
        self.requests, self.bytes_sent = [], 0


@pytest.fixture
def server():
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.requests.append((self.path, self.headers.get("Range")))
            if self.path.endswith("/missing.tgz"):
                self.send_error(404)
                return
            if self.path.endswith("/loop.tgz"):  # a redirect to itself, for ever
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, start = state.payload, 0
            match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if match and state.mode != "ignore-range":
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            sent = body[start:state.cut_at] if state.mode == "cut" else body[start:]
            self.wfile.write(sent)
            state.bytes_sent += len(sent)
            if state.mode == "cut":
                self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/files/imagenette2-160.tgz"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def part_path(cache: Path, url: str) -> Path:
    archive = download_path(cache, url)
    return archive.with_name(archive.name + ".part")


def quiet_fetch(name, cache, url, sha256=None):
    messages = []
    return fetch(name, str(cache), url, sha256, show_progress=False, log=messages.append), messages


def test_fetch_unpacks_and_loads_as_a_folder_dataset(server, tmp_path):
    server.payload = imagenette_like()
    folder, messages = quiet_fetch("imagenette", tmp_path / "cache", server.url)
    assert folder == tmp_path / "cache" / "imagenette"
    assert sorted(p.name for p in folder.iterdir()) == ["noisy_imagenette.csv", "train", "val"]
    assert hashlib.sha256(server.payload).hexdigest() in messages[0]  # no published hash: printed
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith((".part", ".tmp", ".tgz"))]
    assert leftovers == []
    train = open_dataset(f"folder:{folder}", "train", 16)
    test = open_dataset(f"folder:{folder}", "test", 16)
    assert (len(train), len(test)) == (6, 4) and train.classes == ["n01440764", "n02102040"]
    again, messages = quiet_fetch("imagenette", tmp_path / "cache", server.url)
    assert again == folder and "already" in messages[0] and len(server.requests) == 1


def test_sha256_verified_or_mismatch_deletes(server, tmp_path):
    server.payload = imagenette_like()
    good = hashlib.sha256(server.payload).hexdigest()
    folder, messages = quiet_fetch("a", tmp_path, server.url, good.upper())
    assert folder.is_dir() and "verified" in messages[0]
    with pytest.raises(OverfocusError, match="sha256 .*expected " + "0" * 64):
        quiet_fetch("b", tmp_path, server.url, "0" * 64)
    assert not (tmp_path / "b").exists()
    assert list((tmp_path / "downloads").iterdir()) == []  # the bad download is gone


def test_resume_from_a_part_file_asks_for_the_rest(server, tmp_path):
    server.payload = imagenette_like()
    half = len(server.payload) // 2
    part = part_path(tmp_path, server.url)
    part.parent.mkdir()
    part.write_bytes(server.payload[:half])
    folder, _ = quiet_fetch("n", tmp_path, server.url, hashlib.sha256(server.payload).hexdigest())
    assert server.requests == [("/files/imagenette2-160.tgz", f"bytes={half}-")]
    assert server.bytes_sent == len(server.payload) - half
    assert (folder / "train" / "n01440764").is_dir()


def test_interrupted_download_keeps_the_part_and_resumes(server, tmp_path):
    server.payload = imagenette_like()
    server.mode, server.cut_at = "cut", len(server.payload) // 3
    with pytest.raises(OverfocusError, match="run the same command again"):
        quiet_fetch("n", tmp_path, server.url)
    part = part_path(tmp_path, server.url)
    assert part.read_bytes() == server.payload[:server.cut_at]
    assert not (tmp_path / "n").exists()
    server.mode = "range"
    folder, _ = quiet_fetch("n", tmp_path, server.url, hashlib.sha256(server.payload).hexdigest())
    assert server.requests[-1][1] == f"bytes={server.cut_at}-" and folder.is_dir() and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.payload = imagenette_like()
    server.mode = "ignore-range"
    part_path(tmp_path, server.url).parent.mkdir()
    part_path(tmp_path, server.url).write_bytes(b"stale bytes")
    folder, _ = quiet_fetch("n", tmp_path, server.url, hashlib.sha256(server.payload).hexdigest())
    assert folder.is_dir()


def test_complete_part_file_answered_416(server, tmp_path):
    server.payload = imagenette_like()
    part_path(tmp_path, server.url).parent.mkdir()
    part_path(tmp_path, server.url).write_bytes(server.payload)
    folder, _ = quiet_fetch("n", tmp_path, server.url, hashlib.sha256(server.payload).hexdigest())
    assert folder.is_dir() and server.bytes_sent == 0


def test_unsafe_archive_is_refused(server, tmp_path):
    server.payload = make_tgz({"top/ok.txt": b"fine", "top/../../evil.txt": b"boom"})
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(OverfocusError, match="outside"):
        quiet_fetch("bad", cache, server.url)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not (cache / "bad").exists() and not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    server.payload = make_tgz({"/etc/overfocus-test": b"x"})
    with pytest.raises(OverfocusError, match="outside"):
        quiet_fetch("bad2", cache, server.url)


def test_links_are_skipped(server, tmp_path):
    server.payload = make_tgz({"d/a.txt": b"a"}, links={"d/passwd": "/etc/passwd"})
    folder, messages = quiet_fetch("links", tmp_path, server.url)
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt"]
    assert any("skipped 1 link" in m for m in messages)


def test_not_an_archive_and_http_errors(server, tmp_path):
    server.payload = b"this is not a tar file at all"
    with pytest.raises(OverfocusError, match="not a tar archive"):
        quiet_fetch("junk", tmp_path, server.url)
    assert not (tmp_path / "junk").exists()
    with pytest.raises(OverfocusError, match="HTTP 404"):
        quiet_fetch("gone", tmp_path, server.url.replace("imagenette2-160.tgz", "missing.tgz"))


@pytest.mark.parametrize("args, message", [
    (("nosuch", None, None), "unknown dataset 'nosuch'"),
    (("../x", "http://127.0.0.1:9/x.tgz", None), "dataset name"),
    (("x", "ftp://example.org/x.tgz", None), "only http"),
    (("imagenette", None, "abc"), "not a sha256"),
])
def test_bad_arguments(tmp_path, args, message):
    with pytest.raises(OverfocusError, match=message):
        fetch(args[0], str(tmp_path), args[1], args[2], show_progress=False, log=lambda m: None)


def test_known_sources_are_recorded():
    assert KNOWN["imagenette"].url == "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
    assert KNOWN["imagewoof"].url == "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-160.tgz"
    assert all(s.kind == "folder" for s in KNOWN.values())


def test_cli_fetch_uses_overfocus_cache_and_info(server, tmp_path, monkeypatch, capsys):
    server.payload = imagenette_like()
    monkeypatch.setenv("OVERFOCUS_CACHE", str(tmp_path / "env-cache"))
    assert main(["data", "fetch", "imagenette", "--url", server.url, "--quiet"]) == 0
    folder = tmp_path / "env-cache" / "imagenette"
    out = capsys.readouterr().out
    assert f"--data folder:{folder}" in out and "sha256 of imagenette:" in out
    assert main(["data", "info", f"folder:{folder}"]) == 0
    out = capsys.readouterr().out
    assert "classes:   2 (n01440764, n02102040)" in out and "boxes:     no" in out
    assert "train:     6 images" in out and "test:      4 images" in out
    assert main(["data", "info", f"folder:{tmp_path / 'nowhere'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "fetch", "nosuch", "--cache", str(tmp_path)]) == 2


def test_cached_archive_of_the_same_url_is_checked_and_fetched_again(server, tmp_path):
    server.payload = imagenette_like()
    good = hashlib.sha256(server.payload).hexdigest()
    archive = download_path(tmp_path, server.url)
    archive.parent.mkdir()
    archive.write_bytes(make_tgz({"top/evil.txt": b"left by an earlier fetch"}))
    folder, messages = quiet_fetch("n", tmp_path, server.url, good)
    assert len(server.requests) == 1 and any("downloading n again" in m for m in messages)
    assert (folder / "train" / "n01440764").is_dir() and not (folder / "evil.txt").exists()
    archive.write_bytes(server.payload)  # a complete, matching leftover is reused without a request
    folder, messages = quiet_fetch("m", tmp_path, server.url, good)
    assert len(server.requests) == 1 and any("verified" in m for m in messages) and folder.is_dir()


def test_leftover_of_another_url_with_the_same_file_name_is_not_used(server, tmp_path):
    server.payload = imagenette_like()
    other = server.url.replace("/files/", "/elsewhere/")
    stale = download_path(tmp_path, other)
    stale.parent.mkdir()
    stale.write_bytes(make_tgz({"top/wrong.txt": b"another dataset"}))
    (tmp_path / "downloads" / "imagenette2-160.tgz").write_bytes(stale.read_bytes())  # the old unkeyed name
    folder, _ = quiet_fetch("n", tmp_path, server.url)
    assert len(server.requests) == 1 and (folder / "train").is_dir() and not (folder / "wrong.txt").exists()
    assert stale.is_file()  # another URL's download is left alone


def test_cli_cached_archive_failing_sha256_gives_one_line(server, tmp_path, capsys):
    server.payload = imagenette_like()
    archive = download_path(tmp_path, server.url)
    archive.parent.mkdir()
    archive.write_bytes(server.payload)
    code = main(["data", "fetch", "n", "--url", server.url, "--sha256", "1" * 64, "--cache", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "expected " + "1" * 64 in err[0]
    assert len(server.requests) == 1 and not (tmp_path / "n").exists()


def run_fetch_cli(args, capsys) -> tuple:
    code = main(["data", "fetch", *map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


@pytest.mark.parametrize("payload, message", [
    (b"", "the server sent an empty file"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "the download is a web page, not a tar archive"),
    (b"PK\x03\x04" + bytes(100), "the download is a zip archive"),
    (b"plain words, no archive", "the download is a text file"),
])
def test_empty_or_non_archive_download_is_refused_and_deleted(server, tmp_path, capsys, payload, message):
    server.payload = payload
    code, err = run_fetch_cli(["junk", "--url", server.url, "--cache", tmp_path], capsys)
    assert code == 2 and len(err) == 1 and message in err[0] and "check the URL" in err[0]
    assert not (tmp_path / "junk").exists()
    assert not list((tmp_path / "downloads").iterdir())  # nothing left to be taken for a download later


def test_archive_without_files_is_refused(server, tmp_path, capsys):
    server.payload = make_tgz({}, links={"d/passwd": "/etc/passwd"})
    code, err = run_fetch_cli(["hollow", "--url", server.url, "--cache", tmp_path], capsys)
    assert code == 2 and len(err) == 1 and "holds no files (only 1 links or special files)" in err[0]
    assert not (tmp_path / "hollow").exists() and not list(tmp_path.glob(".hollow*"))


def test_redirect_loop_is_named_in_one_line(server, tmp_path, capsys):
    code, err = run_fetch_cli(["loop", "--url", server.url.replace("imagenette2-160.tgz", "loop.tgz"),
                               "--cache", tmp_path], capsys)
    assert code == 2 and len(err) == 1 and "redirects in a loop (HTTP 302" in err[0]


def test_http_error_is_one_line(server, tmp_path, capsys):
    code, err = run_fetch_cli(["gone", "--url", server.url.replace("imagenette2-160.tgz", "missing.tgz"),
                               "--cache", tmp_path], capsys)
    assert code == 2 and len(err) == 1 and "HTTP 404" in err[0]


def test_cache_that_is_a_file_or_read_only_is_refused_before_downloading(server, tmp_path, capsys, monkeypatch):
    import errno
    import os

    server.payload = imagenette_like()
    (tmp_path / "cache.txt").write_text("not a folder")
    code, err = run_fetch_cli(["n", "--url", server.url, "--cache", tmp_path / "cache.txt"], capsys)
    assert code == 2 and len(err) == 1 and "is an existing file" in err[0] and "--cache DIR" in err[0]
    code, err = run_fetch_cli(["n", "--url", server.url, "--cache", tmp_path / "cache.txt" / "sub"], capsys)
    assert code == 2 and len(err) == 1 and "is an existing file" in err[0]

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr("overfocus.fileio.tempfile.mkstemp", read_only)
    code, err = run_fetch_cli(["n", "--url", server.url, "--cache", tmp_path / "ro"], capsys)
    assert code == 2 and len(err) == 1 and "read-only" in err[0] and "--cache DIR" in err[0]
    assert server.requests == []  # refused before any download


def test_disk_full_while_downloading_names_the_file(server, tmp_path, capsys, monkeypatch):
    import builtins
    import errno

    server.payload = imagenette_like()
    real_open = builtins.open

    def full_open(path, mode="r", *a, **k):
        handle = real_open(path, mode, *a, **k)
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            def no_space(_data):
                raise OSError(errno.ENOSPC, "No space left on device")
            handle.write = no_space
        return handle
    monkeypatch.setattr(builtins, "open", full_open)
    code, err = run_fetch_cli(["n", "--url", server.url, "--cache", tmp_path], capsys)
    assert code == 2 and len(err) == 1 and ".part" in err[0] and "the disk is full" in err[0]


def test_fetched_folder_without_a_test_split_says_how_to_fix_it(server, tmp_path, capsys):
    server.payload = make_tgz({"few/a/1.png": png_bytes(10), "few/b/2.png": png_bytes(20)})
    folder, _ = quiet_fetch("few", tmp_path, server.url)
    with pytest.raises(OverfocusError, match=r"none of the 2 images of .*few falls in the test split.*test_fraction"):
        open_dataset(f"folder:{folder}", "test", 32)
    assert main(["data", "info", f"folder:{folder}?test_fraction=0.9"]) == 0
