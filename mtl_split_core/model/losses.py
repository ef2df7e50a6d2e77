"""Multi-task losses and target building.

Detection: CenterNet penalty-reduced focal loss on the heatmap, L1 on log size and offset at
object centres. Segmentation: cross-entropy (ignore 255). Depth: L1 on log depth over valid
pixels (scale-aware: metric depth is the product). Combined by learned uncertainty weighting
(Kendall et al. 2018: sum exp(-s_i) L_i + s_i) or fixed weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = 255


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in cells) within which a shifted box keeps IoU >= min_overlap."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def detection_targets(boxes: np.ndarray, labels: np.ndarray, out_hw: tuple[int, int],
                      num_classes: int, stride: int = 8) -> dict[str, np.ndarray]:
    """Heatmap (K, h, w) with a Gaussian per object centre (sigma = radius / 3, radius >= 0),
    and per-cell size/offset targets with a mask of the centre cells."""
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
    return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
               beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the object count."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg_weight = torch.pow(1 - target, beta)
    pos_loss = torch.log(p) * torch.pow(1 - p, alpha) * pos
    neg_loss = torch.log(1 - p) * torch.pow(p, alpha) * neg_weight * (1 - pos)
    num_pos = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos


def detection_loss(out: dict, targets: dict) -> torch.Tensor:
    mask = targets["mask"].unsqueeze(1)
    n = mask.sum().clamp(min=1.0)
    size_l1 = (F.l1_loss(out["size"].float(), targets["size"], reduction="none") * mask).sum() / n
    off_l1 = (F.l1_loss(out["offset"].float(), targets["offset"], reduction="none") * mask
              ).sum() / n
    return focal_loss(out["heatmap"], targets["heatmap"]) + 0.1 * size_l1 + off_l1


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |log pred - log gt| over pixels with gt > 0."""
    valid = target > 0
    if not valid.any():
        return pred.sum() * 0.0
    return (torch.log(pred.float()[:, 0][valid]) - torch.log(target[valid])).abs().mean()


class MultiTaskLoss(nn.Module):
    """Total loss over the enabled tasks; ``weighting`` is 'uncertainty' or 'fixed'."""

    def __init__(self, tasks, weighting: str = "uncertainty", fixed_weights: dict | None = None):
        super().__init__()
        if weighting not in ("uncertainty", "fixed"):
            raise ValueError(f"weighting {weighting!r}: expected 'uncertainty' or 'fixed'")
        self.tasks = tuple(tasks)
        self.weighting = weighting
        self.fixed = {t: 1.0 for t in self.tasks} | (fixed_weights or {})
        # s_i = log sigma_i^2, one learned scalar per task.
        self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        losses = {}
        if "detection" in self.tasks:
            losses["detection"] = detection_loss(out, batch["det_targets"])
        if "segmentation" in self.tasks:
            losses["segmentation"] = segmentation_loss(out["segmentation"], batch["seg"])
        if "depth" in self.tasks:
            losses["depth"] = depth_loss(out["depth"], batch["depth"])
        total = 0.0
        for i, task in enumerate(self.tasks):
            if self.weighting == "uncertainty":
                total = total + torch.exp(-self.log_vars[i]) * losses[task] + self.log_vars[i]
            else:
                total = total + self.fixed[task] * losses[task]
        return total, {k: float(v.detach()) for k, v in losses.items()}
