"""Vision transformers: the layer and the token-grid reshape are found from the model itself, and
the maps on the token grid equal pytorch-grad-cam's with the reshape its users write by hand.

Tiny configurations with random weights (no download): timm ViT / DeiT (distillation token) /
ViT with register tokens / BEiT, timm Swin, torchvision VisionTransformer and SwinTransformer.
pytorch-grad-cam's `__call__` min-max scales each map at layer resolution, resizes it with OpenCV
(bilinear, half-pixel centres: our upsampling) and min-max scales the result again; ours are
min-max scaled the same way at input size before the comparison (1e-5).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import overfocus
from overfocus.attribution import attribute, layer_gradients
from overfocus.errors import OverfocusError
from overfocus.models.layers import auto_layer
from overfocus.models import build_model, get_module
from overfocus.models.tokens import TokenLayout, find_token_layer, layer_layout, patch_grid

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


def _timm_vit(**kw):
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8,
                             depth=2, embed_dim=48, num_heads=3, **kw).eval()


def _timm_swin():
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, img_size=64,
                             window_size=4, depths=(1, 1, 1), embed_dim=24, num_heads=(1, 1, 1)).eval()


def _tv_vit():
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=24, mlp_dim=48, num_classes=5)
    torch.nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts the head at zero
    return model.eval()


def _tv_swin():
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[1, 1, 1], num_heads=[1, 1, 1],
                                              window_size=[4, 4], num_classes=5).eval()


def _tokens_reshape(prefix, h, w):
    def reshape(t):
        return t[:, prefix:, :].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)
    return reshape


def _channels_last(t):
    return t.permute(0, 3, 1, 2)


# (factory, input size, the target layer pytorch-grad-cam's users pass, their reshape_transform)
CASES = {
    "timm_vit": (_timm_vit, 32, lambda m: m.blocks[-1].norm1, _tokens_reshape(1, 4, 4)),
    "timm_deit_distilled": (lambda: timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False,
                                                      num_classes=5, img_size=32, patch_size=8, depth=2,
                                                      embed_dim=48, num_heads=3).eval(),
                            32, lambda m: m.blocks[-1].norm1, _tokens_reshape(2, 4, 4)),
    "timm_vit_registers": (lambda: _timm_vit(reg_tokens=3), 32, lambda m: m.blocks[-1].norm1,
                           _tokens_reshape(4, 4, 4)),
    "timm_swin": (_timm_swin, 64, lambda m: m.layers[-1].blocks[-1].norm1, _channels_last),
    "torchvision_vit": (_tv_vit, 32, lambda m: m.encoder.layers[-1].ln_1, _tokens_reshape(1, 4, 4)),
    "torchvision_swin": (_tv_swin, 64, lambda m: m.features[-1][-1].norm1, _channels_last),
}


def _case(name, seed=0):
    torch.manual_seed(seed)
    factory, size, target, reshape = CASES[name]
    model = factory()
    images = torch.randn(3, 3, size, size)
    with torch.no_grad():
        targets = model(images).argmax(1)
    return model, images, targets, target(model), reshape


def _name_of(model, module):
    return next(n for n, m in model.named_modules() if m is module)


def _minmax(maps):
    flat = maps.flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - low) / (high - low)).view_as(maps)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_layer_found_is_the_last_blocks_first_norm_never_the_patch_embedding(name):
    model, images, _t, target, _r = _case(name)
    layer = auto_layer(model, images)
    assert layer == _name_of(model, target)
    assert "patch" not in layer and layer not in ("conv_proj", "features.0.0")


@pytest.mark.parametrize("name,cam_name,ours_name", [(n, "GradCAM", "grad_cam") for n in sorted(CASES)]
                         + [("timm_vit", "LayerCAM", "layercam"), ("timm_swin", "LayerCAM", "layercam"),
                            ("torchvision_vit", "LayerCAM", "layercam")])
def test_token_grid_maps_equal_pytorch_grad_cam_with_a_hand_written_reshape(name, cam_name, ours_name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, images, targets, target, reshape = _case(name)
    layer = auto_layer(model, images)
    ours = attribute(model, images, targets, methods=(ours_name,), layer=layer)[ours_name]
    cam = getattr(pytorch_grad_cam, cam_name)(model=model, target_layers=[target], reshape_transform=reshape)
    try:
        theirs = cam(images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()
    assert ours.shape == (3, *images.shape[-2:]) and (ours.flatten(1).amax(1) > 0).all()  # non-trivial maps
    np.testing.assert_allclose(_minmax(ours).numpy(), theirs, atol=1e-5)


def test_grad_cam_pp_on_tokens_equals_pytorch_grad_cam_at_layer_resolution():
    """Grad-CAM++'s formula on the token grid. pytorch-grad-cam adds 1e-6 to the denominator of
    alpha (docs/conventions.md), which dominates at a transformer's small gradients; fed s * g and
    A / s its map is unchanged but for that epsilon, now 1e-6 / s**2, so the formulas are compared."""
    from pytorch_grad_cam import GradCAMPlusPlus
    from overfocus.attribution.grad_cam_pp import grad_cam_pp_raw

    model, images, targets, target, reshape = _case("timm_vit")
    grads = layer_gradients(model, images, targets, "blocks.1.norm1")
    ours = grad_cam_pp_raw(grads)
    cam = GradCAMPlusPlus(model=model, target_layers=[target], reshape_transform=reshape)
    try:
        s = 1e4
        acts = reshape(grads.output).numpy() / s
        theirs = np.maximum(cam.get_cam_image(images, target, None, acts, grads.gradients.numpy() * s, False), 0)
    finally:
        cam.activations_and_grads.release()
    assert ours.abs().max() > 0
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["timm_vit", "timm_swin"])
def test_sgdrop_map_on_tokens_is_the_token_sum_of_relu_gradient_times_activation(name):
    """The SGDrop map computed by hand on the layer's own output: relu(dy/dz * z) summed over the
    channels of each grid token, prefix tokens left out, laid out row-major on the grid."""
    model, images, targets, target, reshape = _case(name)
    store = {}
    handle = target.register_forward_hook(lambda _m, _i, out: store.setdefault("z", out))
    logits = model(images)
    handle.remove()
    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), store["z"])
    by_hand = torch.relu(reshape(g * store["z"])).sum(1)
    ours = attribute(model, images, targets, methods=("sgdrop",), layer=_name_of(model, target))["sgdrop"]
    grid = by_hand.shape[-2:]
    raw = layer_gradients(model, images, targets, _name_of(model, target))
    torch.testing.assert_close(torch.relu(raw.gradients * raw.activations).sum(1), by_hand.detach(),
                               rtol=1e-5, atol=1e-7)
    assert ours.shape[-2:] == images.shape[-2:] and grid == raw.activations.shape[-2:]


def test_every_layer_map_method_runs_on_a_token_grid():
    model, images, targets, _target, _r = _case("timm_vit")
    methods = ("grad_cam", "grad_cam_pp", "layercam", "sgdrop", "hirescam", "xgradcam", "eigencam", "score_cam",
               "ablation_cam")
    maps = attribute(model, images, targets, methods=methods, layer="blocks.1.norm1")
    for name in methods:
        assert maps[name].shape == (3, 32, 32) and torch.isfinite(maps[name]).all(), name


def test_ablation_cam_keeps_the_prefix_tokens_and_zeroes_one_channel_of_the_grid():
    """Ablation-CAM's ablated activations go back through the head in the layer's own token shape."""
    model, images, targets, _target, _r = _case("timm_vit")
    grads = layer_gradients(model, images, targets, "blocks.1.norm1")
    z = grads.activations.clone()
    z[:, 3] = 0
    back = grads.layout.from_map(z, grads.output[:, :1])
    assert back.shape == grads.output.shape
    torch.testing.assert_close(back[:, 0], grads.output[:, 0])  # class token untouched
    assert (back[:, 1:, 3] == 0).all() and torch.equal(back[:, 1:, 4], grads.output[:, 1:, 4])


def test_quick_attribute_says_which_layer_and_reshape_it_used():
    model, images, _t, _target, _r = _case("timm_deit_distilled")
    maps = overfocus.attribute(model, images.clamp(0, 1), mean=(0.5,) * 3, std=(0.25,) * 3)
    assert maps.layer == "blocks.1.norm1"
    assert maps.reshape == "tokens: 2 prefix tokens dropped, 16 grid tokens -> 4 x 4"
    assert maps["grad_cam"].shape == (3, 32, 32)
    swin, images, *_ = _case("timm_swin")
    maps = overfocus.attribute(swin, images)
    assert (maps.layer, maps.reshape) == ("layers.2.blocks.0.norm1", "channels last: B x 4 x 4 x C -> B x C x 4 x 4")


def test_the_issue_case_no_longer_explains_the_patch_embedding():
    """timm's vit_tiny_patch16_224 at 64 px: the map comes from the last block's 4 x 4 token grid."""
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=64, depth=2).eval()
    maps = overfocus.attribute(model, torch.rand(2, 3, 64, 64), mean=(0.5,) * 3, std=(0.25,) * 3)
    assert maps.layer == "blocks.1.norm1" and "16 grid tokens -> 4 x 4" in maps.reshape


def test_cnn_layers_keep_their_map_and_their_layer():
    model = build_model("resnet18", 3, width=0.125, small_input=True)
    x = torch.zeros(1, 3, 32, 32)
    assert find_token_layer(model, x) is None and auto_layer(model, x) == "layer4"
    assert layer_layout(model, "layer4", x) == TokenLayout()


def test_the_patch_grid_comes_from_the_patch_embedding():
    model = _timm_swin()
    assert patch_grid(model, (64, 64)) == (16, 16) and patch_grid(model, (64, 32)) == (16, 8)
    assert patch_grid(_tv_vit(), (32, 32)) == (4, 4)


def test_a_layer_that_is_no_token_grid_is_one_line():
    model, images, targets, _target, _r = _case("timm_swin")
    with pytest.raises(OverfocusError, match="per image") as err:  # window attention: B x windows rows
        attribute(model, images, targets, methods=("grad_cam",), layer="layers.0.blocks.0.attn")
    assert "\n" not in str(err.value)
    model, images, targets, *_ = _case("timm_vit")
    with pytest.raises(OverfocusError, match="pass a convolutional layer"):
        attribute(model, images, targets, methods=("grad_cam",), layer="head")


def test_a_windowed_stages_tokens_as_b_l_c_are_read_on_the_stage_grid():
    """timm Swin's norm2 outputs B x L x C (no prefix): the stage's grid, patch grid / 2**k."""
    model, images, *_ = _case("timm_swin")
    layout = layer_layout(model, "layers.1.blocks.0.norm2", images)
    assert layout == TokenLayout("tokens", (8, 8), 0)
    assert get_module(model, "layers.1.blocks.0.norm2") is not None


def test_a_token_grid_below_4_x_4_gets_the_small_layer_note():
    """The note reads the token grid (a Swin's last stage: 2 x 2 at 32 px), not dims of the tokens."""
    from overfocus.models.layers import layer_side, small_layer_note

    model, *_ = _case("torchvision_swin")
    x = torch.zeros(1, 3, 32, 32)
    assert layer_side(model, "features.5.0.norm1", x) == (2, 2)
    note = small_layer_note(model, "features.5.0.norm1", x)
    assert note.startswith("attribution layer 'features.5.0.norm1' is 2 x 2 at 32 x 32 px")
    assert small_layer_note(model, "features.5.0.norm1", torch.zeros(1, 3, 64, 64)) is None


@pytest.mark.parametrize("method", ["guided_grad_cam", "captum:LayerGradCam"])
def test_methods_that_read_the_layer_themselves_refuse_tokens_in_one_line(method):
    model, images, targets, *_ = _case("timm_vit")
    with pytest.raises(OverfocusError, match="needs a convolutional layer") as err:
        attribute(model, images, targets, methods=(method,), layer="blocks.1.norm1")
    assert "\n" not in str(err.value) and "grad_cam" in str(err.value)
