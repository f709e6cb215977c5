"""The registered CNNs.

Widths scale every channel count (a narrow model trains on 2 CPU cores); `small_input` removes
early downsampling so that a 64 px input still gives a latent map of at least 8 x 8. With
width=1 and small_input=False, VGG, ResNet and ConvNeXt have torchvision's exact module names and
shapes, so torchvision state_dicts load into them.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torchvision.models as tvm
from torchvision.models.convnext import CNBlockConfig

from .registry import register_model

VGG_CFGS = {
    "vgg9": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M"],
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width)))


def _vgg_features(cfg: Sequence[Union[int, str]], width: float, keep_pools: int,
                  batch_norm: bool = False) -> nn.Sequential:
    """VGG conv stack; pools beyond the first `keep_pools` are dropped (small-input variant)."""
    layers: List[nn.Module] = []
    in_ch, pools = 3, 0
    for item in cfg:
        if item == "M":
            pools += 1
            if pools <= keep_pools:
                layers.append(nn.MaxPool2d(2, 2))
            continue
        out = _scaled(int(item), width)
        layers += [nn.Conv2d(in_ch, out, 3, padding=1)]
        layers += [nn.BatchNorm2d(out)] if batch_norm else []
        layers += [nn.ReLU(inplace=True)]
        in_ch = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision-compatible VGG (features / avgpool / classifier) with width and input options.

    `batch_norm`: None keeps the historical default (BatchNorm after every conv in the small-input
    variant, as torchvision's vgg*_bn; none in the full-size one); False gives the seed's BN-free
    VGG, initialised so that it trains from scratch (see `_init_vgg`); True forces BatchNorm.

    Example:
        >>> m = VGG(VGG_CFGS["vgg11"], 10, width=0.25, small_input=True, batch_norm=False)
        >>> any(isinstance(x, nn.BatchNorm2d) for x in m.modules()), m(torch.randn(2, 3, 64, 64)).shape
        (False, torch.Size([2, 10]))
    """

    def __init__(self, cfg, num_classes: int, width: float = 1.0, small_input: bool = False,
                 batch_norm: Optional[bool] = None):
        super().__init__()
        total_pools = sum(1 for c in cfg if c == "M")
        self.batch_norm = small_input if batch_norm is None else batch_norm
        self.features = _vgg_features(cfg, width, 3 if small_input else total_pools, batch_norm=self.batch_norm)
        self.seed_init = batch_norm is False  # the BN-free VGG asked for: an init that lets it train
        channels = _scaled(512, width)
        pool = 2 if small_input else 7
        hidden = _scaled(4096, width) if not small_input else _scaled(1024, width)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(hidden, num_classes))
        _init_vgg(self, small_input, self.seed_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _init_vgg(model: nn.Module, small_input: bool, bn_free: bool) -> None:
    """torchvision's VGG init; the small variant keeps PyTorch's default Linear init, whose larger
    logits at the start let a narrow model leave chance level within the first epoch.

    Without BatchNorm nothing rescales the activations, so the BN-free build (batch_norm=False)
    initialises its convs to keep their variance through the depth on the FORWARD pass: Kaiming
    with fan_in (torchvision's fan_out shrinks it at each widening conv, so the latent and the
    logits start several times smaller). Measured on Tiny-ImageNet-10 (VGG11 x0.25, 64 px, Adam
    1e-3, one seed) both leave chance within 2 epochs (test accuracy 0.274 with fan_in, 0.252 with
    fan_out). See docs/methods.md, "The seed's VGG".
    """
    mode = "fan_in" if bn_free else "fan_out"  # fan_out as before for every default build
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and not small_input:
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


for _name in VGG_CFGS:
    def _factory(num_classes: int, width: float = 1.0, small_input: bool = False,
                 batch_norm: Optional[bool] = None, _cfg=VGG_CFGS[_name]):
        return VGG(_cfg, num_classes, width, small_input, batch_norm)

    register_model(_name, "features", description=f"{_name.upper()} (torchvision layout); "
                   "small_input: 3 pools + BatchNorm (model.batch_norm=false: the seed's BN-free VGG)")(_factory)


class _ScaledResNet(tvm.ResNet):
    """torchvision ResNet whose channel counts are scaled by `width`."""

    def __init__(self, block, layers, num_classes: int, width: float, small_input: bool):
        self._width = width
        super().__init__(block, layers, num_classes=num_classes)
        stem = _scaled(64, width)
        if width != 1.0 or small_input:
            k, s, p = (3, 1, 1) if small_input else (7, 2, 3)
            self.conv1 = nn.Conv2d(3, stem, k, s, p, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
        if small_input:
            self.maxpool = nn.Identity()
        self.fc = nn.Linear(_scaled(512, width) * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # first stage: the stem's width decides the input channels
            self.inplanes = _scaled(64, self._width)
        return super()._make_layer(block, _scaled(planes, self._width), blocks, stride, dilate)


def _resnet_factory(block, layers):
    def factory(num_classes: int, width: float = 1.0, small_input: bool = False):
        return _ScaledResNet(block, layers, num_classes, width, small_input)
    return factory


register_model("resnet18", "layer4", description="ResNet-18 (torchvision layout); small_input: 3x3 stem, "
               "no max-pool")(_resnet_factory(tvm.resnet.BasicBlock, [2, 2, 2, 2]))
register_model("resnet50", "layer4", description="ResNet-50 (torchvision layout); small_input: 3x3 stem, "
               "no max-pool")(_resnet_factory(tvm.resnet.Bottleneck, [3, 4, 6, 3]))


@register_model("convnext_tiny", "features", description="ConvNeXt-Tiny (torchvision layout); "
                "small_input: stride-1 stem")
def convnext_tiny(num_classes: int, width: float = 1.0, small_input: bool = False) -> nn.Module:
    dims = [_scaled(c, width) for c in (96, 192, 384, 768)]
    depths = [3, 3, 9, 3]
    setting = [CNBlockConfig(dims[i], dims[i + 1] if i < 3 else None, depths[i]) for i in range(4)]
    model = tvm.convnext.ConvNeXt(setting, stochastic_depth_prob=0.1, num_classes=num_classes)
    if small_input:  # 64 px / 8 = 8 x 8 at the last stage
        stem = model.features[0]
        stem[0] = nn.Conv2d(3, dims[0], kernel_size=1, stride=1)
    return model


class CifarNet(nn.Module):
    """The seed's CIFAR network: three 5x5 conv blocks (96/128/256, stride 1, padding 2), each
    followed by a 3x3 max-pool of stride 2, then two FC layers of 2048 and the class logits.

    The latent layer is `block3` (output of the last conv block).
    """

    def __init__(self, num_classes: int, width: float = 1.0, small_input: bool = True):
        super().__init__()
        c1, c2, c3 = (_scaled(c, width) for c in (96, 128, 256))
        self.block1 = self._block(3, c1)
        self.block2 = self._block(c1, c2)
        self.block3 = self._block(c2, c3)
        hidden = _scaled(2048, width)
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.classifier = nn.Sequential(nn.Linear(c3 * 16, hidden), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(hidden, num_classes))

    @staticmethod
    def _block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 5, 1, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.block3(self.block2(self.block1(x)))
        return self.classifier(torch.flatten(self.pool(z), 1))


register_model("cifarnet", "block3", description="the seed's CIFAR network (3 conv blocks + 2 FC of 2048)")(
    lambda num_classes, width=1.0, small_input=True: CifarNet(num_classes, width, small_input))
