"""`overfocus analyze FOLDER`: checkpoints written by a training loop of one's own (file names of
Lightning and timm, DDP `module.` prefixes, .pt and .safetensors) analyse exactly like the same
weights in an overfocus run; bad files are named and skipped; render takes the output."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import copy_run
from overfocus.analysis import analyze, read_records
from overfocus.checkpoint.folder import epoch_from_name, scan_folder
from overfocus.cli import main
from overfocus.data import collate_samples, normalize, open_dataset
from overfocus.errors import OverfocusError
from overfocus.checkpoint.history import read_history
from overfocus.checkpoint.keys import fit_keys
from overfocus.checkpoint.files import read_weights
from overfocus.models import build_model

safetensors_torch = pytest.importorskip("safetensors.torch")

SPEC = "builtin?classes=3&train=48&test=24"  # the data of the `tiny_run` fixture
FOLDER_ARGS = ["--model", "cifarnet", "--width", "0.125", "--small-input", "--data", SPEC, "--image-size", "32",
               "--batch-size", "16", "--device", "cpu"]
# a Lightning .ckpt saved before training under a name of the user's, timm's name, any; Lightning's own
# epoch=K-step=S names (the weights after K+1 epochs) are tested in test_lightning_names_*
NAMES = {0: "epoch_0000.ckpt", 1: "checkpoint-1.pth.tar", 2: "model_ep2.safetensors"}


def save_foreign(folder: Path, epoch: int, state) -> Path:
    """Save the weights the way other tools do: DDP's `module.` prefix, Lightning / timm wrappers."""
    prefixed = {f"module.{k}": v.detach().clone() for k, v in state.items()}
    path = folder / NAMES[epoch]
    if path.suffix == ".safetensors":
        safetensors_torch.save_file(prefixed, str(path))
    elif path.suffix == ".ckpt":
        torch.save({"epoch": epoch, "global_step": 0, "state_dict": prefixed}, path)
    else:
        torch.save({"epoch": epoch, "arch": "cifarnet", "state_dict": prefixed}, path)
    return path


