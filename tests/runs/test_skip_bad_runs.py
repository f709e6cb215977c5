"""--skip-bad through a whole run: run.json lists the skipped files, no probe image is a bad file,
analyze and audit honour the run's skip_bad (and both have the --skip-bad their hint names)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import folder_with_a_bad_first_test_image, noise_class_folders

from overfocus.cli import main

SMALL = ["--set", "data.image_size=32", "--set", "model.width=0.125", "--set", "train.progress=false",
         "--set", "data.batch_size=8", "--epochs", "1"]


@pytest.fixture(scope="module")
def skip_bad_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("skipbad")
    data = folder_with_a_bad_first_test_image(tmp / "data")
    run = tmp / "run"
    assert main(["train", "--data", f"folder:{data}", *SMALL, "--skip-bad", "--out", str(run)]) == 0
    return data, run


def test_run_json_lists_the_skipped_files_and_no_probe_image_is_bad(skip_bad_run, capsys):
    data, run = skip_bad_run
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["skipped_files"] == [str(data / "val" / "a" / "a_0.png")]
    assert "val/a/a_0.png" not in manifest["probe_ids"]
    assert len(manifest["probe_ids"]) == 7  # the 7 readable test images


def test_train_says_how_many_were_skipped(tmp_path, capsys):
    data = folder_with_a_bad_first_test_image(tmp_path / "data")
    capsys.readouterr()
    assert main(["train", "--data", f"folder:{data}", *SMALL, "--skip-bad", "--out", str(tmp_path / "r")]) == 0
    assert "--skip-bad skipped 1 unreadable image(s)" in capsys.readouterr().err


def test_analyze_honours_the_runs_skip_bad(skip_bad_run, tmp_path, capsys):
    _, run = skip_bad_run
    capsys.readouterr()
    assert main(["analyze", str(run), "--device", "cpu", "--methods", "grad_cam", "--out", str(tmp_path / "a")]) == 0
    assert "a_0.png" in capsys.readouterr().err  # the one warning of the skipped file
    records = (tmp_path / "a" / "records" / "epoch_0001.csv").read_text()
    assert "val/a/a_0.png" not in records and "val/a/a_1.png" in records


def test_a_bad_image_names_a_flag_the_command_has(skip_bad_run, tmp_path, capsys):
    """Without skip_bad the error's hint names --skip-bad, which analyze and audit accept."""
    _data, run = skip_bad_run
    manifest = json.loads((run / "run.json").read_text())
    manifest["config"]["data"]["skip_bad"] = False
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "run.json").write_text(json.dumps(manifest))
    (strict / "checkpoints").symlink_to(run / "checkpoints")
    code = main(["analyze", str(strict), "--device", "cpu", "--methods", "grad_cam", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "a_0.png" in err and "--skip-bad" in err
    assert main(["analyze", str(strict), "--device", "cpu", "--methods", "grad_cam", "--epochs", "1",
                 "--skip-bad"]) == 0
    capsys.readouterr()
    code = main(["audit", str(strict), "--out", str(tmp_path / "audit")])
    assert code == 2 and "--skip-bad" in capsys.readouterr().err
    assert main(["audit", str(strict), "--skip-bad", "--out", str(tmp_path / "audit")]) == 0


def test_audit_honours_the_runs_skip_bad(skip_bad_run, tmp_path, capsys):
    _, run = skip_bad_run
    assert main(["audit", str(run), "--out", str(tmp_path / "audit")]) == 0
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["inputs"]["images"] == 7


# ---- a truncated JPEG: found before training, and a stopped run continued --------------------------------
def _folder_with_a_truncated_train_jpeg(root: Path) -> Path:
    """train/ and val/ class folders of JPEGs; one train JPEG outside the fixed train-accuracy subset is cut
    in half, so a run reads it first while training epoch 1 (epoch 0 is durable by then)."""
    from overfocus.data.splits import fixed_subset_indices
    from overfocus.data import open_dataset

    noise_class_folders(root, train=8, test=2, ext="jpg", seed=1)
    train = open_dataset(f"folder:{root}", "train", 32)
    evaluated = set(fixed_subset_indices(len(train), len(open_dataset(f"folder:{root}", "test", 32)), 0))
    bad = Path(train.records[next(i for i in range(len(train)) if i not in evaluated)][0])
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return bad


def test_data_check_lists_the_truncated_jpeg(tmp_path, capsys):
    bad = _folder_with_a_truncated_train_jpeg(tmp_path / "data")
    capsys.readouterr()
    assert main(["data", "check", f"folder:{tmp_path / 'data'}", "--jobs", "2"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"folder:{tmp_path / 'data'}: 1 problem(s) in 16 train + 4 test images:"
    assert out[1].startswith(f"  train: {bad}: ") and "truncated" in out[1] and "--skip-bad" not in out[1]
    bad.unlink()  # all is well once the file is gone
    assert main(["data", "check", f"folder:{tmp_path / 'data'}"]) == 0
    assert "all 15 train + 4 test images read and consistent" in capsys.readouterr().out


@pytest.mark.parametrize("spec", ["nosuchkind:/x", "folder:/nonexistent/data"])
def test_data_check_of_a_wrong_spec_is_one_line_exit_2(spec, capsys):
    capsys.readouterr()
    assert main(["data", "check", spec]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured


def test_a_run_stopped_on_a_bad_file_continues_with_resume_skip_bad(tmp_path, capsys, monkeypatch):
    bad = _folder_with_a_truncated_train_jpeg(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # the command is named as the user gave the folder
    run = Path("run")
    args = ["--data", f"folder:{tmp_path / 'data'}", *SMALL[:-1], "2", "--out", str(run)]
    capsys.readouterr()
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0], err
    assert err[0].endswith("epochs 0-0 are kept, continue with `overfocus resume run --skip-bad`"), err[0]
    assert main(["resume", str(run), "--skip-bad"]) == 0, capsys.readouterr().err
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["skipped_files"] == [str(bad)]
    assert manifest["config"]["data"]["skip_bad"] is True and [e["epoch"] for e in manifest["epochs"]] == [0, 1, 2]
