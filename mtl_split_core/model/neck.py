"""The neck: fuses the server-side features into one stride-8 map for all heads.

Only tensors from the split point onward exist on the server, so the neck takes the stage
outputs with index >= max(split, 1) (stride 8, 16, 32 as available), top-down like a light FPN,
and upsamples to stride 8 when the split is deeper than that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sep_conv(cin: int, cout: int) -> nn.Sequential:
    """Depthwise-separable 3x3 conv + BN + ReLU: cheap on a 2-core CPU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Neck(nn.Module):
    OUT_STRIDE = 8

    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        # Laterals for stages 1..3 (strides 8, 16, 32).
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[1:])
        self.smooth = sep_conv(width, width)

    def forward(self, feats: dict[int, torch.Tensor], out_hw: tuple[int, int]) -> torch.Tensor:
        """``feats`` maps stage index -> output for the stages the server has (>= 1 used);
        ``out_hw`` is the stride-8 size (ceil(H / 8), ceil(W / 8)) of the network input."""
        levels = sorted(i for i in feats if i >= 1)
        y: torch.Tensor | None = None
        for i in reversed(levels):
            lat = self.laterals[i - 1](feats[i])
            y = lat if y is None else lat + F.interpolate(y, size=lat.shape[-2:], mode="nearest")
        if y is None:
            raise ValueError("the neck needs a stage output of index >= 1")
        # Deep splits: bring the map up to stride 8.
        if tuple(y.shape[-2:]) != tuple(out_hw):
            y = F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
        return self.smooth(y)
