"""Weights & Biases in offline mode (WANDB_MODE=offline, files in tmp_path, no network): the tracker,
`overfocus train --wandb` and `overfocus export --to wandb` log what TensorBoard gets; the test
reads the offline run file (.wandb, W&B's record log of protobuf records) back."""
from __future__ import annotations

import glob
import json
import struct
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

pytest.importorskip("wandb")
from test_tracker import DATA, MEAN, SIZE, STD, _cifarnet, _events, _lightning_classifier, _tracker  # noqa: E402

BLOCK = 32768  # the record log's block size (LevelDB log format, as W&B writes it)


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def wandb_records(path: Path):
    """The protobuf records of a .wandb file: a ':W&B' header, then 32 KiB blocks of chunks
    (checksum, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (kind == 0 and n == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def closed_records(path: Path, timeout: float = 60.0) -> list:
    """The records once W&B has written the run's `exit` record (its service may still be writing
    when `finish()` returns)."""
    end = time.monotonic() + timeout
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > end:
            return records
        time.sleep(0.2)


def history(root: Path) -> List[Dict[str, object]]:
    """Every logged step of the one offline run under `root`: {key: value}, images as their JSON dict."""
    files = glob.glob(str(root / "**" / "offline-run-*" / "run-*.wandb"), recursive=True)
    assert len(files) == 1, files
    steps = []
    for record in closed_records(Path(files[0])):
        if record.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item}
            steps.append(items)
    return steps


def scalars_and_images(steps):
    """({scalar key: steps}, {image key: steps}) as test_tracker's `_events` gives them for TensorBoard."""
    scalars, images = {}, {}
    for row in steps:
        for key, value in row.items():
            if key.startswith("_"):
                continue
            if key.endswith("/_type") and value == "image-file":
                images.setdefault(key[:-len("/_type")], []).append(row["_step"])
            elif isinstance(value, (int, float)) and "/" in key and not key.rsplit("/", 1)[1] in (
                    "width", "height", "size"):
                scalars.setdefault(key, []).append(row["_step"])
    return scalars, images


def test_tracker_logs_to_wandb_what_tensorboard_gets(tmp_path):
    pytest.importorskip("tensorboard")
    tracker = _tracker(tmp_path / "run", tensorboard=tmp_path / "tb", measure=False,
                       wandb={"project": "overfocus-test", "mode": "offline"})
    model = _cifarnet()
    tracker.start(model)
    tracker.epoch_end(1, model, train_acc=0.5, test_acc=0.4)
    tracker.epoch_end(2, model, train_acc=0.7, test_acc=0.5)
    tracker.finish()
    steps = history(tmp_path / "run" / "wandb")
    assert [s["_step"] for s in steps] == [0, 1, 2]  # the epoch is the step
    assert steps[2]["run/test_acc"] == 0.5 and steps[2]["run/gap"] == pytest.approx(0.2)
    wb_scalars, wb_images = scalars_and_images(steps)
    tb_scalars, tb_images = _events(tmp_path / "tb")
    assert wb_scalars == tb_scalars and wb_images == tb_images  # the same tags at the same epochs
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(wb_images) == {f"overlay/grad_cam/{i}" for i in manifest["probe_ids"]}
    first = steps[2][f"overlay/grad_cam/{manifest['probe_ids'][0]}/path"]
    png = next((tmp_path / "run" / "wandb").glob(f"**/files/{first}"))
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] == 192 and np.asarray(im.convert("RGB")).std() > 0  # an overlay, not a blank


def test_train_wandb_option_and_bad_options(tmp_path):
    from overfocus.cli import main
    from overfocus.errors import OverfocusError

    code = main(["train", "--out", str(tmp_path / "run"), "--wandb", "overfocus-test",
                 "--set", f"data.spec={DATA}", "--set", f"data.image_size={SIZE}", "--set", "data.batch_size=16",
                 "--set", "model.width=0.125", "--set", "train.epochs=1", "--set", "train.progress=false"])
    assert code == 0
    steps = history(tmp_path / "run" / "wandb")
    assert [s["_step"] for s in steps] == [0, 1]
    assert {"run/train_acc", "run/test_acc", "run/gap", "area_ratio/grad_cam"} <= set(steps[1])  # the export's tags
    with pytest.raises(OverfocusError, match="project name or a dict"):
        _tracker(tmp_path / "other", wandb=3)


def test_lightning_callback_logs_to_wandb(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    import torch

    from overfocus.data import collate_samples, open_dataset
    from overfocus.integrations.lightning import OverfocusCallback

    loader = torch.utils.data.DataLoader(open_dataset(DATA, "train", SIZE), batch_size=16, shuffle=True,
                                         collate_fn=collate_samples)
    callback = OverfocusCallback(tmp_path / "pl", data=DATA, model_name="cifarnet", model_kwargs={"width": 0.125},
                                 image_size=SIZE, mean=MEAN, std=STD, batch_size=16,
                                 wandb={"project": "overfocus-test", "name": "pl-run"})
    pl.Trainer(max_epochs=1, accelerator="cpu", callbacks=[callback], logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(_lightning_classifier(pl), loader)
    steps = history(tmp_path / "pl" / "wandb")
    assert [s["_step"] for s in steps] == [0, 1]
    assert {"run/test_acc", "run/train_loss", "area_ratio/grad_cam"} <= set(steps[1])
    assert sum(k.endswith("/_type") for k in steps[1]) == 16  # one overlay per probe image


def test_export_a_finished_run_to_wandb(tmp_path, capsys):
    from test_render import write_fake_run

    from overfocus.cli import main

    run = write_fake_run(tmp_path / "run", epochs=range(3))
    assert main(["export", str(run), "--to", "wandb", "--project", "overfocus-test", "--size", "160"]) == 0
    assert "Weights & Biases" in capsys.readouterr().out
    steps = history(run / "wandb")
    assert [s["_step"] for s in steps] == [0, 1, 2]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s["run/test_acc"] for s in steps] == [r["test_acc"] for r in rows]
    summary = (run / "analysis" / "summary.csv").read_text().splitlines()[1].split(",")  # epoch 0's first mean
    assert steps[0][f"{summary[2]}/{summary[1]}"] == pytest.approx(float(summary[3]))
    probe_ids = json.loads((run / "analysis" / "analysis.json").read_text())["probe_ids"]
    assert {f"overlay/grad_cam/{probe_ids[0]}/_type", f"overlay/sgdrop/{probe_ids[0]}/_type"} <= set(steps[1])
    assert main(["export", str(run), "--to", "tensorboard", "--project", "x"]) == 2
