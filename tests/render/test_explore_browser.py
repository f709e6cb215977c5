"""The explorer page in a real headless Chromium, driven over the DevTools protocol (the stdlib
client of test_report_browser.py): the slider moved with the mouse from the first to the last
epoch changes every shown map and moves the curve cursors; an arrow key moves one epoch; a click
on a curve seeks; the layouts and filters work; no console error, no network request.

The size and speed of the page are reported (printed with -s, and written to
$OVERFOCUS_EXPLORER_TIMINGS when set), not asserted against a clock.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from pathlib import Path

import pytest

from test_report_browser import (CHROMIUM, DevTools, console_errors, devtools_session,  # noqa: E402
                                 requested_urls)
from test_render import write_fake_run  # noqa: E402  (the contract-C fixture generator)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")]
DEADLINE_S = 40.0


@contextlib.contextmanager
def browser_page(html: Path, profile: Path, width: int = 1400, height: int = 1000):
    """A DevTools session on `html`, loaded; the browser is ended afterwards."""
    with devtools_session(profile, time.monotonic() + DEADLINE_S) as cdp:
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        cdp.session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                               browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                        "mobile": False})
        cdp.events.clear()
        cdp.call("Page.navigate", {"url": html.resolve().as_uri()})
        cdp.wait_for("Page.loadEventFired")
        wait_until(cdp, "document.body.getAttribute('data-ready') === '1'")
        yield cdp


def js(cdp: DevTools, expression: str):
    reply = cdp.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
    if "exceptionDetails" in reply:
        raise AssertionError(f"{expression}: {reply['exceptionDetails']}")
    return reply["result"].get("value")


def wait_until(cdp: DevTools, expression: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not js(cdp, expression):
        if time.monotonic() > end:
            raise AssertionError(f"the page never satisfied {expression}")
        time.sleep(0.05)


def click(cdp: DevTools, x: float, y: float) -> None:
    for kind in ("mousePressed", "mouseReleased"):
        cdp.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})


def press(cdp: DevTools, key: str, code: int) -> None:
    for kind in ("rawKeyDown", "keyUp"):
        cdp.call("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code})


MAPS = "Array.from(document.querySelectorAll('#images canvas')).filter(c => !c.closest('.cell').hidden)"
SHOWN_MAPS = f"{MAPS}.map(c => c.toDataURL())"
CURSORS = "Array.from(document.querySelectorAll('#curves .cursor')).map(l => +l.getAttribute('x1'))"
EPOCH = "+document.getElementById('epoch-value').textContent"


def slider_end(cdp: DevTools, which: str) -> tuple:
    box = js(cdp, "(() => { const r = document.getElementById('slider').getBoundingClientRect(); "
                  "return [r.left, r.right, r.top + r.height / 2]; })()")
    return (box[0] + 2 if which == "first" else box[1] - 2), box[2]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from overfocus.render.explore import explore

    root = tmp_path_factory.mktemp("explore")
    a = write_fake_run(root / "vanilla", epochs=range(6))
    b = write_fake_run(root / "sgdrop", epochs=range(6), seed=1)
    return {"one": explore([a]), "two": explore([a, b])}


def test_slider_moves_every_map_and_the_cursor(pages, tmp_path):
    with browser_page(pages["two"], tmp_path / "profile") as cdp:
        epochs = js(cdp, "window.overfocusExplorer.epochs")
        assert js(cdp, EPOCH) == epochs[0]
        before, cursors_before = js(cdp, SHOWN_MAPS), js(cdp, CURSORS)
        assert len(before) == 8 * 2 * 2  # 8 probe images x 2 runs x 2 methods
        click(cdp, *slider_end(cdp, "last"))
        assert js(cdp, EPOCH) == epochs[-1]
        after, cursors_after = js(cdp, SHOWN_MAPS), js(cdp, CURSORS)
        assert all(x != y for x, y in zip(before, after)), "a shown map did not change with the epoch"
        assert cursors_after and all(y > x for x, y in zip(cursors_before, cursors_after))
        press(cdp, "ArrowLeft", 37)  # the slider has the focus after the click
        assert js(cdp, EPOCH) == epochs[-2]
        js(cdp, "document.activeElement.blur()")
        press(cdp, "ArrowLeft", 37)  # the page's own key handler, focus elsewhere
        assert js(cdp, EPOCH) == epochs[-3]
        press(cdp, "ArrowRight", 39)
        assert js(cdp, EPOCH) == epochs[-2]
        shot = cdp.call("Page.captureScreenshot", {"format": "png"})
        (tmp_path / "explorer.png").write_bytes(base64.b64decode(shot["data"]))
        if os.environ.get("OVERFOCUS_KEEP_SCREENSHOT"):
            (Path(os.environ["OVERFOCUS_KEEP_SCREENSHOT"])).write_bytes(base64.b64decode(shot["data"]))
        assert console_errors(cdp.events) == []
        urls = requested_urls(cdp.events)
        assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls


def test_click_on_a_curve_seeks_and_layouts_draw(pages, tmp_path):
    with browser_page(pages["two"], tmp_path / "profile") as cdp:
        js(cdp, "document.getElementById('curves').scrollIntoView()")
        x, y = js(cdp, "(() => { const s = document.querySelector('#curves svg'); const r = s.getBoundingClientRect();"
                       " const l = s.querySelector('.cursor'); return [r.left + 44 + (r.width - 52) * 2 / 5, "
                       "r.top + r.height / 2]; })()")
        click(cdp, x, y)
        assert js(cdp, EPOCH) == 2
        for layout, count in (("diff", 8 * 2), ("methods", 8 * 2), ("runs", 8 * 2 * 2)):
            js(cdp, f"(() => {{ const s = document.getElementById('layout'); s.value = '{layout}'; "
                    "s.dispatchEvent(new Event('change')); })()")
            assert js(cdp, f"{MAPS}.length") == count, layout
            assert js(cdp, EPOCH) == 2  # a new layout keeps the epoch
        js(cdp, "(() => { const s = document.getElementById('class-filter'); s.value = s.options[1].value; "
                "s.dispatchEvent(new Event('change')); })()")
        chosen = js(cdp, "document.getElementById('class-filter').value")
        titles = js(cdp, "Array.from(document.querySelectorAll('#images .cell')).filter(c => !c.hidden)"
                         ".map(c => c.querySelector('.cell-title').firstChild.textContent.trim())")
        assert titles and set(titles) == {chosen}
        js(cdp, "document.querySelector('#images .cell:not([hidden])').click()")
        assert "prediction at epoch 2" in js(cdp, "document.getElementById('detail-body').textContent")
        assert console_errors(cdp.events) == []


def test_one_run_page_and_its_speed_reported(pages, tmp_path, capsys):
    with browser_page(pages["one"], tmp_path / "profile") as cdp:
        assert js(cdp, f"{MAPS}.length") == 8 * 2
        paint = js(cdp, "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
        update = js(cdp, "(() => { const x = window.overfocusExplorer, n = x.epochs.length, t0 = performance.now();"
                         " for (let i = 0; i < n; i++) x.setEpoch(i); return (performance.now() - t0) / n; })()")
        assert console_errors(cdp.events) == []
    report = {"bytes": pages["one"].stat().st_size, "first_contentful_paint_ms": paint, "slider_update_ms": update}
    with capsys.disabled():
        print(f"\nexplorer (1 run x 2 methods x 8 images x 6 epochs): {json.dumps(report)}")
    if os.environ.get("OVERFOCUS_EXPLORER_TIMINGS"):
        Path(os.environ["OVERFOCUS_EXPLORER_TIMINGS"]).write_text(json.dumps(report))
