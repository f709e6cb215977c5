"""The audit's report.html in a real headless Chromium, driven over the DevTools protocol.

Checks: no console errors or exceptions, no network request (every URL is file: or data:), every
<img> decoded (naturalWidth > 0), and a full-page screenshot. The DevTools websocket is spoken
with a tiny stdlib client (no selenium, no driver), so the only requirement is /usr/bin/chromium;
without it the test is skipped.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-port=0"]
DEADLINE_S = 20.0

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]


# ---- a minimal websocket client (RFC 6455, client side: masked text frames) -----------------------------
class WebSocket:
    def __init__(self, host: str, port: int, path: str, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return bytes(data)

    def recv(self) -> str:
        message = bytearray()
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else struct.unpack(">Q", self._exact(8))[0] \
                if n == 127 else n
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode == 0x9:  # ping -> pong (masked, as every client frame must be)
                self.sock.sendall(bytes([0x8A, 0x80 | len(data)]) + b"\0\0\0\0" + data)
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """Commands and events of one page session (flattened target attachment)."""

    def __init__(self, ws: WebSocket, deadline: float):
        self.ws, self.deadline, self.next_id = ws, deadline, 0
        self.events: List[Dict[str, Any]] = []
        self.session: Optional[str] = None

    def _next(self) -> Dict[str, Any]:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the browser did not answer in time")
        return json.loads(self.ws.recv())

    def call(self, method: str, params: Optional[dict] = None, browser: bool = False) -> Dict[str, Any]:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = self._next()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> Dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._next()
            self.events.append(event)
            if event.get("method") == method:
                return event


def devtools_endpoint(profile: Path, proc: subprocess.Popen, deadline: float) -> tuple:
    """(port, browser path) from DevToolsActivePort, which Chromium writes once it listens."""
    marker = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        if marker.is_file():
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return int(lines[0]), lines[1]
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


@contextlib.contextmanager
def devtools_session(profile: Path, deadline: float) -> Iterator[DevTools]:
    """A headless Chromium of its own and a DevTools client on it; the browser is ended afterwards."""
    # a session of its own, so that the browser's helper processes can be ended with it
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port, path = devtools_endpoint(profile, proc, deadline)
        ws = WebSocket("127.0.0.1", port, path, timeout=max(1.0, deadline - time.monotonic()))
        try:
            cdp = DevTools(ws, deadline)
            yield cdp
            close_browser(cdp)
        finally:
            ws.close()
    finally:
        stop(proc)


def load_in_chromium(html: Path, profile: Path, screenshot: Path) -> Dict[str, Any]:
    """Open `html`, collect console/network events, image sizes, and a full-page screenshot."""
    with devtools_session(profile, time.monotonic() + DEADLINE_S) as cdp:
        return drive(cdp, html, screenshot)


def close_browser(cdp: DevTools) -> None:
    try:
        cdp.call("Browser.close", browser=True)
    except (ConnectionError, OSError, TimeoutError):
        pass  # the browser may drop the socket before it answers


def stop(proc: subprocess.Popen) -> None:
    """End the browser we started (its process group), politely first."""
    if proc.poll() is None:
        try:
            proc.wait(timeout=3)  # after Browser.close it exits by itself
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def drive(cdp: DevTools, html: Path, screenshot: Path) -> Dict[str, Any]:
    target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", {"width": 1200, "height": 900, "deviceScaleFactor": 1,
                                                    "mobile": False})
    cdp.events.clear()
    cdp.call("Page.navigate", {"url": html.resolve().as_uri()})
    cdp.wait_for("Page.loadEventFired")
    images = cdp.call("Runtime.evaluate", {"expression": "Array.from(document.images).map(i => "
                                           "[i.complete, i.naturalWidth, i.naturalHeight, i.alt])",
                                           "returnByValue": True})["result"]["value"]
    title = cdp.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True})["result"]["value"]
    size = cdp.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    return {"events": list(cdp.events), "images": images, "title": title, "height": size["height"]}


# ---- what is checked ----------------------------------------------------------------------------------
def console_errors(events: List[Dict[str, Any]]) -> List[str]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(str(p.get("args")))
        elif e.get("method") == "Runtime.exceptionThrown":
            out.append(str(p.get("exceptionDetails")))
        elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.append(p["entry"].get("text", ""))
    return out


def requested_urls(events: List[Dict[str, Any]]) -> List[str]:
    return [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]


@pytest.fixture(scope="module")
def report_html(tiny_run, tmp_path_factory) -> Path:
    """A real audit of the tiny run (copied, with a small analysis summary so curves are drawn)."""
    from overfocus.audit.inputs import AuditOptions
    from overfocus.audit.flow import audit, write_outputs

    run = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("audit*", "analysis"))
    rows = ["epoch,method,metric,mean,ci_low,ci_high,n"] + [
        f"{e},grad_cam,area_ratio,{0.3 - 0.1 * e:.2f},{0.25 - 0.1 * e:.2f},{0.35 - 0.1 * e:.2f},24" for e in range(3)]
    (run / "analysis").mkdir()
    (run / "analysis" / "summary.csv").write_text("\n".join(rows) + "\n")
    result = audit(AuditOptions(str(run), limit=24, examples=3, progress=False))
    return write_outputs(result, run / "audit")[1]


def test_report_renders_offline_in_chromium(report_html, tmp_path):
    shot = tmp_path / "report.png"
    seen = load_in_chromium(report_html, tmp_path / "profile", shot)
    assert console_errors(seen["events"]) == []
    urls = requested_urls(seen["events"])
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    assert len(seen["images"]) >= 7  # 3 best + 3 worst examples x 3 panels would be 18; at least some + curves
    assert all(complete and width > 0 and height > 0 for complete, width, height, _ in seen["images"]), seen["images"]
    assert seen["title"].startswith("overfocus audit")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1200 and height > 900  # the whole page, taller than one screen
    if os.environ.get("OVERFOCUS_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["OVERFOCUS_KEEP_SCREENSHOT"])


def test_network_access_would_be_seen(tmp_path):
    """The checks can fail: a page with an external image shows up as a request and an error."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>x</title></head><body>'
                    '<img src="http://example.invalid/a.png"><script>console.error("boom")</script></body></html>')
    seen = load_in_chromium(page, tmp_path / "profile", tmp_path / "bad.png")
    assert any(u.startswith("http://example.invalid") for u in requested_urls(seen["events"]))
    assert any("boom" in e for e in console_errors(seen["events"]))
    assert any(width == 0 for _, width, _, _ in seen["images"])
