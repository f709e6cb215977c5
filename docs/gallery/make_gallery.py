"""Rebuild the figure gallery of docs/rendering.md from two tiny runs (about ten minutes on 2 idle CPU cores).

Trains two small models on the built-in shapes data (a few epochs; plain and with the SGDrop
regularizer), analyses them
(Grad-CAM and SGDrop), renders them, compares them, audits the first one, and copies a small set
of the figures into this folder (PNG; the GIF as one still frame):

    PYTHONPATH=. python docs/gallery/make_gallery.py
    PYTHONPATH=. python docs/gallery/make_gallery.py --runs /tmp/gallery-runs  # keep the trained runs there
    PYTHONPATH=. python docs/gallery/make_gallery.py explorer RUN [RUN ...]   # explorer.png only, of these runs

With `--runs DIR` the two analysed runs are kept in DIR and reused by the next call (training and
analysis are most of the time), so a change to a figure is regenerated in a minute or two.

Nothing here is hand-made: every PNG in docs/gallery/ is written by this script (explorer.png is
a headless-Chromium screenshot of the explorer page, so it needs chromium).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
OVERRIDES = ["data.spec=builtin?classes=3&train=900&test=96", "data.image_size=48", "data.batch_size=32",
             "model.name=vgg11", "model.width=0.25", "optim.lr=0.001", "train.epochs=6", "train.progress=false"]
# GIF stills at 640 px: side by side, panels of at least 128 px (as many probe images as fit)
LOOK = dict(formats=["gif"], size=640)


def train_and_analyse(root: Path, name: str, extra: list) -> Path:
    """The analysed run ROOT/NAME, trained and analysed unless a previous call left it complete."""
    from overfocus.analysis import analyze
    from overfocus.config import build_config
    from overfocus.training.engine import train

    run = root / name
    if (run / "analysis" / "analysis.json").is_file() and (run / "analysis" / "summary.csv").is_file():
        print(f"reusing {run}")
        return run
    shutil.rmtree(run, ignore_errors=True)  # a half-made run from an interrupted call
    train(build_config(overrides=OVERRIDES + extra), run)
    analyze(run, methods=("grad_cam", "sgdrop"), device="cpu")
    return run


def gif_still(gif: Path, out: Path, index: int = -1) -> Path:
    """One frame of a GIF as a PNG (a gallery shows stills; the videos stay out of git)."""
    from PIL import Image

    with Image.open(gif) as im:
        im.seek(im.n_frames - 1 if index < 0 else index)
        im.convert("RGB").save(out, optimize=True)
    return out


def copy_png(src: Path, name: str) -> Path:
    """Copy a rendered PNG, reduced to 256 colours to stay small in git (dithered: ramps keep no bands)."""
    from PIL import Image

    dst = HERE / name
    with Image.open(src) as im:
        rgb = im.convert("RGB")
        palette = rgb.quantize(colors=256)  # Pillow dithers only against a given palette
        rgb.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(dst, optimize=True)
    return dst


def main(runs_dir: Optional[str] = None) -> int:
    from overfocus.cli import main as cli
    from overfocus.render import RenderOptions, render_run
    from overfocus.render.compare import CompareOptions, compare_runs

    with tempfile.TemporaryDirectory(prefix="overfocus-gallery-") as tmp:
        root = Path(tmp)
        kept = Path(runs_dir) if runs_dir else root
        a = train_and_analyse(kept, "vanilla", [])
        b = train_and_analyse(kept, "sgdrop", ["regularizer.name=sgdrop"])
        # one method first: the side-by-side render then writes gap.png and metrics.png of both methods
        render_run(a, RenderOptions(methods=["grad_cam"], filmstrip_images=3, explorer=False, probes=6, **LOOK))
        render_run(a, RenderOptions(methods=["grad_cam", "sgdrop"], side_by_side=True, filmstrip_images=3,
                                    explorer=False, **LOOK))
        cmp = root / "compare"
        compare_runs([a, b], CompareOptions(out=cmp, **LOOK))
        figures = a / "figures"
        written = [copy_png(figures / "gap.png", "gap.png"), copy_png(figures / "metrics.png", "metrics.png"),
                   copy_png(figures / "filmstrip_grad_cam-sgdrop.png", "filmstrip_side_by_side.png"),
                   copy_png(figures / "filmstrip_grad_cam.png", "filmstrip_grad_cam.png"),
                   gif_still(figures / "evolution_grad_cam-sgdrop.gif", HERE / "video_frame_side_by_side.png"),
                   copy_png(cmp / "metrics.png", "compare_metrics.png"), copy_png(cmp / "gap.png", "compare_gap.png"),
                   gif_still(cmp / "evolution.gif", HERE / "compare_video_frame.png")]
        shutil.copyfile(cmp / "last_epoch.md", HERE / "compare_last_epoch.md")
        if shutil.which("chromium"):
            written.append(explorer_screenshot(cmp / "explorer.html", HERE / "explorer.png"))
        if cli(["audit", str(a), "--out", str(root / "audit")]) in (0, 1):
            shutil.copyfile(root / "audit" / "report.html", root / "report.html")
            written.append(report_tiles(root / "report.html", HERE / "audit_examples.png"))
            written.append(report_image(root / "report.html", "confusion matrix", HERE / "audit_confusion.png"))
    for path in written:
        print(f"{path.relative_to(HERE.parent.parent)}  {path.stat().st_size // 1024} KiB")
    return 0


def explorer_screenshot(html: Path, out: Path, width: int = 1400, height: int = 1000) -> Path:
    """The explorer page as headless Chromium shows it on a 1400 x 1000 screen, moved to the last
    epoch and the first image chosen by a script added to a copy of the page (it opens at the first
    epoch), reduced to 256 colours."""
    import subprocess

    shown = html.with_name(".gallery-" + html.name)
    text = html.read_text().replace("</body>", "<script>setTimeout(function () { var x = window.overfocusExplorer;"
                                    " x.setEpoch(x.epochs.length - 1); x.choose(0); }, 300);</script></body>")
    shown.write_text(text)
    raw = out.with_suffix(".raw.png")
    try:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--virtual-time-budget=8000", f"--window-size={width},{height}", f"--screenshot={raw}",
                        shown.resolve().as_uri()], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=180)
        copy_png(raw, out.name)
    finally:
        shown.unlink(missing_ok=True)
        raw.unlink(missing_ok=True)
    return out


def explorer_only(runs: list) -> int:
    from overfocus.render.explore import ExploreOptions, explore

    with tempfile.TemporaryDirectory(prefix="overfocus-gallery-") as tmp:
        page = explore(runs, ExploreOptions(out=Path(tmp) / "explorer.html", probes=6))
        out = explorer_screenshot(page, HERE / "explorer.png")
    print(f"{out.relative_to(HERE.parent.parent)}  {out.stat().st_size // 1024} KiB")
    return 0


def report_image(html: Path, alt: str, out: Path) -> Path:
    """The embedded PNG of the audit report whose alt text is `alt`, as a file."""
    import base64
    import re

    uri = re.search(r'src="data:image/png;base64,([^"]+)" alt="' + re.escape(alt) + '"', html.read_text()).group(1)
    out.write_bytes(base64.b64decode(uri))
    return out


def report_tiles(html: Path, out: Path) -> Path:
    """The colour bar and the first example tiles of the audit report, side by side, as one PNG."""
    import base64
    import io
    import re

    import numpy as np
    from PIL import Image

    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html.read_text())
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB")) for u in uris]
    tiles = [im for im in images if im.shape[1] >= 256][:4]  # colour bar, then the first example's panels
    height = max(t.shape[0] for t in tiles)
    canvas = np.full((height, sum(t.shape[1] + 8 for t in tiles), 3), 255, np.uint8)
    x = 0
    for t in tiles:
        canvas[:t.shape[0], x:x + t.shape[1]] = t
        x += t.shape[1] + 8
    Image.fromarray(canvas).save(out, optimize=True)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["explorer"]:
        sys.exit(explorer_only(sys.argv[2:]))
    sys.exit(main(sys.argv[2] if sys.argv[1:2] == ["--runs"] and len(sys.argv) > 2 else None))
