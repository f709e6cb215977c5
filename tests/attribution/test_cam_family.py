"""The CAM family against pytorch-grad-cam, and their batching (docs/conventions.md, "CAM family").

Each map is compared with pytorch-grad-cam's own `__call__` output (min-max scaled, resized with
OpenCV) after ours is min-max scaled the same way: 1e-5. Where the two definitions differ the test
makes the difference vanish and says why:
- grad_cam_pp: pytorch-grad-cam adds 1e-6 to the alpha denominator g^2 (2 + S g); the classifier's
  weights are scaled by 1e4 so that g^2 is far above 1e-6 (unscaled the maps differ by up to 0.15).
- score_cam: pytorch-grad-cam upsamples the masks with align_corners=True; its upsampler is swapped
  for align_corners=False (ours and the authors') for the comparison.
- eigencam: pytorch-grad-cam keeps the SVD's arbitrary sign; ours is compared with its
  sign-corrected projection, and up to the sign with its EigenCAM.
- ablation_cam on a layer with negative activations: pytorch-grad-cam writes min - 1e7 instead of
  0; ours is compared with the paper's definition computed one channel at a time.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from overfocus.attribution import attribute
from overfocus.models import build_model, get_module
from overfocus.regularizers.common import capture_output

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

MODELS = [("vgg11", "features", dict(width=0.125, small_input=True)),
          ("resnet18", "layer4", dict(width=0.125, small_input=True)),
          ("cifarnet", "block3", dict(width=0.125))]
PEERS = {"grad_cam_pp": "GradCAMPlusPlus", "hirescam": "HiResCAM", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
         "score_cam": "ScoreCAM", "ablation_cam": "AblationCAM"}
GRADIENT_CAMS = ("grad_cam_pp", "hirescam", "xgradcam", "layercam")


def _case(name, kwargs, seed=0, size=48):
    torch.manual_seed(seed)
    model = build_model(name, num_classes=5, **kwargs).eval()
    return model, torch.randn(3, 3, size, size), torch.tensor([0, 3, 4])


def _scaled(maps: torch.Tensor) -> torch.Tensor:
    """Min-max per map, as pytorch-grad-cam's scale_cam_image."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return (maps - low) / span.clamp_min(1e-12)


def _theirs(cls_name, model, layer, images, targets) -> torch.Tensor:
    cam = getattr(pgc, cls_name)(model=model, target_layers=[get_module(model, layer)])
    try:
        return torch.from_numpy(cam(images, targets=[ClassifierOutputTarget(int(t)) for t in targets]))
    finally:
        cam.activations_and_grads.release()


class _AlignCornersFalse:
    """pytorch-grad-cam's mask upsampler (UpsamplingBilinear2d) with overfocus' align_corners=False."""

    def __init__(self, size):
        self.size = size

    def __call__(self, x):
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def _scale_classifier(model: nn.Module, factor: float) -> None:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)


@pytest.mark.parametrize("method", list(PEERS))
@pytest.mark.parametrize("name,layer,kwargs", MODELS)
def test_cam_equals_pytorch_grad_cam(method, name, layer, kwargs, monkeypatch):
    model, images, targets = _case(name, kwargs)
    if method == "grad_cam_pp":
        _scale_classifier(model, 1e4)  # pytorch-grad-cam's epsilon negligible (module docstring)
    if method == "score_cam":
        monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", _AlignCornersFalse)
    ours = attribute(model, images, targets, methods=method, layer=layer)[method]
    theirs = _theirs(PEERS[method], model, layer, images, targets)
    assert ours.shape == theirs.shape == (3, 48, 48) and ours.amin() >= 0
    assert float(theirs.std()) > 0.05  # a non-trivial map
    torch.testing.assert_close(_scaled(ours), theirs, rtol=0, atol=1e-5)


