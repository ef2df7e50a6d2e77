"""2D object detection, CenterNet-style: a class-centre heatmap, log box size and sub-cell
offset at the neck's stride; NMS-free decoding (3x3 peaks + top-k).

Network outputs (N = batch, h x w = neck map): ``heatmap`` (N, K, h, w) logits, ``size``
(N, 2, h, w) log width/height in input pixels, ``offset`` (N, 2, h, w) in cells. Loss:
penalty-reduced focal loss on the heatmap + L1 on size (x0.1) and offset at object centres.
Result fields: ``boxes`` (K, 4) x1y1x2y2 source pixels, ``class_ids`` (K,), ``scores`` (K,).

Ignore regions (COCO ``iscrowd``, KITTI ``DontCare``): there are no anchors, so what a region
can wrongly teach is "background here": heatmap cells whose centre lies inside one add no
negative (background) loss; object centres inside still count as positives. In the metric, a
detection that matches no ground truth at IoU 0.5 but lies in a region (intersection over the
detection's area >= 0.5, as COCO treats crowd boxes) is neither a true nor a false positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtl_split_core.metrics import DetectionMetric, box_iou, match_detections
from mtl_split_core.model.heads import conv_head
from mtl_split_core.model.neck import Neck
from mtl_split_core.tasks.base import OutputSpec, PostprocessContext, Task

if TYPE_CHECKING:
    from mtl_split_core.model.config import ModelConfig

HEATMAP_PRIOR = 0.1  # initial centre probability: bias = -log((1 - p) / p) = -2.19


class DetectionHead(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.heatmap = conv_head(cin, num_classes)
        self.size = conv_head(cin, 2)
        self.offset = conv_head(cin, 2)
        bias = self.heatmap[-1].bias
        assert isinstance(bias, torch.Tensor)
        nn.init.constant_(bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int] | None = None,
                focal: Any = None) -> dict[str, torch.Tensor]:
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in cells) within which a shifted box keeps IoU >= min_overlap."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def ignore_cells(ignore_boxes: np.ndarray, out_hw: tuple[int, int],
                 stride: int = Neck.OUT_STRIDE) -> np.ndarray:
    """(h, w) float32: 1 for the cells whose centre lies inside one of the (M, 4) x1y1x2y2
    ``ignore_boxes`` (input pixels), else 0."""
    h, w = out_hw
    mask = np.zeros((h, w), np.float32)
    cx = (np.arange(w) + 0.5) * stride
    cy = (np.arange(h) + 0.5) * stride
    for x1, y1, x2, y2 in np.asarray(ignore_boxes, np.float32).reshape(-1, 4):
        cols = (cx >= x1) & (cx < x2)
        rows = (cy >= y1) & (cy < y2)
        mask[np.ix_(rows, cols)] = 1.0
    return mask


def detection_targets(boxes: np.ndarray, labels: np.ndarray, out_hw: tuple[int, int],
                      num_classes: int, stride: int = Neck.OUT_STRIDE,
                      ignore_boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Heatmap (K, h, w) with a Gaussian per object centre (sigma = radius / 3, radius >= 0),
    and per-cell size/offset targets with a mask of the centre cells; with ``ignore_boxes``
    also ``ignore`` (h, w), the cells inside them (``ignore_cells``)."""
    h, w = out_hw
    heat = np.zeros((num_classes, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    mask = np.zeros((h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    for (x1, y1, x2, y2), c in zip(np.asarray(boxes, np.float32), np.asarray(labels)):
        bw, bh = x2 - x1, y2 - y1
        if bw <= 1 or bh <= 1:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        radius = max(0.0, gaussian_radius(bh / stride, bw / stride))
        sigma = max(radius, 0.5) / 3 + 1e-6
        g = np.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma ** 2)).astype(np.float32)
        heat[c] = np.maximum(heat[c], g)
        heat[c, iy, ix] = 1.0
        size[:, iy, ix] = (math.log(bw), math.log(bh))
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    out = {"heatmap": heat, "size": size, "offset": offset, "mask": mask}
    if ignore_boxes is not None:
        out["ignore"] = ignore_cells(ignore_boxes, out_hw, stride)
    return out


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
               beta: float = 4.0, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the object count.
    ``ignore`` (N, h, w): 1 where cells add no negative loss (inside ignore regions)."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_weight = torch.pow(1 - target, beta)
    if ignore is not None:
        neg_weight = neg_weight * (1 - ignore.unsqueeze(1))
    pos_loss = torch.log(p) * torch.pow(1 - p, alpha) * pos
    neg_loss = torch.log(1 - p) * torch.pow(p, alpha) * neg_weight * (1 - pos)
    num_pos = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def detection_loss(out: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
                   ) -> torch.Tensor:
    mask = targets["mask"].unsqueeze(1)
    n = mask.sum().clamp(min=1.0)
    size_l1 = (F.l1_loss(out["size"].float(), targets["size"], reduction="none") * mask).sum() / n
    off_l1 = (F.l1_loss(out["offset"].float(), targets["offset"], reduction="none") * mask
              ).sum() / n
    return focal_loss(out["heatmap"], targets["heatmap"], ignore=targets.get("ignore")) \
        + 0.1 * size_l1 + off_l1


def decode_detections(outputs: Mapping[str, torch.Tensor],
                      transform: tuple[float, ...] = (1.0, 1.0, 0.0, 0.0),
                      score_threshold: float = 0.3, max_detections: int = 50,
                      source_size: tuple[int, int] | None = None,
                      stride: int = Neck.OUT_STRIDE) -> list[dict[str, torch.Tensor]]:
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


def box_iof(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(K, M): the share of each x1y1x2y2 box's area inside each region (0 for empty boxes)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    regions = np.asarray(regions, np.float64).reshape(-1, 4)
    lt = np.maximum(boxes[:, None, :2], regions[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(-1)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


IGNORE_MATCH = 0.5  # IoU to a ground truth / IoF to an ignore region that counts as a match


def in_ignore_regions(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                      gt_boxes: np.ndarray, gt_labels: np.ndarray, ignore_boxes: np.ndarray
                      ) -> np.ndarray:
    """(K,) bool: the detections matched to an ignore region: no ground truth of their class
    matched at IoU 0.5 (greedy in score order, as the metric matches) and IoF >= 0.5 with a
    region."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    hit = np.zeros(len(boxes), bool)
    ignore_boxes = np.asarray(ignore_boxes, np.float64).reshape(-1, 4)
    if not len(boxes) or not len(ignore_boxes):
        return hit
    scores, class_ids = np.asarray(scores).reshape(-1), np.asarray(class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    matched = np.zeros(len(boxes), bool)
    for c in np.unique(class_ids):
        sel = np.flatnonzero(class_ids == c)
        sel = sel[np.argsort(-scores[sel], kind="stable")]
        ious = box_iou(boxes[sel], gt_boxes[gt_labels == c])
        matched[sel] = match_detections(ious, np.array([IGNORE_MATCH]))[:, 0]
    in_region = box_iof(boxes, ignore_boxes).max(1) >= IGNORE_MATCH
    return ~matched & in_region


class _DetectionScore:
    def __init__(self, num_classes: int):
        self.metric = DetectionMetric(num_classes)

    def update(self, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
        boxes, scores = prediction["boxes"], prediction["scores"]
        class_ids = prediction["class_ids"]
        ignore = truth.get("ignore_boxes")
        if ignore is not None and len(ignore):
            keep = ~in_ignore_regions(boxes, scores, class_ids, truth["boxes"],
                                      truth["labels"], ignore)
            boxes = np.asarray(boxes).reshape(-1, 4)[keep]
            scores = np.asarray(scores).reshape(-1)[keep]
            class_ids = np.asarray(class_ids).reshape(-1)[keep]
        self.metric.update(boxes, scores, class_ids, truth["boxes"], truth["labels"])

    def compute(self) -> dict:
        return self.metric.compute()


class DetectionTask(Task):
    name = "detection"
    result_fields = ("boxes", "class_ids", "scores")
    outputs = (OutputSpec("detections", "detections_2d"),
               OutputSpec("detections_3d", "detections_3d"),
               OutputSpec("label_info", "label_info"),
               OutputSpec("detections/markers", "box_markers_3d", optional=True))
    headline = {"mAP50": "mAP50", "mAP50_95": "mAP50_95"}

    def build_head(self, width: int, config: ModelConfig) -> nn.Module:
        return DetectionHead(width, len(config.detection_classes))

    def classes(self, config: ModelConfig) -> tuple[str, ...]:
        return tuple(config.detection_classes)

    def targets(self, batch: Mapping[str, Any], config: ModelConfig) -> dict[str, torch.Tensor]:
        hw = batch["image"].shape[-2:]
        h, w = math.ceil(hw[0] / Neck.OUT_STRIDE), math.ceil(hw[1] / Neck.OUT_STRIDE)
        ignore = batch.get("ignore_boxes")
        ts = [detection_targets(b.cpu().numpy(), lab.cpu().numpy(), (h, w),
                                len(config.detection_classes),
                                ignore_boxes=None if ignore is None else ignore[i].cpu().numpy())
              for i, (b, lab) in enumerate(zip(batch["boxes"], batch["labels"]))]
        device = batch["image"].device
        return {k: torch.from_numpy(np.stack([t[k] for t in ts])).to(device) for k in ts[0]}

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Any) -> torch.Tensor:
        return detection_loss(outputs, targets)

    def postprocess(self, outputs: Mapping[str, torch.Tensor], context: PostprocessContext
                    ) -> list[dict[str, Any]]:
        dets = decode_detections(outputs, context.transform, context.score_threshold,
                                 context.max_detections, context.source_size)
        return [{k: v.cpu().numpy() for k, v in d.items()} for d in dets]

    def metric(self, config: ModelConfig) -> _DetectionScore:
        return _DetectionScore(len(config.detection_classes))
