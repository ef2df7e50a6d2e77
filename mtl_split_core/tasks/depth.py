"""Monocular metric depth: positive, bounded depth at the input size; L1 on log depth over
valid pixels; result field ``depth`` (h, w) float32 metres at output resolution.

Focal-aware: with the config's ``depth_reference_focal`` the head predicts depth for that
focal length and rescales by the real camera's (``focal``, model-input pixels) / reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.metrics import DepthMetric
from mtl_split_core.model.heads import conv_head
from mtl_split_core.tasks.base import OutputSpec, PostprocessContext, Task, truth_like

if TYPE_CHECKING:
    from mtl_split_core.model.config import ModelConfig


class DepthHead(nn.Module):
    """Metric depth as a sigmoid between log(min) and log(max): positive and bounded."""

    def __init__(self, cin: int, min_depth: float, max_depth: float,
                 reference_focal: float | None = None):
        super().__init__()
        self.raw = conv_head(cin, 1)
        self.log_min, self.log_max = math.log(min_depth), math.log(max_depth)
        self.reference_focal = reference_focal

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int],
                focal: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
        raw = F.interpolate(self.raw(x), size=out_hw, mode="bilinear", align_corners=False)
        depth = torch.exp(self.log_min + torch.sigmoid(raw) * (self.log_max - self.log_min))
        if self.reference_focal is not None and focal is not None:
            scale = torch.as_tensor(focal, dtype=depth.dtype, device=depth.device) \
                / self.reference_focal
            depth = depth * scale.reshape(-1, 1, 1, 1)
        return {"depth": depth}


def frame_focals(k: Any, reference_focal: float | None,
                 device: str | torch.device = "cpu") -> torch.Tensor | None:
    """fy (model-input pixels) per frame from a dataset's ``k`` (N, 9), for the depth head.
    Frames whose intrinsics are unknown (a NaN row) get ``reference_focal``: depth as the
    reference camera would see it. None when nothing is known or without a reference (then
    depth is taken as is and the focal length plays no part)."""
    if k is None or not len(k) or reference_focal is None:
        return None
    fy = torch.from_numpy(np.asarray(k, np.float32).reshape(len(k), 9)[:, 4].copy())
    fy = torch.where(torch.isfinite(fy) & (fy > 0), fy, torch.tensor(float(reference_focal)))
    return fy.to(device)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |log pred - log gt| over pixels with gt > 0."""
    valid = target > 0
    if not valid.any():
        return pred.sum() * 0.0
    return (torch.log(pred.float()[:, 0][valid]) - torch.log(target[valid])).abs().mean()


class _DepthScore:
    def __init__(self) -> None:
        self.metric = DepthMetric()

    def update(self, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
        pred = prediction["depth"]
        self.metric.update(pred, truth_like(truth["depth"], pred))

    def compute(self) -> dict:
        return self.metric.compute()


class DepthTask(Task):
    name = "depth"
    result_fields = ("depth",)
    outputs = (OutputSpec("depth", "float_image"),
               OutputSpec("points", "point_cloud", optional=True))
    headline = {"delta1": "delta1", "abs_rel": "abs_rel"}

    def build_head(self, width: int, config: ModelConfig) -> nn.Module:
        return DepthHead(width, config.min_depth, config.max_depth,
                         config.depth_reference_focal)

    def targets(self, batch: Mapping[str, Any], config: ModelConfig) -> torch.Tensor:
        return batch["depth"]

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Any) -> torch.Tensor:
        return depth_loss(outputs["depth"], targets)

    def postprocess(self, outputs: Mapping[str, torch.Tensor], context: PostprocessContext
                    ) -> list[dict[str, Any]]:
        rows, cols = context.window()
        maps = outputs["depth"][:, 0, rows, cols].float().cpu().numpy()
        return [{"depth": m} for m in maps]

    def metric(self, config: ModelConfig) -> _DepthScore:
        return _DepthScore()
