"""Building blocks of task heads (the heads themselves live with their task in
``mtl_split_core/tasks/``)."""

from __future__ import annotations

from torch import nn

from mtl_split_core.model.neck import sep_conv


def conv_head(cin: int, cout: int) -> nn.Sequential:
    """A separable 3x3 block then a 1x1 projection to ``cout`` channels (at the neck's stride)."""
    return nn.Sequential(sep_conv(cin, cin), nn.Conv2d(cin, cout, 1))
