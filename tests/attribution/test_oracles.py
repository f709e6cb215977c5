"""Oracle tests: our maps and metrics agree with the peer libraries of specs/METRICS.md.

What is compared, and how each peer's own conventions are taken out:
- Captum's LayerGradCam (relu_attributions=True) at layer resolution, and with its upsampling
  switched to bilinear at input size.
- pytorch-grad-cam's GradCAM / LayerCAM: their `__call__` min-max normalises each map and
  resizes it with OpenCV, so we compare BEFORE that step: we run their activation/gradient hooks
  (`activations_and_grads`) and backward exactly as their `forward` does, then call their
  `get_cam_image` and clip at 0 as their `compute_cam_per_layer` does; that is the raw map at
  layer resolution.
- Quantus' PointingGame and AttributionLocalisation on positive maps with non-empty masks and a
  unique maximum. By design Quantus differs elsewhere: it normalises by the max (scale-free for
  both metrics, so harmless), adds 1e-9 to the energy denominator, has no tolerance (ours is set
  to 0), counts ANY tied maximum inside the mask as a hit (ours: the first maximum in raster
  order), and for an empty mask writes NaN into a bool array, i.e. reports a hit (ours: NaN).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from overfocus.attribution import attribute, layer_cams
from overfocus.metrics import METRICS, boxes_to_masks
from overfocus.models import build_model, get_module

MODELS = [("vgg11", "features", dict(width=0.125, small_input=True)),
          ("resnet18", "layer4", dict(width=0.125, small_input=True)),
          ("cifarnet", "block3", dict(width=0.125))]


def _case(name, kwargs, size=48):
    model = build_model(name, num_classes=5, **kwargs).eval()
    images = torch.randn(3, 3, size, size)
    targets = torch.tensor([0, 3, 4])
    return model, images, targets


def _pgc_raw(cam_cls, model, layer, images, targets):
    """pytorch-grad-cam's map before its normalisation, following its own forward()."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = cam_cls(model=model, target_layers=[get_module(model, layer)])
    try:
        outputs = cam.activations_and_grads(images)
        loss = sum(ClassifierOutputTarget(int(t))(o) for t, o in zip(targets, outputs))
        model.zero_grad()
        loss.backward()
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = cam.get_cam_image(images, get_module(model, layer), None, acts, grads, False)
    finally:
        cam.activations_and_grads.release()
    return torch.from_numpy(np.maximum(raw, 0))


@pytest.mark.parametrize("name,layer,kwargs", MODELS)
def test_grad_cam_equals_captum_layergradcam(name, layer, kwargs):
    from captum.attr import LayerAttribution, LayerGradCam

    model, images, targets = _case(name, kwargs)
    ours_raw = layer_cams(model, images, targets, layer)["grad_cam"]
    ours = attribute(model, images, targets, methods=("grad_cam",), layer=layer)["grad_cam"]
    lgc = LayerGradCam(model, get_module(model, layer))
    theirs_raw = lgc.attribute(images, target=targets, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs_raw, (48, 48), interpolate_mode="bilinear")[:, 0]
    assert ours_raw.abs().max() > 0  # a non-trivial comparison
    torch.testing.assert_close(ours_raw, theirs_raw[:, 0].detach(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-7)


# (our method, pytorch-grad-cam's class, atol). The SGDrop map equals LayerCAM because
# sum_c relu(g * z) = sum_c relu(g) * z where the layer's outputs are post-ReLU (z >= 0).
PGC_TWINS = [("grad_cam", "GradCAM", 1e-7), ("sgdrop", "LayerCAM", 1e-6)]


@pytest.mark.parametrize("ours_name,theirs_name,atol", PGC_TWINS, ids=[t[0] for t in PGC_TWINS])
@pytest.mark.parametrize("name,layer,kwargs", MODELS)
def test_layer_cam_equals_pytorch_grad_cam(name, layer, kwargs, ours_name, theirs_name, atol):
    pgc = pytest.importorskip("pytorch_grad_cam")

    model, images, targets = _case(name, kwargs)
    ours = layer_cams(model, images, targets, layer)[ours_name]
    theirs = _pgc_raw(getattr(pgc, theirs_name), model, layer, images, targets)
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=atol)


def _quantus_case(seed=0, b=6, h=24, w=30):
    """Positive maps with a unique maximum; one or two boxes per image (non-empty masks)."""
    gen = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, h, w, generator=gen) + 0.01
    boxes = []
    for i in range(b):
        x0, y0 = int(torch.randint(0, w - 8, (1,), generator=gen)), int(torch.randint(0, h - 8, (1,), generator=gen))
        box = [[x0, y0, x0 + 5 + i % 3, y0 + 3 + i % 4]]
        if i % 2:
            box.append([1, 1, 4, 9])
        boxes.append(torch.tensor(box, dtype=torch.float32))
    masks = boxes_to_masks(boxes, h, w)
    for i in range(0, b, 2):  # make half the images hit: put the peak inside the mask
        rows, cols = torch.nonzero(masks[i], as_tuple=True)
        maps[i, rows[0], cols[0]] = 5.0
    return maps, boxes, masks


def _quantus_inputs(maps, masks):
    b, h, w = maps.shape
    x = np.random.default_rng(0).random((b, 3, h, w)).astype(np.float32)
    return dict(model=None, x_batch=x, y_batch=np.zeros(b, dtype=int), a_batch=maps[:, None].numpy(),
                s_batch=masks[:, None].float().numpy(), channel_first=True)


def test_pointing_game_agrees_with_quantus():
    quantus = pytest.importorskip("quantus")
    maps, boxes, masks = _quantus_case()
    ours = METRICS.get("pointing_game").fn(maps, boxes=boxes, tolerance=0)
    theirs = quantus.PointingGame(disable_warnings=True)(**_quantus_inputs(maps, masks))
    theirs = torch.tensor([float(v) for v in theirs])
    assert 0 < ours.sum() < len(ours)  # both outcomes occur
    torch.testing.assert_close(ours, theirs)


def test_energy_pointing_game_agrees_with_quantus():
    quantus = pytest.importorskip("quantus")
    maps, boxes, masks = _quantus_case(seed=1)
    ours = METRICS.get("energy_pg").fn(maps, boxes=boxes)
    theirs = quantus.AttributionLocalisation(disable_warnings=True)(**_quantus_inputs(maps, masks))
    theirs = torch.tensor([float(v) for v in theirs])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
