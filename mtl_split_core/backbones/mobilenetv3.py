"""MobileNetV3-Small (Howard et al. 2019), one of the seed paper's backbones; random init."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.backbones.base import Backbone

# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
SMALL_BLOCKS = [(3, 16, 16, True, "relu", 2),
                (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
                (5, 96, 40, True, "hswish", 2), (5, 240, 40, True, "hswish", 1),
                (5, 240, 40, True, "hswish", 1), (5, 120, 48, True, "hswish", 1),
                (5, 144, 48, True, "hswish", 1),
                (5, 288, 96, True, "hswish", 2), (5, 576, 96, True, "hswish", 1),
                (5, 576, 96, True, "hswish", 1)]
STAGE_BLOCKS = [(0, 1), (1, 3), (3, 8), (8, 11)]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _act(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = _make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.fc2 = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, kernel: int, mid: int, cout: int, se: bool, act: str,
                 stride: int) -> None:
        super().__init__()
        layers = []
        if mid != cin:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), _act(act)]
        layers += [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
                   nn.BatchNorm2d(mid), _act(act)]
        if se:
            layers.append(SqueezeExcite(mid))
        layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.skip else y


class MobileNetV3Small(Backbone):
    name = "mobilenetv3_small"
    channels = (16, 24, 48, 576)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.Hardswish(inplace=True))
        blocks, cin = [], 16
        for kernel, mid, cout, se, act, stride in SMALL_BLOCKS:
            blocks.append(InvertedResidual(cin, kernel, mid, cout, se, act, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.last = nn.Sequential(nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576),
                                  nn.Hardswish(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            x = self.stem(x)
        lo, hi = STAGE_BLOCKS[index]
        for block in self.blocks[lo:hi]:
            x = block(x)
        return self.last(x) if index == 3 else x


def mobilenetv3_small(pretrained: bool = False) -> MobileNetV3Small:
    if pretrained:
        raise FileNotFoundError("no MobileNetV3-Small weights are available offline; use "
                                "pretrained=False (random init) or efficientnet_lite0")
    return MobileNetV3Small()
