"""The registered ViTs: built for 32-128 px, trained with AdamW + warm-up by default, SGDrop dropping
whole tokens of the latent layer, neuron coverage on token features, and a run that trains,
analyses (Grad-CAM on the token grid, attention rollout) and records the layer and its reshape."""
from __future__ import annotations

import json

import pytest
import torch

from overfocus.analysis import analyze
from overfocus.config import RegularizerConfig, build_config
from overfocus.data.base import Batch
from overfocus.metrics import NeuronCoverage
from overfocus.models import MODELS, build_model, get_module
from overfocus.models.layers import choose_layer
from overfocus.regularizers import RegContext, StepInfo, build_regularizer
from overfocus.training.engine import build_optimizer, train


@pytest.mark.parametrize("name", ["vit_tiny", "vit_small"])
@pytest.mark.parametrize("size,small_input,grid", [(32, True, 8), (64, False, 8), (128, False, 16)])
def test_the_vits_take_32_to_128_px_and_declare_a_token_latent_layer(name, size, small_input, grid):
    model = build_model(name, 5, width=0.25, small_input=small_input).eval()
    x = torch.randn(2, 3, size, size)
    assert model(x).shape == (2, 5)
    entry = MODELS.get(name)
    assert entry.latent_layer == entry.gradcam_layer == "blocks.11.norm1"
    assert choose_layer(model, x).name == "blocks.11.norm1"
    z = {}
    get_module(model, entry.latent_layer).register_forward_hook(lambda _m, _i, out: z.setdefault("z", out))
    model(x)
    assert z["z"].shape[:2] == (2, 1 + grid * grid)


def test_width_scales_the_embedding_in_multiples_of_the_heads():
    dims = {w: build_model("vit_tiny", 10, width=w).pos_embed.shape[-1] for w in (0.25, 0.375, 1.0)}
    assert dims == {0.25: 48, 0.375: 72, 1.0: 192}
    assert build_model("vit_small", 10).pos_embed.shape[-1] == 384


def test_the_vits_train_with_adamw_and_warm_up_unless_told_otherwise():
    cfg = build_config(overrides=["model.name=vit_tiny", "train.epochs=10"])
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.warmup_epochs, o.schedule) == ("adamw", 5e-4, 0.05, 5, "cosine")
    assert build_config(overrides=["model.name=vit_tiny", "optim.lr=0.001"]).optim.name == "adamw"
    plain = build_config(overrides=["model.name=vit_tiny", "optim.name=adam"]).optim
    assert (plain.weight_decay, plain.warmup_epochs) == (0.0, 0)
    assert build_config(overrides=["model.name=vgg11"]).optim.name == "adam"  # the CNNs keep theirs
    opt, sched = build_optimizer(build_model("vit_tiny", 3, width=0.25), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([1e-4, 2e-4, 3e-4, 4e-4, 5e-4])  # linear warm-up
    assert lrs[5] == pytest.approx(5e-4) and lrs[5:] == sorted(lrs[5:], reverse=True) and lrs[-1] > 0


def _sgdrop(params, width=0.25):
    torch.manual_seed(0)
    model = build_model("vit_tiny", 3, width=width, small_input=True).train()
    ctx = RegContext("vit_tiny", "blocks.11.norm1", 3, 4, 1, torch.device("cpu"), image_size=32)
    reg = build_regularizer(RegularizerConfig("sgdrop", params), ctx)
    reg.setup(model)
    return model, reg


def _masked_tokens(model, reg, batch):
    seen = {}  # the last call: with ema=False psi runs first on the unmasked latent, inside the hook
    handle = model.blocks[11].attn.register_forward_pre_hook(lambda _m, args: seen.__setitem__("z", args[0]))
    loss, stats = reg.loss(model, batch, StepInfo(0, 1, 0))
    handle.remove()
    return loss, stats, seen["z"]


@pytest.mark.parametrize("ema", [True, False])
def test_sgdrop_drops_whole_grid_tokens_and_never_the_class_token(ema):
    model, reg = _sgdrop({"rho": 0.05, "granularity": "spatial", "ema": ema})
    batch = Batch(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1]), [], list("abcd"))
    loss, stats, z = _masked_tokens(model, reg, batch)
    assert torch.isfinite(loss)
    zero_tokens = (z == 0).all(dim=2)  # B x 65: a dropped token has every channel zero
    assert not zero_tokens[:, 0].any()  # the class token stays
    k = 4  # ceil(0.05 * 64 grid tokens)
    assert zero_tokens[:, 1:].sum(1).tolist() == [k] * 4
    assert float(stats["dropped_units"]) == k
    reg.teardown(model)


def test_sgdrop_element_granularity_drops_token_features_of_the_grid_only():
    model, reg = _sgdrop({"rho": 0.01, "granularity": "element"})
    batch = Batch(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), [], list("ab"))
    _loss, stats, z = _masked_tokens(model, reg, batch)
    k = 31  # ceil(0.01 * 64 tokens * 48 channels)
    assert float(stats["dropped_units"]) == k
    assert ((z[:, 1:] == 0).flatten(1).sum(1) >= k).all() and (z[:, 0] != 0).all()
    reg.teardown(model)


