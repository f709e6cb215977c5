"""overfocus.Tracker (any PyTorch loop writes a run directory), live TensorBoard logging of
`overfocus train --tensorboard`, and the Lightning callback built on the tracker."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import overfocus
from overfocus.errors import OverfocusError
from overfocus.runs.rundir import RunDir
from overfocus.checkpoint.files import load_checkpoint

DATA = "builtin?classes=3&train=48&test=24"
SIZE = 32
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _loaders():
    from overfocus.data import collate_samples, open_dataset

    train = open_dataset(DATA, "train", SIZE)
    return torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate_samples,
                                       generator=torch.Generator().manual_seed(0))


def _hand_loop(tracker, model, epochs: int = 2) -> None:
    """A plain training loop as a user writes it, with the tracker's two calls."""
    from overfocus.data import normalize

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    tracker.start(model)
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in _loaders():
            loss = F.cross_entropy(model(normalize(batch.images, MEAN, STD)), batch.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        tracker.epoch_end(epoch, model, optimizer=opt, train_loss=loss.item())
    tracker.finish()


def _cifarnet():
    from overfocus.models import build_model

    return build_model("cifarnet", 3, width=0.125)


def _tracker(root: Path, **kwargs):
    options = dict(data=DATA, model_name="cifarnet", model_kwargs={"width": 0.125}, image_size=SIZE, mean=MEAN,
                   std=STD, batch_size=16)
    options.update(kwargs)
    return overfocus.Tracker(root, **options)


def test_tracker_run_is_a_run_directory_analyze_and_render_read(tmp_path):
    from overfocus.render import RenderOptions, render_run

    run_dir = tmp_path / "mine"
    model = _cifarnet()
    _hand_loop(_tracker(run_dir), model)
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    assert manifest["status"] == "complete" and [e["epoch"] for e in manifest["epochs"]] == [0, 1, 2]
    assert manifest["config"]["model"]["name"] == "cifarnet" and manifest["config"]["model"]["width"] == 0.125
    assert manifest["gradcam_layer"] == "block3" and len(manifest["probe_ids"]) == 16
    rows = run.read_metrics()
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert all(abs(r["gap"] - (r["train_acc"] - r["test_acc"])) < 1e-12 for r in rows)
    assert "train_loss" in rows[2] and "lr" in rows[2]
    # the last checkpoint holds exactly the model's final weights; epoch 0 differs (before training)
    last, first = load_checkpoint(run.checkpoint_path(2))["model"], load_checkpoint(run.checkpoint_path(0))["model"]
    assert all(torch.equal(last[k], v) for k, v in model.state_dict().items())
    assert not all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    result = overfocus.analyze(run_dir, methods=["grad_cam"], metrics=["area_ratio", "box_iou"], device="cpu",
                               show_progress=False)
    assert result.epochs_done == [0, 1, 2]
    assert {r["metric"] for r in result} >= {"area_ratio", "box_iou"}
    written = render_run(run_dir, RenderOptions(formats=["gif"], size=160)).written
    assert {"evolution_grad_cam.gif", "gap.png"} <= {Path(p).name for p in written}


def test_tracker_measures_accuracy_like_train_and_rebuilds_an_import_path(tmp_path):
    run_dir = tmp_path / "arch"
    model = _cifarnet()
    tracker = _tracker(run_dir, model_name=None, model_kwargs=None, arch="tests.training.test_tracker:small_net")
    net = small_net()
    row = tracker.start(net)
    assert 0.0 <= row["train_acc"] <= 1.0 and 0.0 <= row["test_acc"] <= 1.0
    tracker.finish()
    manifest = RunDir(run_dir).read_manifest()
    assert manifest["config"]["model"]["arch"] == "tests.training.test_tracker:small_net"
    assert manifest["gradcam_layer"] == "conv2"  # found: the last module with a spatial output
    with pytest.raises(OverfocusError, match="import path 'tests.training.test_tracker:small_net'.*--trust-recipe"):
        overfocus.analyze(run_dir, device="cpu", show_progress=False)  # the file alone never chooses code
    result = overfocus.analyze(run_dir, methods=["grad_cam"], metrics=["area_ratio"], device="cpu",
                               show_progress=False, arch="tests.training.test_tracker:small_net")
    assert result.epochs_done == [0]
    from overfocus.cli import main

    # audit rebuilds the import-path model from run.json once the user allows it (--trust-recipe)
    assert main(["audit", str(run_dir), "--limit", "8", "--out", str(tmp_path / "refused")]) == 2
    code = main(["audit", str(run_dir), "--limit", "8", "--trust-recipe", "--out", str(tmp_path / "audit")])
    assert code in (0, 1)
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert "small_net" in json.dumps(report)
    del model


def small_net(num_classes: int = 3) -> nn.Module:
    """A model outside the registry, built from its import path (what `arch=` records)."""
    return _SmallNet(num_classes)


class _SmallNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def test_tracker_refuses_a_recipe_that_does_not_rebuild_the_model(tmp_path):
    tracker = _tracker(tmp_path / "wrong", model_kwargs={"width": 0.25})
    with pytest.raises(OverfocusError, match="recipe does not rebuild your model.*shape mismatches"):
        tracker.start(_cifarnet())
    assert not (tmp_path / "wrong").exists()  # nothing claimed before the check


def test_tracker_refuses_bad_calls(tmp_path):
    with pytest.raises(OverfocusError, match="model_name or arch"):
        _tracker(tmp_path / "a", arch="x:y")
    with pytest.raises(OverfocusError, match="model_kwargs"):
        _tracker(tmp_path / "a", model_kwargs={"depth": 3})
    tracker = _tracker(tmp_path / "b", measure=False)
    with pytest.raises(OverfocusError, match="before start"):
        tracker.epoch_end(1, _cifarnet())
    model = _cifarnet()
    tracker.start(model)
    with pytest.raises(OverfocusError, match="grow"):
        tracker.epoch_end(0, model)
    with pytest.raises(OverfocusError, match="must be numbers"):
        tracker.epoch_end(1, model, train_loss="low")
    with pytest.raises(OverfocusError, match="already exists"):
        _tracker(tmp_path / "b")


def test_tracker_analyze_every_logs_probe_metrics_maps_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    import numpy as np

    tracker = _tracker(tmp_path / "live", analyze_every=2, tensorboard=tmp_path / "tb", measure=False)
    model = _cifarnet()
    tracker.start(model)
    tracker.epoch_end(1, model, train_acc=0.5, test_acc=0.4)
    tracker.epoch_end(2, model, train_acc=0.6, test_acc=0.4)
    tracker.finish()
    rows = RunDir(tmp_path / "live").read_metrics()
    assert "probe_area_ratio_grad_cam" in rows[0] and "probe_area_ratio_grad_cam" not in rows[1]
    assert 0.0 <= rows[2]["probe_area_ratio_grad_cam"] <= 1.0 and 0.0 <= rows[2]["probe_hit_grad_cam"] <= 1.0
    saved = np.load(tmp_path / "live" / "live" / "probe_epoch_0002.npz")
    assert saved["maps_grad_cam"].shape == (16, SIZE, SIZE) and saved["maps_grad_cam"].max() <= 1.0
    scalars, images = _events(tmp_path / "tb")
    assert scalars["run/gap"] == [1, 2] and scalars["area_ratio/grad_cam"] == [0, 2]  # no accuracy at 0
    assert all(steps == [0, 2] for steps in images.values()) and len(images) == 16


def _events(logdir: Path):
    """{scalar tag: steps}, {image tag: steps} of the event files in `logdir`, read back with tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = {t: [e.step for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    images = {t: [e.step for e in acc.Images(t)] for t in acc.Tags()["images"]}
    return scalars, images


def test_train_tensorboard_logs_scalars_and_one_image_tag_per_probe_image(tmp_path):
    pytest.importorskip("tensorboard")
    from overfocus.cli import main

    code = main(["train", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb"),
                 "--set", f"data.spec={DATA}", "--set", f"data.image_size={SIZE}", "--set", "data.batch_size=16",
                 "--set", "model.width=0.125", "--set", "train.epochs=2", "--set", "train.progress=false"])
    assert code == 0
    scalars, images = _events(tmp_path / "tb")
    for tag in ("run/train_acc", "run/test_acc", "run/gap", "area_ratio/grad_cam",
                "hit/grad_cam", "box_iou/grad_cam"):
        assert scalars[tag] == [0, 1, 2], tag
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    expected = {f"overlay/grad_cam/{i}" for i in manifest["probe_ids"]}
    assert set(images) == expected and all(steps == [0, 1, 2] for steps in images.values())
    # the export of the same run, once analysed, has the same tags: live and exported curves overlay
    from overfocus.analysis import analyze
    from overfocus.render.tensorboard import export

    analyze(tmp_path / "run", methods=["grad_cam"], device="cpu", show_progress=False)
    exported, exported_images = _events(export(tmp_path / "run", tmp_path / "export", size=160))
    assert set(scalars) <= set(exported), sorted(set(scalars) - set(exported))
    assert set(exported_images) == set(images)


def test_resume_tensorboard_logs_the_epochs_trained_from_there_on(tmp_path):
    pytest.importorskip("tensorboard")
    from overfocus.cli import main

    code = main(["train", "--out", str(tmp_path / "run"), "--set", f"data.spec={DATA}",
                 "--set", f"data.image_size={SIZE}", "--set", "data.batch_size=16", "--set", "model.width=0.125",
                 "--set", "train.epochs=1", "--set", "train.progress=false"])
    assert code == 0 and not (tmp_path / "tb").exists()
    assert main(["resume", str(tmp_path / "run"), "--epochs", "3", "--tensorboard", str(tmp_path / "tb")]) == 0
    scalars, images = _events(tmp_path / "tb")
    assert scalars["run/test_acc"] == [2, 3] and scalars["area_ratio/grad_cam"] == [2, 3]
    assert len(images) == 16 and all(steps == [2, 3] for steps in images.values())


def _lightning_classifier(pl):
    """A LightningModule around the small cifarnet that logs its training loss."""
    from overfocus.data import normalize

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = _cifarnet()

        def training_step(self, batch, _i):
            loss = F.cross_entropy(self.model(normalize(batch.images, MEAN, STD)), batch.labels)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    return Classifier()


def test_lightning_callback_two_epochs_then_analyze_and_render(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from overfocus.data import collate_samples, open_dataset
    from overfocus.integrations.lightning import OverfocusCallback
    from overfocus.render import RenderOptions, render_run

    train = open_dataset(DATA, "train", SIZE)
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True, collate_fn=collate_samples)
    callback = OverfocusCallback(tmp_path / "pl", data=DATA, model_name="cifarnet", model_kwargs={"width": 0.125},
                                 image_size=SIZE, mean=MEAN, std=STD, batch_size=16)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_lightning_classifier(pl), loader)
    run = RunDir(tmp_path / "pl")
    assert run.read_manifest()["status"] == "complete" and run.checkpoint_epochs() == [0, 1, 2]
    assert "train_loss" in run.read_metrics()[2]
    result = overfocus.analyze(run.root, methods=["grad_cam"], metrics=["area_ratio"], device="cpu",
                               show_progress=False)
    assert result.epochs_done == [0, 1, 2]
    written = render_run(run.root, RenderOptions(formats=["gif"], size=160)).written
    assert {"evolution_grad_cam.gif", "gap.png"} <= {Path(p).name for p in written}


def test_lightning_fit_resumed_from_its_checkpoint_continues_the_run(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from overfocus.data import collate_samples, open_dataset
    from overfocus.integrations.lightning import OverfocusCallback

    loader = torch.utils.data.DataLoader(open_dataset(DATA, "train", SIZE), batch_size=16, collate_fn=collate_samples)

    def fit(max_epochs: int, ckpt_path=None):
        callback = OverfocusCallback(tmp_path / "pl", resume=True, measure=False, data=DATA, model_name="cifarnet",
                                     model_kwargs={"width": 0.125}, image_size=SIZE, mean=MEAN, std=STD)
        trainer = pl.Trainer(max_epochs=max_epochs, accelerator="cpu", callbacks=[callback], logger=False,
                             default_root_dir=tmp_path / "lightning", enable_progress_bar=False,
                             enable_model_summary=False)
        trainer.fit(_lightning_classifier(pl), loader, ckpt_path=ckpt_path)
        return trainer

    first = fit(1)
    ckpt = first.checkpoint_callback.best_model_path
    assert ckpt and RunDir(tmp_path / "pl").checkpoint_epochs() == [0, 1]
    fit(3, ckpt_path=ckpt)  # Lightning restores epoch 1; the callback continues the same run
    run = RunDir(tmp_path / "pl")
    assert run.checkpoint_epochs() == [0, 1, 2, 3] and [r["epoch"] for r in run.read_metrics()] == [0, 1, 2, 3]
    assert run.read_manifest()["status"] == "complete"


def test_lightning_absent_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "overfocus.integrations.lightning", raising=False)
    with pytest.raises(OverfocusError, match="pip install"):
        import overfocus.integrations.lightning  # noqa: F401


def test_tracker_records_a_timm_model_as_timm_name_and_analyze_rebuilds_it(tmp_path):
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet10t", pretrained=False, num_classes=3)
    tracker = overfocus.Tracker(tmp_path / "timm", data=DATA, image_size=SIZE, mean=MEAN, std=STD, measure=False)
    tracker.start(net)  # no recipe given: found from the timm model itself
    tracker.finish()
    manifest = RunDir(tmp_path / "timm").read_manifest()
    assert manifest["config"]["model"]["name"] == "timm:resnet10t"
    result = overfocus.analyze(tmp_path / "timm", methods=["grad_cam"], metrics=["area_ratio"], device="cpu",
                               show_progress=False)
    assert result.epochs_done == [0]


def test_a_restarted_loop_continues_its_run_with_resume(tmp_path):
    """First start and restart run the same script: resume=True starts a run that is not there and
    continues one that is (no second epoch 0), even when the loop went back to an older checkpoint."""
    run_dir = tmp_path / "mine"
    model = _cifarnet()
    _hand_loop(_tracker(run_dir, resume=True, measure=False), model, epochs=2)
    first_epoch0 = load_checkpoint(RunDir(run_dir).checkpoint_path(0))["model"]
    tracker = _tracker(run_dir, resume=True, measure=False)
    assert tracker.start(model)["epoch"] == 2  # the last durable epoch's line
    assert RunDir(run_dir).read_manifest()["status"] == "running"
    tracker.epoch_end(3, model, train_acc=0.9, test_acc=0.5)
    tracker.finish()
    run = RunDir(run_dir)
    assert [e["epoch"] for e in run.read_manifest()["epochs"]] == [0, 1, 2, 3]
    assert [r["epoch"] for r in run.read_metrics()] == [0, 1, 2, 3]
    assert all(torch.equal(first_epoch0[k], v) for k, v in load_checkpoint(run.checkpoint_path(0))["model"].items())
    again = _tracker(run_dir, resume=True, measure=False)  # the loop restarted from its epoch-1 checkpoint
    again.start(model)
    again.epoch_end(2, model, train_acc=0.7, test_acc=0.6)
    assert [e["epoch"] for e in RunDir(run_dir).read_manifest()["epochs"]] == [0, 1, 2]
    assert RunDir(run_dir).read_metrics()[-1]["test_acc"] == 0.6
    with pytest.raises(OverfocusError, match="epochs must be integers that grow"):
        again.epoch_end(2, model, train_acc=0.7, test_acc=0.6)


def test_resume_refuses_another_recipe_and_runs_not_made_by_a_tracker(tmp_path):
    from overfocus.cli import main

    run_dir = tmp_path / "mine"
    _hand_loop(_tracker(run_dir, measure=False), _cifarnet(), epochs=1)
    other = _tracker(run_dir, resume=True, model_kwargs={"width": 0.25})
    with pytest.raises(OverfocusError, match=r"another model.width \(0.125 in the run, 0.25 now\)"):
        other.start(__import__("overfocus.models", fromlist=["build_model"]).build_model("cifarnet", 3, width=0.25))
    with pytest.raises(OverfocusError, match="force=True replaces the run, resume=True continues it"):
        _tracker(run_dir, resume=True, force=True)
    code = main(["train", "--out", str(tmp_path / "ours"), "--set", f"data.spec={DATA}", "--set",
                 f"data.image_size={SIZE}", "--set", "model.width=0.125", "--set", "train.epochs=1",
                 "--set", "train.progress=false"])
    assert code == 0
    with pytest.raises(OverfocusError, match="was made by `overfocus train`, not by a Tracker"):
        _tracker(tmp_path / "ours", resume=True)


def test_resume_of_a_tracked_run_and_like_say_what_is_missing(tmp_path, capsys):
    from overfocus.cli import main

    run_dir = tmp_path / "mine"
    _hand_loop(_tracker(run_dir, measure=False), _cifarnet(), epochs=1)
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Tracker(..., resume=True)" in err[0]
    assert main(["train", "--like", str(run_dir), "--out", str(tmp_path / "like"), "--set", "train.epochs=1",
                 "--set", "train.progress=false"]) == 0
    assert "recorded by 'tracker', which keeps its data and model but not how it was trained" in capsys.readouterr().err


def test_tracker_refuses_another_model_bad_epochs_and_accuracies_and_reopens_after_finish(tmp_path):
    from overfocus.models import build_model

    model = _cifarnet()
    tracker = _tracker(tmp_path / "r", measure=False)
    tracker.start(model)
    wider = build_model("cifarnet", 3, width=0.25)
    with pytest.raises(OverfocusError, match="not the one the run records"):
        tracker.epoch_end(1, wider, train_acc=0.5, test_acc=0.5)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(OverfocusError, match="integers that grow"):
            tracker.epoch_end(bad, model, train_acc=0.5, test_acc=0.5)
    for acc in (7.0, -3.0, float("nan")):
        with pytest.raises(OverfocusError, match=r"fraction in \[0, 1\]"):
            tracker.epoch_end(1, model, train_acc=acc, test_acc=0.5)
    run = RunDir(tmp_path / "r")
    assert run.checkpoint_epochs() == [0] and [r["epoch"] for r in run.read_metrics()] == [0]  # nothing written
    tracker.epoch_end(1, model, train_acc=0.5, test_acc=0.25)
    tracker.finish()
    assert run.read_manifest()["status"] == "complete"
    tracker.epoch_end(2, model, train_acc=0.5, test_acc=0.25)  # a later epoch: the run is open again
    assert run.read_manifest()["status"] == "running"
    with pytest.raises(OverfocusError, match="integers that grow"):
        tracker.epoch_end(1, model, train_acc=0.5, test_acc=0.25)  # back without resume=True
    tracker.finish()
    assert run.read_manifest()["status"] == "complete" and run.checkpoint_epochs() == [0, 1, 2]


def test_a_second_tracker_on_one_folder_is_refused_at_once(tmp_path):
    model = _cifarnet()
    first = _tracker(tmp_path / "one", measure=False, resume=True)
    first.start(model)
    second = _tracker(tmp_path / "one", measure=False, resume=True)
    with pytest.raises(OverfocusError, match=r"is writing .*one \(pid \d+ .*finish\(\)"):
        second.start(model)
    first.finish()
    assert second.start(model)["epoch"] == 0  # free again
    second.finish()


def test_a_second_lightning_fit_continues_or_refuses_without_touching_the_run(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from overfocus.data import collate_samples, open_dataset
    from overfocus.integrations.lightning import OverfocusCallback

    loader = torch.utils.data.DataLoader(open_dataset(DATA, "train", SIZE), batch_size=16, collate_fn=collate_samples)
    callback = OverfocusCallback(tmp_path / "pl", measure=False, data=DATA, model_name="cifarnet",
                                 model_kwargs={"width": 0.125}, image_size=SIZE, mean=MEAN, std=STD)

    def trainer(max_epochs):
        return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", callbacks=[callback], logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

    module = _lightning_classifier(pl)
    first = trainer(1)
    first.fit(module, loader)
    run = RunDir(tmp_path / "pl")
    before = (run.manifest_path.read_bytes(), run.checkpoint_epochs())
    assert json.loads(before[0])["status"] == "complete"
    with pytest.raises(OverfocusError, match="already records epochs up to 1.*left as it was"):
        trainer(2).fit(_lightning_classifier(pl), loader)  # a fresh Trainer starts again at epoch 1
    assert (run.manifest_path.read_bytes(), run.checkpoint_epochs()) == before
    first.fit_loop.max_epochs = 2  # the same Trainer carries on: the run continues
    first.fit(module, loader)
    assert run.checkpoint_epochs() == [0, 1, 2] and run.read_manifest()["status"] == "complete"
