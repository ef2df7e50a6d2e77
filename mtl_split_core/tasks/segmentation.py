"""Semantic segmentation: class logits at the input size, cross-entropy ignoring
``IGNORE_ID``; result field ``segmentation`` (h, w) uint8 class ids at output resolution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.metrics import SegmentationMetric
from mtl_split_core.model.heads import conv_head
from mtl_split_core.tasks.base import OutputSpec, PostprocessContext, Task, truth_like

if TYPE_CHECKING:
    from mtl_split_core.model.config import ModelConfig


class SegmentationHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.logits = conv_head(cin, num_classes)

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int], focal: Any = None
                ) -> dict[str, torch.Tensor]:
        return {"segmentation": F.interpolate(self.logits(x), size=out_hw, mode="bilinear",
                                              align_corners=False)}


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the pixels not ``IGNORE_ID``; 0 (not NaN) without any."""
    if not bool((target != IGNORE_ID).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_ID)


class _SegmentationScore:
    def __init__(self, num_classes: int):
        self.metric = SegmentationMetric(num_classes)

    def update(self, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
        pred = prediction["segmentation"]
        self.metric.update(pred, truth_like(truth["seg"], pred))

    def compute(self) -> dict:
        return self.metric.compute()


class SegmentationTask(Task):
    name = "segmentation"
    result_fields = ("segmentation",)
    outputs = (OutputSpec("segmentation", "class_image"),
               OutputSpec("segmentation/color", "class_color_image", optional=True))
    headline = {"mIoU": "mIoU"}

    def build_head(self, width: int, config: ModelConfig) -> nn.Module:
        return SegmentationHead(width, len(config.segmentation_classes))

    def classes(self, config: ModelConfig) -> tuple[str, ...]:
        return tuple(config.segmentation_classes)

    def targets(self, batch: Mapping[str, Any], config: ModelConfig) -> torch.Tensor:
        return batch["seg"].long()

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Any) -> torch.Tensor:
        return segmentation_loss(outputs["segmentation"], targets)

    def postprocess(self, outputs: Mapping[str, torch.Tensor], context: PostprocessContext
                    ) -> list[dict[str, Any]]:
        rows, cols = context.window()
        ids = outputs["segmentation"][:, :, rows, cols].argmax(1).to(torch.uint8).cpu().numpy()
        return [{"segmentation": m} for m in ids]

    def metric(self, config: ModelConfig) -> _SegmentationScore:
        return _SegmentationScore(len(config.segmentation_classes))
