"""What a new user runs first: the demo's printed "next" lines, as printed, up to a successful compare."""
from __future__ import annotations

import json
import shlex

import pytest

from overfocus.cli import main

# the demo's recipe on fewer, smaller images (the printed commands are what is under test)
TINY_DEMO = ["data.spec=builtin?classes=3&train=48&test=24", "data.image_size=32", "data.batch_size=16",
             "model.name=vgg11", "model.width=0.25", "optim.lr=0.001", "train.epochs=1", "train.progress=false"]


def printed_commands(stdout: str) -> list:
    """The commands after the demo's "next:" line, without their comments."""
    lines = stdout.split("\nnext:\n", 1)[1].splitlines()
    return [shlex.split(line.split("#", 1)[0]) for line in lines if line.strip().startswith("overfocus ")]


def test_demo_next_steps_run_as_printed_and_compare_succeeds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the printed paths are relative (runs/demo), as for a new user
    monkeypatch.setattr("overfocus.commands.demo.DEMO_OVERRIDES", TINY_DEMO)
    assert main(["demo", "--no-render"]) == 0
    commands = printed_commands(capsys.readouterr().out)
    assert [c[1] for c in commands] == ["audit", "train", "analyze", "compare", "train"]
    for argv in commands:
        code = main(argv[1:])
        _out, err = capsys.readouterr()
        assert code in ((0, 1) if argv[1] == "audit" else (0,)), f"{shlex.join(argv)}: {err}"  # 1: its gate
    demo, sgdrop = (json.loads((tmp_path / "runs" / name / "run.json").read_text()) for name in ("demo", "sgdrop"))
    assert sgdrop["config"]["regularizer"]["name"] == "sgdrop"
    for section in ("data", "model"):
        assert sgdrop["config"][section] == demo["config"][section]
    assert sgdrop["probe_ids"] == demo["probe_ids"]
    table = tmp_path / "runs" / "compare_demo_vs_sgdrop" / "last_epoch.md"
    assert table.is_file() and "sgdrop" in table.read_text()


def test_like_refuses_a_folder_without_run_json(tmp_path, capsys):
    assert main(["train", "--like", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no run.json" in err


def test_config_accepts_a_run_json_and_a_new_regularizer_starts_from_its_defaults(tmp_path):
    from overfocus.config import build_config, to_dict

    base = build_config(overrides=["model.name=vgg11", "regularizer.name=sgdrop", "regularizer.rho=0.05"])
    (tmp_path / "run.json").write_text(json.dumps({"schema": 1, "status": "complete", "config": to_dict(base)}))
    same = build_config(str(tmp_path / "run.json"))
    assert to_dict(same) == to_dict(base)
    other = build_config(str(tmp_path / "run.json"), ["regularizer.name=none"])
    assert other.model.name == "vgg11" and other.regularizer.name == "none" and other.regularizer.params == {}


@pytest.mark.parametrize("flag", ["--config", "--like"])
def test_a_run_directory_is_accepted_where_a_run_config_is(tmp_path, flag):
    from overfocus.cli import build_parser
    from overfocus.commands.train import config_source
    from overfocus.config import build_config, to_dict

    base = build_config(overrides=["model.name=vgg11"])
    (tmp_path / "run.json").write_text(json.dumps({"schema": 1, "config": to_dict(base)}))
    args = build_parser().parse_args(["train", flag, str(tmp_path), "--out", "x"])
    assert build_config(config_source(args)).model.name == "vgg11"
