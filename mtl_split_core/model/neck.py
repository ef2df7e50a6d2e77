"""The neck: fuses the server-side features into one stride-8 map for all heads.

Only tensors from the split point onward exist on the server, so the neck takes the stage
outputs with index >= max(split, 1) (stride 8, 16, 32 as available), top-down like a light FPN,
and upsamples to stride 8 when the split is deeper than that: in one bilinear step (the shared
neck), or, for a split with a server half of its own (card ``per_split_server``), in x2 steps
each followed by a learned residual refinement (``refine_steps``), so a deep split such as s32
gets layers at strides 16 and 8 to rebuild the detail its one level lacks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sep_conv(cin: int, cout: int) -> nn.Sequential:
    """Depthwise-separable 3x3 conv + BN + ReLU: cheap on a 2-core CPU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def residual_refine(width: int) -> nn.Sequential:
    """A separable 3x3 block added to its input; its last batch norm starts at zero scale, so
    a fresh block is the identity (a neck copied from a trained one starts as that one)."""
    last = nn.BatchNorm2d(width)
    nn.init.zeros_(last.weight)
    return nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False),
                         nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                         nn.Conv2d(width, width, 1, bias=False), last)


class Neck(nn.Module):
    OUT_STRIDE = 8

    def __init__(self, channels: tuple[int, ...], width: int, refine_steps: int = 0):
        super().__init__()
        # Laterals for stages 1..3 (strides 8, 16, 32).
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[1:])
        self.smooth = sep_conv(width, width)
        # x2 steps from the shallowest level the neck is fed down to stride 8 (none: one jump).
        self.refine = nn.ModuleList(residual_refine(width) for _ in range(refine_steps))

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
        steps = len(self.refine)
        for k, block in enumerate(self.refine):  # stride 8 * 2**(steps - 1 - k)
            scale = 2 ** (steps - 1 - k)  # ceil(ceil(H / 8) / s) = ceil(H / (8 s))
            y = F.interpolate(y, size=(math.ceil(out_hw[0] / scale),
                                       math.ceil(out_hw[1] / scale)),
                              mode="bilinear", align_corners=False)
            y = y + block(y)
        # Deep splits: bring the map up to stride 8.
        if tuple(y.shape[-2:]) != tuple(out_hw):
            y = F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
        return self.smooth(y)
