"""ResNet-18 (He et al. 2016), one of the seed paper's backbones; random initialisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.backbones.base import Backbone


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(Backbone):
    name = "resnet18"
    channels = (64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        cin, layers = 64, []
        for cout, stride in zip(self.channels, (1, 2, 2, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.ModuleList(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            x = self.stem(x)
        return self.layers[index](x)


def resnet18(pretrained: bool = False) -> ResNet18:
    if pretrained:
        raise FileNotFoundError("no ResNet-18 weights are available offline; use "
                                "pretrained=False (random init) or efficientnet_lite0")
    return ResNet18()