def test_grad_cam_pp_differs_from_pytorch_grad_cam_only_by_its_epsilon():
    """Unscaled the gradients are ~1e-3 and pytorch-grad-cam's 1e-6 shifts alpha; growing the
    gradients makes the difference shrink towards 0 (so it is the epsilon, not the formula)."""
    gaps = []
    for factor in (1.0, 1e2, 1e4):
        model, images, targets = _case("cifarnet", dict(width=0.125))
        _scale_classifier(model, factor)
        ours = attribute(model, images, targets, methods="grad_cam_pp", layer="block3")["grad_cam_pp"]
        theirs = _theirs("GradCAMPlusPlus", model, "block3", images, targets)
        gaps.append(float((_scaled(ours) - theirs).abs().max()))
    assert gaps[0] > 1e-3 and gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5


def test_score_cam_with_pytorch_grad_cams_own_upsampling_is_close():
    """The documented difference (align_corners of the masks) moves the maps only a little."""
    model, images, targets = _case("cifarnet", dict(width=0.125))
    ours = attribute(model, images, targets, methods="score_cam", layer="block3")["score_cam"]
    theirs = _theirs("ScoreCAM", model, "block3", images, targets)
    assert float((_scaled(ours) - theirs).abs().max()) < 0.1


@pytest.mark.parametrize("name,layer,kwargs", MODELS)
def test_eigencam_equals_pytorch_grad_cam_up_to_the_svd_sign(name, layer, kwargs):
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection, get_2d_projection_with_sign_correction

    from overfocus.attribution.eigencam import first_component_projection

    model, images, targets = _case(name, kwargs)
    acts = capture_output(model, get_module(model, layer), images).detach()
    ours_raw = first_component_projection(acts)
    corrected = torch.from_numpy(get_2d_projection_with_sign_correction(acts.numpy()))
    torch.testing.assert_close(ours_raw, corrected, rtol=1e-4, atol=1e-5)
    plain = torch.from_numpy(get_2d_projection(acts.numpy()))  # what their EigenCAM uses
    for mine, theirs in zip(ours_raw, plain):
        sign = 1.0 if torch.allclose(mine, theirs, atol=1e-4) else -1.0
        torch.testing.assert_close(mine, sign * theirs, rtol=1e-4, atol=1e-5)
    ours = attribute(model, images, targets, methods="eigencam", layer=layer)["eigencam"]
    expected = scale_cam_image(np.maximum(corrected.numpy(), 0), (48, 48))
    torch.testing.assert_close(_scaled(ours), torch.from_numpy(scale_cam_image(expected)), rtol=0, atol=1e-5)


