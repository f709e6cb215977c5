"""The demo's train -> analyze -> render chain, on a smaller dataset than the real demo."""
from __future__ import annotations

import argparse

from overfocus.commands import demo
from overfocus.runs.rundir import RunDir


def test_demo_chain_writes_checkpoints_analysis_and_figures(tmp_path, monkeypatch, capsys):
    small = [o for o in demo.DEMO_OVERRIDES if not o.startswith(("data.spec", "data.image_size"))]
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", small + ["data.spec=builtin?classes=3&train=64&test=16",
                                                         "data.image_size=32"])
    out = tmp_path / "demo"
    args = argparse.Namespace(out=str(out), epochs=2, force=False, no_render=False)
    assert demo.run(args) == 0
    run = RunDir(out)
    assert run.checkpoint_epochs() == [0, 1, 2]
    assert (out / "analysis" / "summary.csv").is_file()
    figures = {p.name for p in (out / "figures").iterdir()}
    assert any(name.endswith(".mp4") for name in figures) and any(name.endswith(".gif") for name in figures)
    assert "gap.png" in figures
    printed = capsys.readouterr().out
    assert "overfocus audit" in printed and str(out) in printed