@pytest.fixture(scope="module")
def own_loop(tmp_path_factory):
    """A hand-written training loop (not the engine): epoch 0 = initial weights, then 2 epochs."""
    torch.manual_seed(3)
    model = build_model("cifarnet", 3, width=0.125, small_input=True)
    train = open_dataset(SPEC, "train", 32)
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate_samples)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = {0: {k: v.clone() for k, v in model.state_dict().items()}}
    for epoch in (1, 2):
        model.train()
        for batch in loader:
            loss = torch.nn.functional.cross_entropy(model(normalize(batch.images, (0.485, 0.456, 0.406),
                                                                     (0.229, 0.224, 0.225))), batch.labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        weights[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
    return weights


def as_overfocus_run(tiny_run: Path, dst: Path, weights) -> Path:
    """The same weights in an overfocus run directory (the tiny run's config: same model and data)."""
    run = copy_run(tiny_run, dst)
    for epoch, state in weights.items():
        path = run / "checkpoints" / f"epoch_{epoch:04d}.pt"
        payload = torch.load(path, weights_only=True)
        payload["model"] = state
        torch.save(payload, path)
    return run


def cli(capsys, *args):
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def by_key(rows):
    return {(r["epoch"], r["method"], r["image_id"], r["metric"]): r["value"] for r in rows}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6


def test_folder_records_equal_the_same_weights_as_a_run(own_loop, tiny_run, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in (0, 1):
        save_foreign(folder, epoch, own_loop[epoch])
    (folder / "hparams.yaml").write_text("lr: 0.003\n")  # what trainings leave beside their checkpoints
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS)
    assert code == 0, err
    assert "attribution layer 'block3'" in err
    save_foreign(folder, 2, own_loop[2])  # the training goes on: a second call takes only the new file
    code, out, err = cli(capsys, "analyze", folder, *FOLDER_ARGS)
    assert code == 0, err
    assert "analysed epochs 2;" in out
    out_dir = folder / "overfocus"
    meta = json.loads((out_dir / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0, 1, 2] and meta["skipped"] == [] and meta["layer"] == "block3"

    run = as_overfocus_run(tiny_run, tmp_path / "run", own_loop)
    analyze(run, device="cpu", show_progress=False)
    ours, theirs = by_key(read_records(run)), by_key(read_records(out_dir))
    assert ours.keys() == theirs.keys() and len(ours) > 1000
    assert all(same(ours[k], theirs[k]) for k in ours), [k for k in ours if not same(ours[k], theirs[k])][:3]
    # the probe set is the one `overfocus train` picks, so the runs can be compared
    assert meta["probe_ids"] == json.loads((run / "analysis" / "analysis.json").read_text())["probe_ids"]

    # the gap is measured per checkpoint: its test accuracy is the records' mean `correct`
    history = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    for h in history:
        correct = [v for (e, m, _, name), v in ours.items() if e == h["epoch"] and name == "correct"]
        assert h["test_acc"] == pytest.approx(sum(correct) / len(correct))
        assert h["gap"] == pytest.approx(h["train_acc"] - h["test_acc"])

    code, out, err = cli(capsys, "render", out_dir, "--formats", "gif", "--size", "160")
    assert code == 0, err
    figures = out_dir / "figures"
    assert {"gap.png", "metrics.png", "evolution_grad_cam.gif", "filmstrip_grad_cam.png"} <= \
        {p.name for p in figures.iterdir()}
    # the other readers of an analysed run take the output folder unchanged
    code, out, err = cli(capsys, "compare", out_dir, run, "--formats", "gif", "--size", "320", "--out",
                         tmp_path / "cmp")
    assert code == 0 and "ckpts_vs_run" not in out and (tmp_path / "cmp" / "last_epoch.csv").is_file(), err
    assert "ckpts" in (tmp_path / "cmp" / "last_epoch.csv").read_text()  # labelled by the checkpoint folder
    code, out, err = cli(capsys, "audit", out_dir, "--limit", "12", "--out", tmp_path / "audit")
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert code == 0 and report["inputs"]["checkpoint"].endswith(NAMES[2]), err
    assert report["history"]["epoch"] == 2
    pytest.importorskip("tensorboard")
    code, out, err = cli(capsys, "tensorboard", out_dir)
    assert code == 0 and list((out_dir / "tensorboard").glob("events.out.tfevents.*")), err


class NotWeights:
    """A pickled object beside the weights: loading it needs --trust-pickle."""

    def __init__(self):
        self.lr = 0.1


def test_bad_files_are_named_and_the_rest_analysed(own_loop, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in (0, 1):
        save_foreign(folder, epoch, own_loop[epoch])
    torch.save({"state_dict": own_loop[1], "config": NotWeights()}, folder / "epoch_0003.pt")
    (folder / "epoch_0004.pt").write_text("this is not a checkpoint")
    other = build_model("vgg9", 3, width=0.125, small_input=True).state_dict()
    torch.save(other, folder / "epoch_0005.pth")
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio")
    assert code == 2
    lines = {e: [line for line in err.splitlines() if f"skipped epoch {e}:" in line] for e in (3, 4, 5)}
    assert all(len(found) == 1 for found in lines.values()), err
    assert "--trust-pickle" in lines[3][0]
    assert "not a PyTorch file" in lines[4][0] or "corrupt" in lines[4][0]
    assert "missing keys" in lines[5][0] and "unexpected keys" in lines[5][0] and "epoch_0005.pth" in lines[5][0]
    meta = json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0, 1] and [s["epoch"] for s in meta["skipped"]] == [3, 4, 5]
    # opting in loads the pickled one; the others stay skipped
    code, out, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--methods", "grad_cam", "--metrics",
                         "area_ratio", "--trust-pickle")
    assert code == 2 and "analysed epochs 3;" in out
    meta = json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [0, 1, 3] and [s["epoch"] for s in meta["skipped"]] == [4, 5]


def test_empty_folder_and_folder_without_epochs(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(capsys, "analyze", empty, *FOLDER_ARGS)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no checkpoint files" in err
    unnamed = tmp_path / "unnamed"
    unnamed.mkdir()
    for name in ("best.pt", "last.ckpt"):
        torch.save({}, unnamed / name)
    code, _, err = cli(capsys, "analyze", unnamed, *FOLDER_ARGS)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "best.pt" in err and "--epoch-pattern" in err
    assert not (unnamed / "overfocus").exists()  # nothing written for a folder that cannot be analysed


def test_folder_options_are_refused_for_a_run_directory(tiny_run, capsys):
    code, _, err = cli(capsys, "analyze", tiny_run, "--model", "cifarnet")
    assert code == 2 and "--model is for a folder of checkpoints" in err


def test_file_names_give_epochs():
    names = {"epoch_0003.pt": 3, "epoch=3-step=120.ckpt": 3, "checkpoint-3.pth": 3, "model_ep3.safetensors": 3,
             "3.pt": 3, "checkpoint-12.pth.tar": 12, "last.ckpt": None, "model_best.pth.tar": None}
    assert {n: epoch_from_name(n) for n in names} == names
    import re

    assert epoch_from_name("run-e7.bin", re.compile(r"-e(\d+)")) == 7
    with pytest.raises(OverfocusError, match="--epoch-pattern"):
        scan_folder(Path(__file__).parent, r"ep(")


def test_prefixes_are_stripped_where_they_make_the_keys_match(tmp_path):
    own = ["conv.weight", "fc.weight"]
    lightning = {"model.conv.weight": 1, "model.fc.weight": 2}
    assert fit_keys(lightning, own) == {"conv.weight": 1, "fc.weight": 2}
    ddp_compiled = {"module._orig_mod.conv.weight": 1, "module._orig_mod.fc.weight": 2}
    assert fit_keys(ddp_compiled, own) == {"conv.weight": 1, "fc.weight": 2}
    assert fit_keys({"conv.weight": 1, "fc.weight": 2}, own) == {"conv.weight": 1, "fc.weight": 2}
    # keys that fit a model (with a submodule called `model`) equally well with and without the
    # prefix: the user chooses
    ambiguous = {"model.conv.weight": 1, "model.fc.weight": 2}
    with pytest.raises(OverfocusError, match="--strip-prefix"):
        fit_keys(ambiguous, ["conv.weight", "model.conv.weight"])
    assert fit_keys(ambiguous, own, strip_prefix="model.") == {"conv.weight": 1, "fc.weight": 2}
    with pytest.raises(OverfocusError, match="no key of the checkpoint starts with it"):
        fit_keys(lightning, own, strip_prefix="net.")
    path = tmp_path / "w.pt"
    torch.save({"net": {"a": torch.zeros(1)}}, path)
    assert list(read_weights(path)) == ["a"]


def test_metrics_file_gives_the_gap(own_loop, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_foreign(folder, 0, own_loop[0])
    save_foreign(folder, 1, own_loop[1])
    log = tmp_path / "metrics.csv"  # Lightning CSVLogger: train and validation numbers on separate rows
    log.write_text("epoch,step,train_acc_epoch,val_acc\n0,3,0.5,\n0,3,,0.25\n1,6,0.9,\n1,6,,0.6\n")
    percent = tmp_path / "log.jsonl"
    percent.write_text('{"epoch": 1, "acc_train": 90}\n{"epoch": 1, "acc_val": 60}\n')
    assert read_history(percent)[1]["gap"] == pytest.approx(0.3)  # percentages become fractions
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio",
                       "--metrics-file", log, "--out", tmp_path / "out")
    assert code == 0, err
    history = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [(h["epoch"], h["train_acc"], h["test_acc"]) for h in history] == [(0, 0.5, 0.25), (1, 0.9, 0.6)]
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--metrics-file", log, "--test-acc-column", "nope",
                       "--out", tmp_path / "out2")
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) <= 3


def test_shards_of_a_folder_merge_into_the_one_process_files(own_loop, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in (0, 1):
        save_foreign(folder, epoch, own_loop[epoch])
    args = [*FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio,coverage"]
    assert cli(capsys, "analyze", folder, *args, "--out", tmp_path / "one")[0] == 0
    for share in ("0/2", "1/2"):
        code, _, err = cli(capsys, "analyze", folder, *args, "--out", tmp_path / "sharded", "--shard", share)
        assert code == 0, err
    code, _, err = cli(capsys, "analyze", folder, *args, "--out", tmp_path / "sharded")
    assert code == 0, err
    for name in ("records/epoch_0000.csv", "records/epoch_0001.csv", "summary.csv"):
        assert (tmp_path / "one" / "analysis" / name).read_text() == \
            (tmp_path / "sharded" / "analysis" / name).read_text(), name
    shutil.rmtree(tmp_path / "one")


def test_watch_analyses_new_checkpoints_until_ctrl_c(own_loop, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_foreign(folder, 0, own_loop[0])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "overfocus", "analyze", str(folder), *FOLDER_ARGS, "--methods", "grad_cam",
           "--metrics", "area_ratio", "--watch", "--interval", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    meta_path = folder / "overfocus" / "analysis" / "analysis.json"

    summary_path = folder / "overfocus" / "analysis" / "summary.csv"

    def wait_for(epochs):
        """Until the poll that analysed `epochs` has written its last file (the summary)."""
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if meta_path.is_file() and summary_path.is_file() and \
                    json.loads(meta_path.read_text())["epochs_done"] == epochs and \
                    f"\n{epochs[-1]}," in summary_path.read_text():
                time.sleep(0.5)  # the report is printed right after
                return True
            time.sleep(0.2)
        return False

    try:
        assert wait_for([0])
        save_foreign(folder, 1, own_loop[1])  # the training writes its next checkpoint
        assert wait_for([0, 1])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err.strip().splitlines()[-1]
    assert "analysed epochs 1;" in out
    assert [json.loads(line)["epoch"] for line in (folder / "overfocus" / "metrics.jsonl").read_text().splitlines()] \
        == [0, 1]


class TinyNet(torch.nn.Module):
    """A model overfocus does not know (`--arch test_foreign_folder:TinyNet`)."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.trunk = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                         torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(6, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.trunk(x)).flatten(1))


def test_unknown_model_from_torchscript_gets_the_last_spatial_layer(tmp_path, capsys):
    import warnings

    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in (1, 2):
            torch.jit.save(torch.jit.script(TinyNet().eval()), str(folder / f"{epoch}.pt"))
    code, _, err = cli(capsys, "analyze", folder, "--arch", "test_foreign_folder:TinyNet", "--data", SPEC,
                       "--image-size", "32", "--device", "cpu", "--methods", "grad_cam", "--metrics", "area_ratio")
    assert code == 0, err
    assert "attribution layer 'trunk'" in err and "--layer" in err  # the conv trunk, named, with the way out
    meta = json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [1, 2] and meta["layer"] == "trunk"


def test_timm_models_and_the_extra_they_need(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("resnet10t", num_classes=3).state_dict(), folder / "checkpoint-1.pth")
    args = ["analyze", folder, "--model", "timm:resnet10t", "--data", SPEC, "--image-size", "64", "--device", "cpu",
            "--methods", "grad_cam", "--metrics", "area_ratio"]
    code, _, err = cli(capsys, *args)
    assert code == 0 and "attribution layer 'layer4'" in err, err  # 2 x 2 at 64 px: the trunk's end
    monkeypatch.setitem(sys.modules, "timm", None)  # as where the integrations extra is not installed
    code, _, err = cli(capsys, *args, "--force")
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'pip install "overfocus[integrations]"' in err


def test_torchvision_names_beside_ours():
    from overfocus.models.build import ModelOptions, build_target

    model, desc, layer, _ = build_target(ModelOptions(model="mobilenet_v3_small"), 3)
    assert desc.startswith("torchvision mobilenet_v3_small") and layer is None  # found by auto_layer
    assert model.classifier[-1].out_features == 3
    _, desc, layer, _ = build_target(ModelOptions(model="resnet18", width=0.125), 3)
    assert desc.startswith("resnet18 (width 0.125") and layer == "layer4"  # our registry wins
    with pytest.raises(OverfocusError, match="no_such_net"):
        build_target(ModelOptions(model="no_such_net"), 3)


@pytest.mark.slow  # a torchrun launch of two processes (~30 s on 2 cores); the --shard test above is fast
def test_two_ranks_of_a_folder_write_the_files_of_one_process(own_loop, tmp_path, capsys):
    import os
    import subprocess

    from test_distributed_analyze import assert_same_analysis

    folder = tmp_path / "ckpts"
    folder.mkdir()
    for epoch in (0, 1):
        save_foreign(folder, epoch, own_loop[epoch])
    args = [*FOLDER_ARGS, "--methods", "grad_cam"]
    assert cli(capsys, "analyze", folder, *args, "--out", tmp_path / "one")[0] == 0
    res = subprocess.run([sys.executable, "-m", "overfocus", "analyze", str(folder), *args, "--nproc", "2", "--out",
                          str(tmp_path / "two")], env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("analysed epochs 0-1") == 1
    assert_same_analysis(tmp_path / "one", tmp_path / "two")
    assert (tmp_path / "two" / "metrics.jsonl").read_text() == (tmp_path / "one" / "metrics.jsonl").read_text()


def test_another_model_or_preprocessing_needs_force(own_loop, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_foreign(folder, 0, own_loop[0])
    args = [*FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio"]
    assert cli(capsys, "analyze", folder, *args)[0] == 0
    first = (folder / "overfocus" / "analysis" / "records" / "epoch_0000.csv").read_text()
    code, _, err = cli(capsys, "analyze", folder, *args, "--mean", "0.5,0.5,0.5")
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1 and "mean" in errors[0] and "--force" in errors[0], err
    code, out, err = cli(capsys, "analyze", folder, *args, "--mean", "0.5,0.5,0.5", "--force")
    assert code == 0 and "analysed epochs 0;" in out, err
    assert (folder / "overfocus" / "analysis" / "records" / "epoch_0000.csv").read_text() != first


def test_safetensors_without_the_package_is_skipped_with_one_line(own_loop, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_foreign(folder, 0, own_loop[0])  # .ckpt
    save_foreign(folder, 2, own_loop[2])  # .safetensors
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as where safetensors is not installed
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio")
    assert code == 2
    line = [x for x in err.splitlines() if "skipped epoch 2:" in x]
    assert len(line) == 1 and "pip install safetensors" in line[0]
    assert json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())["epochs_done"] == [0]


# ---- epoch semantics of foreign names ----------------------------------------------------------------------
def lightning_folder(tmp_path, own_loop) -> Path:
    """Lightning's ModelCheckpoint names: epoch=K-step=S holds the weights after K+1 epochs (3 steps each)."""
    folder = tmp_path / "lightning"
    folder.mkdir()
    for k in (0, 1):
        prefixed = {f"model.{n}": v for n, v in own_loop[k + 1].items()}
        torch.save({"epoch": k, "global_step": 3 * (k + 1), "state_dict": prefixed},
                   folder / f"epoch={k}-step={3 * (k + 1)}.ckpt")
    return folder


def test_lightning_names_are_read_as_the_epochs_they_hold(own_loop, tmp_path, capsys):
    folder = lightning_folder(tmp_path, own_loop)
    (tmp_path / "log.csv").write_text("epoch,step,train_acc,val_acc\n0,3,0.5,0.25\n1,6,0.75,0.5\n")
    code, out, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--methods", "grad_cam", "--metrics",
                         "area_ratio", "--metrics-file", tmp_path / "log.csv")
    assert code == 0, err
    note = [line for line in err.splitlines() if "Lightning's epoch=K files" in line]
    assert len(note) == 1 and "epoch=0-step=3.ckpt -> epoch 1" in note[0] and "--epoch-offset 0" in note[0]
    manifest = json.loads((folder / "overfocus" / "run.json").read_text())
    assert manifest["epoch0_is_initial"] is True and manifest["epoch_offset"] is None
    assert [(e["epoch"], e["step"]) for e in manifest["epochs"]] == [(1, 3), (2, 6)]  # never "the initial weights"
    history = [json.loads(x) for x in (folder / "overfocus" / "metrics.jsonl").read_text().splitlines()]
    assert [(h["epoch"], h["test_acc"]) for h in history] == [(1, 0.25), (2, 0.5)]  # the log shifted alike
    # the same weights and numbers as an overfocus run's epochs 1 and 2
    assert json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())["epochs_done"] == [1, 2]

    # reading them as named changes what epoch 0 means: refused over the old numbering, then recorded
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--epoch-offset", "0", "--methods", "grad_cam",
                       "--metrics", "area_ratio")
    assert code == 2 and "epoch=0-step=3.ckpt as epoch 1, this call reads it as epoch 0" in err and "--force" in err
    code, _, err = cli(capsys, "analyze", folder, *FOLDER_ARGS, "--epoch-offset", "0", "--methods", "grad_cam",
                       "--metrics", "area_ratio", "--out", tmp_path / "as-named")
    assert code == 0, err
    assert json.loads((tmp_path / "as-named" / "run.json").read_text())["epoch0_is_initial"] is False


def test_compare_refuses_runs_whose_epoch_0_means_different_things(own_loop, tiny_run, tmp_path, capsys):
    folder = lightning_folder(tmp_path, own_loop)
    args = [*FOLDER_ARGS, "--methods", "grad_cam", "--metrics", "area_ratio"]
    assert cli(capsys, "analyze", folder, *args)[0] == 0
    assert cli(capsys, "analyze", folder, *args, "--epoch-offset", "0", "--out", tmp_path / "named")[0] == 0
    run = copy_run(tiny_run, tmp_path / "run")
    analyze(run, methods=["grad_cam"], metrics=["area_ratio"], device="cpu", show_progress=False)
    code, _, err = cli(capsys, "compare", run, tmp_path / "named", "--formats", "gif", "--size", "320",
                       "--out", tmp_path / "c1")
    assert code == 2 and "counts epoch 0 as the initial weights" in err and "epoch0_is_initial" in err
    code, out, err = cli(capsys, "compare", run, folder / "overfocus", "--formats", "gif", "--size", "320",
                         "--out", tmp_path / "c2")
    assert code == 0, err
    assert "aligned on training epochs completed: 1-2 (epoch 0 = the initial weights); table at epoch 2 " \
           "(optimizer steps: lightning 6)" in out
