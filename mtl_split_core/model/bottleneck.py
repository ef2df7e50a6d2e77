"""Learned channel bottleneck at a split point: k channels on the wire instead of C."""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """1x1 conv C -> k (+BN) on the edge; 1x1 conv k -> C (+BN, ReLU6) on the server.

    The encoder output is left linear: the codec quantizes per channel between min and max,
    so an unbounded range costs nothing and keeps the code book fully used.
    """

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(channels, k, 1, bias=False), nn.BatchNorm2d(k))
        self.decoder = nn.Sequential(nn.Conv2d(k, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels), nn.ReLU6(inplace=True))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