def test_neuron_coverage_reads_token_features():
    model = build_model("vit_tiny", 3, width=0.25).eval()
    cov = NeuronCoverage(model, latent_layer="blocks.11.norm1")
    with cov, torch.no_grad():
        model(torch.randn(3, 3, 64, 64))
    per_image, total = cov.per_image(), cov.cumulative()
    assert per_image["coverage_latent"].shape == (3,)
    assert 0 < total["coverage_global"] <= 1 and 0 < total["unit_coverage_latent"] < 1
    # 12 MLPs, each 192 hidden features: the channel masks are the token features, not the tokens
    masks = {k: v for k, v in cov.fired_masks()[0].items() if not k.startswith("units:")}
    assert len(masks) == 12 and all(m.shape == (192,) for m in masks.values())


def test_a_vit_run_trains_and_analyses_on_its_token_grid(tmp_path):
    cfg = build_config(overrides=["data.spec=builtin?classes=3&train=32&test=16", "data.image_size=32",
                                  "data.batch_size=16", "model.name=vit_tiny", "model.width=0.25",
                                  "model.small_input=true", "train.epochs=1", "train.progress=false",
                                  "regularizer.name=sgdrop", "regularizer.granularity=spatial"])
    run = train(cfg, tmp_path / "vit")
    rows = analyze(run, methods=("grad_cam", "attention_rollout", "grad_rollout"), show_progress=False)
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["layer"] == "blocks.11.norm1"
    assert meta["layer_reshape"] == "tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8"
    methods = {r["method"] for r in rows}
    assert {"grad_cam", "attention_rollout", "grad_rollout"} <= methods
    assert any(r["metric"] == "coverage_latent" and r["mean"] > 0 for r in rows)
    # render: the frame header names the layer beside the layer maps, not beside the rollout
    from overfocus.render.frames import epoch_header
    from overfocus.render.io import load_analysis

    analysis = load_analysis(run)
    assert epoch_header(analysis, 1, ["grad_cam"])[0].endswith("Grad-CAM at layer blocks.11.norm1 (8 x 8 token grid)")
    assert "at layer" not in epoch_header(analysis, 1, ["attention_rollout"])[0]
    # audit: the report says which layer and reshape it explained
    from overfocus.cli import main

    assert main(["audit", str(run), "--limit", "8", "--out", str(tmp_path / "audit")]) in (0, 1)
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["inputs"]["layer"] == "blocks.11.norm1"
    assert report["inputs"]["layer_reshape"] == "tokens: 1 prefix token dropped, 64 grid tokens -> 8 x 8"


def test_a_folder_of_timm_vit_checkpoints_analyses_on_its_token_grid(tmp_path, capsys):
    """`analyze FOLDER --model timm:NAME`: no layer or reshape flag (timm's test_vit: 160 px, patch 16)."""
    timm = pytest.importorskip("timm")
    from overfocus.cli import main

    folder = tmp_path / "ckpts"
    folder.mkdir()
    torch.manual_seed(0)
    for epoch in (1, 2):
        torch.save(timm.create_model("test_vit", num_classes=3).state_dict(), folder / f"checkpoint-{epoch}.pth")
    code = main(["analyze", str(folder), "--model", "timm:test_vit", "--data", "builtin?classes=3&train=8&test=4",
                 "--image-size", "160", "--device", "cpu", "--methods", "grad_cam,attention_rollout",
                 "--metrics", "area_ratio"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "attribution layer 'blocks.5.norm1'" in err and "100 grid tokens -> 10 x 10" in err
    assert "layer: blocks.5.norm1 (tokens: 1 prefix token dropped, 100 grid tokens -> 10 x 10)" in out
    meta = json.loads((folder / "overfocus" / "analysis" / "analysis.json").read_text())
    assert meta["epochs_done"] == [1, 2] and meta["layer"] == "blocks.5.norm1"


def test_the_tracker_finds_a_timm_vits_token_layer(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    import overfocus

    net = timm.create_model("test_vit", pretrained=False, num_classes=3)
    tracker = overfocus.Tracker(tmp_path / "tracked", data="builtin?classes=3&train=8&test=4", image_size=160,
                                mean=(0.5,) * 3, std=(0.25,) * 3, measure=False)
    tracker.start(net)
    tracker.finish()
    assert "attribution layer 'blocks.5.norm1' (the first norm of the last transformer block" in capsys.readouterr().err
    result = overfocus.analyze(tmp_path / "tracked", methods=["grad_cam"], metrics=["area_ratio"], device="cpu",
                               show_progress=False)
    assert result.epochs_done == [0]
    meta = json.loads((tmp_path / "tracked" / "analysis" / "analysis.json").read_text())
    assert meta["layer"] == "blocks.5.norm1" and meta["layer_reshape"].endswith("-> 10 x 10")