def test_eigencam_is_class_agnostic():
    model, images, _ = _case("cifarnet", dict(width=0.125))
    a = attribute(model, images, torch.tensor([0, 1, 2]), methods="eigencam", layer="block3")["eigencam"]
    b = attribute(model, images, torch.tensor([4, 4, 4]), methods="eigencam", layer="block3")["eigencam"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", GRADIENT_CAMS)
def test_gradient_cams_equal_pytorch_grad_cam_on_a_layer_with_negative_activations(method):
    """features.24 is a convolution's output (before BatchNorm and ReLU): LayerCAM is no longer
    the SGDrop map, HiResCAM's channel terms cancel, XGrad-CAM's activation sums can be negative."""
    model, images, targets = _case("vgg11", dict(width=0.125, small_input=True))
    assert float(capture_output(model, get_module(model, "features.24"), images).detach().min()) < 0
    if method == "grad_cam_pp":
        _scale_classifier(model, 1e6)  # S can be negative here: 2 + S g gets small, the epsilon weighs more
    ours = attribute(model, images, targets, methods=method, layer="features.24")[method]
    theirs = _theirs(PEERS[method], model, "features.24", images, targets)
    torch.testing.assert_close(_scaled(ours), theirs, rtol=0, atol=1e-5)


def _ablation_by_definition(model, images, targets, layer):
    """The paper's Ablation-CAM, one channel and one image at a time (zeroed through a forward hook)."""
    module = get_module(model, layer)
    acts = capture_output(model, module, images).detach()
    maps = []
    with torch.no_grad():
        for b in range(len(images)):
            y = model(images[b:b + 1])[0, targets[b]]
            weights = []
            for k in range(acts.shape[1]):
                def zero(_m, _i, out, k=k):
                    out = out.clone()
                    out[:, k] = 0
                    return out
                handle = module.register_forward_hook(zero)
                weights.append((y - model(images[b:b + 1])[0, targets[b]]) / y)
                handle.remove()
            maps.append(torch.relu((torch.stack(weights)[:, None, None] * acts[b]).sum(0)))
    return F.interpolate(torch.stack(maps)[:, None], size=images.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]


@pytest.mark.parametrize("layer", ["features", "features.24"])
def test_ablation_cam_equals_the_papers_definition(layer):
    model, images, targets = _case("vgg11", dict(width=0.125, small_input=True))
    ours = attribute(model, images, targets, methods="ablation_cam", layer=layer)["ablation_cam"]
    expected = _ablation_by_definition(model, images, targets, layer)
    assert float(expected.max()) > 0
    # y - y_k cancels in float32: the two orders of summation differ by ~1e-5 of the map's range
    torch.testing.assert_close(_scaled(ours), _scaled(expected), rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", ["score_cam", "ablation_cam"])
def test_perturbation_cams_give_the_same_maps_whatever_their_batch_size(method):
    model, images, targets = _case("cifarnet", dict(width=0.125))
    maps = {bs: attribute(model, images, targets, methods=method, layer="block3",
                          method_args={method: {"batch_size": bs}})[method] for bs in (1, 7, 10_000)}
    assert float(maps[1].max()) > 0
    # another batch size may pick another float32 kernel, and Ablation-CAM's y - y_k cancels: allow
    # 1e-5 of the map's range (a batching mistake moves whole maps, far beyond it)
    atol = 1e-5 * float(maps[1].abs().max())
    for bs in (7, 10_000):
        torch.testing.assert_close(maps[1], maps[bs], rtol=1e-5, atol=max(atol, 1e-6))


@pytest.mark.parametrize("method", ["score_cam", "ablation_cam"])
def test_perturbation_cams_are_bounded_by_their_batch_size(method):
    model, images, targets = _case("cifarnet", dict(width=0.125))
    sizes = []
    handle = model.register_forward_pre_hook(lambda _m, inp: sizes.append(inp[0].shape[0]))
    try:
        attribute(model, images, targets, methods=method, layer="block3", method_args={method: {"batch_size": 5}})
    finally:
        handle.remove()
    channels = capture_output(model, model.block3, images).shape[1]
    assert sizes[0] == len(images) and max(sizes) == 5  # the layer pass, then chunks of at most 5 copies
    if method == "score_cam":  # every (image, channel) pair once (Ablation-CAM also traces its head once)
        assert sum(sizes[1:]) == channels * len(images)


def test_gradient_cams_share_one_forward_and_backward_with_grad_cam():
    from overfocus.analysis.settings import shares_one_pass

    model, images, targets = _case("cifarnet", dict(width=0.125))
    calls = []
    handle = model.register_forward_pre_hook(lambda _m, inp: calls.append(inp[0].shape[0]))
    try:
        maps = attribute(model, images, targets, methods=("grad_cam", "sgdrop", *GRADIENT_CAMS, "eigencam"),
                         layer="block3")
    finally:
        handle.remove()
    assert calls == [3] and len(maps) == 7
    assert shares_one_pass(["grad_cam", *GRADIENT_CAMS, "eigencam"]) and not shares_one_pass(["grad_cam", "score_cam"])


def test_a_bad_batch_size_is_one_line():
    from overfocus.errors import OverfocusError

    model, images, targets = _case("cifarnet", dict(width=0.125))
    with pytest.raises(OverfocusError, match="use 1 or more"):
        attribute(model, images, targets, methods="score_cam", layer="block3",
                  method_args={"score_cam": {"batch_size": 0}})
    with pytest.raises(OverfocusError, match="did you mean 'batch_size'"):
        attribute(model, images, targets, methods="score_cam", layer="block3",
                  method_args={"score_cam": {"batchsize": 4}})
    with pytest.raises(OverfocusError, match="takes no arguments"):
        attribute(model, images, targets, methods="hirescam", layer="block3", method_args={"hirescam": {"x": 1}})
