"""The explorer page without a browser: what it holds (maps equal to the analysis's, the alignment,
the curves read generically from the summary), that it needs nothing outside itself, its size,
where render and compare put it, and bad input. tests/test_explore_browser.py drives it in Chromium."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from test_render import write_fake_run  # noqa: E402  (the contract-C fixture generator)



def _page_data(path: Path) -> dict:
    text = path.read_text()
    found = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def _decode(uri: str) -> np.ndarray:
    import cv2

    data = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


@pytest.fixture
def runs(tmp_path):
    return write_fake_run(tmp_path / "vanilla", epochs=range(4)), write_fake_run(tmp_path / "sgdrop", epochs=range(4),
                                                                                   seed=1)


def test_one_run_page_holds_the_analysis_maps_and_needs_nothing_outside(runs):
    from overfocus.render.explore import explore
    from overfocus.render.io import load_analysis

    path = explore([runs[0]])
    assert path == runs[0] / "figures" / "explorer.html"
    text = path.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert not re.search(r'\bsrc="(?!data:)', text)
    assert "default-src 'none'" in text  # the browser refuses any fetch
    page = _page_data(path)
    analysis = load_analysis(runs[0])
    assert page["epochs"] == analysis.epochs and [m["name"] for m in page["methods"]] == ["grad_cam", "sgdrop"]
    sprite = _decode(page["runs"][0]["sprites"]["sgdrop"][5])  # probe image 5, the epochs stacked downwards
    h = sprite.shape[0] // len(analysis.epochs)
    for t, epoch in enumerate(analysis.epochs):
        expected = np.round(analysis.load_epoch(epoch).maps["sgdrop"][5] * 255)
        assert np.abs(sprite[t * h:(t + 1) * h].astype(int) - expected).max() <= 1
    maps = analysis.load_epoch(3)
    assert page["runs"][0]["pred"][3] == maps.pred.tolist()
    assert page["runs"][0]["headers"][3][1].startswith("epoch 3   train acc")  # the videos' frame header
    assert page["probes"][0]["class"] == analysis.probe.class_name(int(analysis.probe.labels[0]))


def test_curves_come_from_the_summary_generically(runs):
    """A metric the explorer has never heard of (a faithfulness score, say) gets its panel from the
    summary and its title from analysis.json; the accuracies and gap come from metrics.jsonl."""
    from overfocus.render.explore import explore

    run = runs[0]
    summary = run / "analysis" / "summary.csv"
    rows = [f"{e},grad_cam,deletion_auc,{0.1 * e:.2f},{0.1 * e - 0.05:.2f},{0.1 * e + 0.05:.2f},8" for e in range(4)]
    summary.write_text(summary.read_text() + "\n".join(rows) + "\n")
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    meta["metric_info"] = {"deletion_auc": {"title": "deletion AUC", "unit": "AUC", "range": [0, 1], "kind": "map"}}
    (run / "analysis" / "analysis.json").write_text(json.dumps(meta))
    page = _page_data(explore([run]))
    panels = {p["metric"]: p for p in page["curves"]}
    assert panels["deletion_auc"]["title"] == "deletion AUC" and panels["deletion_auc"]["group"] == "main"
    series = panels["deletion_auc"]["series"][0]
    assert series["mean"] == [0.0, 0.1, 0.2, 0.3] and series["lo"][1] == pytest.approx(0.05)
    assert {"area_ratio", "test_acc", "gap"} <= set(panels)
    assert "coverage_global_cumulative" not in panels  # constant over the epochs: nothing to see


def test_comparison_is_aligned_and_says_so(runs, tmp_path):
    from overfocus.render.explore import ExploreOptions, explore

    a, b = runs
    # run B analysed one epoch more and its probe images in another order
    extra = write_fake_run(tmp_path / "longer", epochs=range(5), seed=1)
    path = explore([a, extra], ExploreOptions(labels=["A", "B"], probes=4))
    page = _page_data(path)
    assert path == tmp_path / "compare_A_vs_B" / "explorer.html"
    assert page["epochs"] == [0, 1, 2, 3] and len(page["probes"]) == 4
    assert "last common epoch 3" in page["alignment"] and "8 probe image ids common" in page["alignment"]
    assert [r["label"] for r in page["runs"]] == ["A", "B"]
    assert len(page["runs"][1]["sprites"]["grad_cam"]) == 4


def test_render_and_compare_write_the_explorer_by_default(runs, tmp_path, capsys):
    from overfocus.cli import main

    assert main(["render", str(runs[0]), "--formats", "gif", "--size", "160"]) == 0
    assert (runs[0] / "figures" / "explorer.html").is_file()
    assert main(["render", str(runs[1]), "--formats", "gif", "--size", "160", "--no-explorer"]) == 0
    assert not (runs[1] / "figures" / "explorer.html").exists()
    assert main(["compare", *map(str, runs), "--formats", "gif", "--size", "320", "--out", str(tmp_path / "c")]) == 0
    assert "explorer.html" in capsys.readouterr().out and (tmp_path / "c" / "explorer.html").is_file()


def test_explore_cli_and_bad_input(runs, tmp_path, capsys):
    from overfocus.cli import main

    out = tmp_path / "page.html"
    assert main(["explore", *map(str, runs), "--out", str(out), "--methods", "sgdrop"]) == 0
    assert out.is_file() and [m["name"] for m in _page_data(out)["methods"]] == ["sgdrop"]
    capsys.readouterr()
    for argv, words in ((["explore", str(runs[0]), "--methods", "grad_cm"], "did you mean 'grad_cam'"),
                        (["explore", str(tmp_path / "none")], "overfocus analyze"),
                        (["explore", str(runs[0]), "--out", str(tmp_path / "x.png")], ".html"),
                        (["explore", str(runs[0]), "--alpha", "2"], "--alpha"),
                        (["explore", str(runs[0]), "--cmap", "nope"], "colormap")):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and words in err, (argv, err)


def test_size_of_two_runs_two_methods_sixteen_images_thirty_one_epochs(tmp_path, capsys):
    """The issue's size goal, measured on maps of the demo's 64 px images (reported, and at most 25 MB)."""
    from overfocus.render.explore import explore

    runs = [_bigger_run(tmp_path / name, seed) for seed, name in enumerate(("a", "b"))]
    path = explore(runs)
    page = _page_data(path)
    assert len(page["probes"]) == 16 and len(page["epochs"]) == 31 and len(page["methods"]) == 2
    size = path.stat().st_size
    with capsys.disabled():
        print(f"\nexplorer of 2 runs x 2 methods x 16 images x 31 epochs (64 px): {size / 1e6:.2f} MB")
    assert size <= 25e6


def _bigger_run(root: Path, seed: int) -> Path:
    """write_fake_run's run at 64 px and 31 epochs, its 8 probe images doubled to 16 (the copies
    mirrored, with their maps, so that no two images compress alike)."""
    import test_render

    old = test_render.FIXTURE_SIZE
    test_render.FIXTURE_SIZE = 64
    try:
        run = write_fake_run(root, epochs=range(31), seed=seed)
    finally:
        test_render.FIXTURE_SIZE = old
    probe = run / "analysis" / "probe"
    with np.load(probe / "images.npz") as z:
        d = {k: z[k] for k in z.files}
    boxes = d["boxes"].copy()
    boxes[..., [0, 2]] = np.where(boxes[..., [0, 2]] >= 0, 64 - boxes[..., [2, 0]], -1)
    np.savez(probe / "images.npz", images=np.concatenate([d["images"], d["images"][:, :, ::-1]]),
             boxes=np.concatenate([d["boxes"], boxes]), labels=np.concatenate([d["labels"]] * 2),
             image_ids=np.array([*d["image_ids"], *(f"{i}_mirrored" for i in d["image_ids"])]), classes=d["classes"])
    for epoch in range(31):
        path = probe / f"epoch_{epoch:04d}.npz"
        with np.load(path) as z:
            e = {k: z[k] for k in z.files}
        np.savez(path, **{k: np.concatenate([v, v[:, :, ::-1]]) if k.startswith("maps_") else
                          np.concatenate([v, v]) if k in ("pred", "conf") else v for k, v in e.items()})
    return run
