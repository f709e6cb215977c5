"""The explorer's size and speed goals on the issue's case: 2 runs x 2 methods x 16 probe images x
31 epochs (64 px images, the demo's size), measured in headless Chromium over DevTools.

Reports (never asserts against a clock): the file size (goal: at most 25 MB), the first
contentful paint (goal: under 2 s), the time from starting the browser until every map is
decoded and drawn, and one slider step over every panel (goal: within one frame, 16.7 ms): its
script time, the time until every panel's pixels are drawn, and the time to the next animation
frame. On a loaded machine (other work on the cores) the last two include waiting for the CPU. Run: `PYTHONPATH=. python benchmarks/bench_explorer.py`
(needs chromium; builds the fixture runs in a temporary folder).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> int:
    from test_explore import _bigger_run
    from test_explore_browser import browser_page, js

    from overfocus.render.explore import explore

    with tempfile.TemporaryDirectory(prefix="overfocus-bench-explorer-") as tmp:
        root = Path(tmp)
        runs = [_bigger_run(root / name, seed) for seed, name in enumerate(("a", "b"))]
        t0 = time.perf_counter()
        page = explore(runs)
        build_s = time.perf_counter() - t0
        opened = time.perf_counter()
        with browser_page(page, root / "profile") as cdp:
            ready_s = time.perf_counter() - opened
            paint = js(cdp, "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
            steps = js(cdp, "(() => { const x = window.overfocusExplorer, out = [];"
                            " for (let i = 0; i < x.epochs.length; i++) { const t = performance.now(); x.setEpoch(i);"
                            " out.push(performance.now() - t); } return out; })()")
            # the canvases draw lazily: reading one pixel of each makes the step's drawing happen now
            raster = js(cdp, "(() => { const x = window.overfocusExplorer, c = Array.from(document.querySelectorAll("
                             "'#images canvas')), out = []; for (let i = 0; i < x.epochs.length; i++) {"
                             " const t = performance.now(); x.setEpoch(i); c.forEach(k => k.getContext('2d')"
                             ".getImageData(0, 0, 1, 1)); out.push(performance.now() - t); } return out; })()")
            frame = js(cdp, "new Promise(r => { const x = window.overfocusExplorer, t = performance.now(); x.setEpoch(3);"
                            " requestAnimationFrame(() => r(performance.now() - t)); })")
            panels = js(cdp, "document.querySelectorAll('#images canvas').length")
        report = {"case": "2 runs x 2 methods x 16 probe images x 31 epochs, 64 px", "bytes": page.stat().st_size,
                  "build_s": round(build_s, 2), "first_contentful_paint_ms": paint,
                  "load_to_all_maps_drawn_s": round(ready_s, 2), "panels": panels,
                  "slider_step_script_ms_median": round(statistics.median(steps), 3),
                  "slider_step_script_ms_max": round(max(steps), 3),
                  "slider_step_drawn_ms_median": round(statistics.median(raster), 2),
                  "slider_step_drawn_ms_max": round(max(raster), 2),
                  "step_to_next_animation_frame_ms": round(frame, 1)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
