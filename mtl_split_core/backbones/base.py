"""The backbone contract: four stages with output strides 4, 8, 16, 32.

A split point is the boundary after a stage: split ``s8`` sends the stride-8 stage output.
``run(x, start, stop)`` executes stages ``start..stop-1`` and returns each stage's output, so
the edge runs ``run(image, 0, i + 1)`` and the server ``run(z, i + 1, 4)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

STRIDES = (4, 8, 16, 32)
SPLIT_NAMES = ("s4", "s8", "s16", "s32")


class Backbone(nn.Module):
    name: str = ""
    channels: tuple[int, ...] = ()  # per stage; set by each backbone
    strides = STRIDES
    split_names = SPLIT_NAMES

    def stage(self, index: int, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def run(self, x: torch.Tensor, start: int = 0, stop: int = 4) -> list[torch.Tensor]:
        outs = []
        for i in range(start, stop):
            x = self.stage(i, x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.run(x, 0, 4)


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: ``factory(pretrained=...)`` builds it; ``pretrained`` says
    whether ImageNet weights are available offline (``pretrained=True`` works)."""

    name: str
    factory: Callable[..., Backbone]
    pretrained: bool = False
