"""Task heads on the neck map, and NMS-free decoding of CenterNet detections.

Output dict of the network (N = batch, H x W = network input, h x w = H/8 x W/8):
- ``heatmap``  (N, K, h, w) class-centre logits (sigmoid -> probability);
- ``size``     (N, 2, h, w) log box width/height in input pixels;
- ``offset``   (N, 2, h, w) sub-cell centre offset in cells;
- ``segmentation`` (N, S, H, W) class logits;
- ``depth``    (N, 1, H, W) metres, in (min_depth, max_depth).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.model.decoder import sep_conv

HEATMAP_PRIOR = 0.1  # initial centre probability: bias = -log((1 - p) / p) = -2.19


def _head(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(sep_conv(cin, cin), nn.Conv2d(cin, cout, 1))


class DetectionHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.heatmap = _head(cin, num_classes)
        self.size = _head(cin, 2)
        self.offset = _head(cin, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


class SegmentationHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.logits = _head(cin, num_classes)

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.logits(x), size=out_hw, mode="bilinear", align_corners=False)


class DepthHead(nn.Module):
    """Metric depth as a sigmoid between log(min) and log(max): positive and bounded."""

    def __init__(self, cin: int, min_depth: float, max_depth: float):
        super().__init__()
        self.raw = _head(cin, 1)
        self.log_min, self.log_max = math.log(min_depth), math.log(max_depth)

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        raw = F.interpolate(self.raw(x), size=out_hw, mode="bilinear", align_corners=False)
        return torch.exp(self.log_min + torch.sigmoid(raw) * (self.log_max - self.log_min))


def decode_detections(outputs: dict, transform=(1.0, 1.0, 0.0, 0.0), score_threshold=0.3,
                      max_detections=50, source_size=None, stride: int = 8) -> list[dict]:
    """Boxes per image from CenterNet outputs, without NMS (3x3 peak extraction + top-k).

    ``transform`` = (scale_x, scale_y, offset_x, offset_y) with model_px = source_px * scale +
    offset; boxes come back in source pixels, clipped to ``source_size`` (W, H) if given.
    Returns one dict per image: ``boxes`` (K, 4) x1y1x2y2, ``class_ids`` (K,), ``scores`` (K,).
    """
    heat = torch.sigmoid(outputs["heatmap"].float())
    n, k, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, idx = peaks.flatten(1).topk(min(max_detections, k * h * w))
    cls = idx // (h * w)
    cell = idx % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    off = outputs["offset"].float().flatten(2)
    size = outputs["size"].float().flatten(2)
    gather = cell.unsqueeze(1).expand(-1, 2, -1)
    off = off.gather(2, gather)
    wh = torch.exp(size.gather(2, gather).clamp(max=12.0))
    cx = (xs + off[:, 0]) * stride
    cy = (ys + off[:, 1]) * stride
    sx, sy, ox, oy = (float(v) for v in transform)
    boxes = torch.stack([(cx - wh[:, 0] / 2 - ox) / sx, (cy - wh[:, 1] / 2 - oy) / sy,
                         (cx + wh[:, 0] / 2 - ox) / sx, (cy + wh[:, 1] / 2 - oy) / sy], -1)
    if source_size is not None:
        boxes[..., 0::2] = boxes[..., 0::2].clamp(0, source_size[0])
        boxes[..., 1::2] = boxes[..., 1::2].clamp(0, source_size[1])
    results = []
    for b in range(n):
        keep = scores[b] >= score_threshold
        results.append({"boxes": boxes[b][keep], "class_ids": cls[b][keep],
                        "scores": scores[b][keep]})
    return results
