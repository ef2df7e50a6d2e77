"""Evaluation metrics, accumulated over frames (numpy only).

Each metric is a small class: ``update(...)`` once per frame, ``compute() -> dict`` at the end,
``reset()`` to start over. Inputs follow docs/CONTRACTS.md (boxes x1y1x2y2 in pixels, int64
labels, 255 = ignore in segmentation, depth in metres with 0 = invalid). Bad input (wrong
shapes, out-of-range labels, non-finite values) raises ValueError rather than skewing numbers.

- Detection (COCO-style, as pycocotools without crowd regions or a per-image detection cap):
  per class, detections are matched greedily in descending score order, each to the
  highest-IoU ground truth not yet matched in the same frame, if that IoU >= the threshold;
  each ground truth is matched at most once, so duplicates are false positives. AP is the
  101-point interpolated area under the precision envelope; mAP averages over classes that
  have ground truth. ``mAP50`` uses IoU 0.5, ``mAP50_95`` averages IoU 0.50:0.05:0.95.
- Segmentation: a confusion matrix (rows ground truth, columns prediction) over non-ignored
  pixels gives per-class IoU = TP / (TP + FP + FN); classes absent from both ground truth and
  prediction have IoU NaN and are left out of mIoU. Pixel accuracy = trace / total.
- Depth: over valid pixels (ground truth finite and > 0), pixel-weighted over all frames:
  AbsRel = mean |p - t| / t, RMSE = sqrt(mean (p - t)^2), delta_k = share of max(p/t, t/p)
  < 1.25^k for k = 1, 2, 3.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mtl_split_core.classes import IGNORE_ID

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)  # 0.50, 0.55, ..., 0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's recall thresholds, same floats


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1y1x2y2 boxes -> (N, M). Degenerate boxes (zero or
    negative width/height) have area 0 and IoU 0 with everything."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_detections(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Greedy matching of detections (rows of ``ious``, already in descending score order) to
    ground truths (columns): -> (P, T) bool, True where detection i is a true positive at
    threshold t. Each ground truth is taken at most once per threshold."""
    num_pred, num_gt = ious.shape
    matched = np.zeros((num_pred, len(thresholds)), bool)
    if num_gt == 0:
        return matched
    taken = np.zeros((len(thresholds), num_gt), bool)
    rows = np.arange(len(thresholds))
    for i in range(num_pred):
        if ious[i].max() < thresholds.min():
            continue  # matches nothing at any threshold (the common case for stray boxes)
        cand = np.where(taken, -1.0, ious[i])  # (T, G): IoU with ground truths still free
        best = cand.argmax(1)
        ok = cand[rows, best] >= thresholds
        matched[i] = ok
        taken[rows[ok], best[ok]] = True
    return matched


def average_precision(scores: np.ndarray, matched: np.ndarray, num_gt: int) -> np.ndarray:
    """101-point interpolated AP per threshold from all detections of one class.

    ``scores`` (N,), ``matched`` (N, T) true-positive flags, ``num_gt`` ground truths.
    Returns (T,); NaN without ground truth, 0 without detections.
    """
    num_t = matched.shape[1]
    if num_gt == 0:
        return np.full(num_t, np.nan)
    if len(scores) == 0:
        return np.zeros(num_t)
    order = np.argsort(-np.asarray(scores), kind="stable")  # ties keep arrival order (COCO)
    tp = np.cumsum(matched[order], 0)
    fp = np.cumsum(~matched[order], 0)
    recall = tp / num_gt
    precision = tp / (tp + fp)
    # Precision envelope: the best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1], 0)[::-1]
    ap = np.zeros(num_t)
    for t in range(num_t):
        idx = np.searchsorted(recall[:, t], RECALL_POINTS, side="left")
        reached = idx < len(recall)  # recall points beyond the last detection count 0
        ap[t] = envelope[idx[reached], t].sum() / len(RECALL_POINTS)
    return ap


class DetectionMetric:
    """COCO-style mAP@0.5 and mAP@0.5:0.95 over frames."""

    def __init__(self, num_classes: int):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self.num_frames = 0
        self.num_gt = np.zeros(self.num_classes, np.int64)
        # Per class: score arrays and (P, T) match arrays, one entry per frame with detections.
        self._scores: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]
        self._matched: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]

    def update(self, boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike,
               gt_boxes: ArrayLike, gt_labels: ArrayLike) -> None:
        """Add one frame: predictions (K, 4) boxes, (K,) scores, (K,) labels; ground truth
        (M, 4) boxes, (M,) labels. Boxes x1y1x2y2 in the same pixel frame."""
        boxes = _boxes(boxes, "boxes")
        gt_boxes = _boxes(gt_boxes, "gt_boxes")
        scores = _vector(scores, "scores", len(boxes))
        labels = _labels(labels, "labels", len(boxes), self.num_classes)
        gt_labels = _labels(gt_labels, "gt_labels", len(gt_boxes), self.num_classes)
        self.num_frames += 1
        self.num_gt += np.bincount(gt_labels, minlength=self.num_classes)
        for c in np.unique(labels):
            sel = np.flatnonzero(labels == c)
            sel = sel[np.argsort(-scores[sel], kind="stable")]
            ious = box_iou(boxes[sel], gt_boxes[gt_labels == c])
            self._scores[c].append(scores[sel])
            self._matched[c].append(match_detections(ious))

    def ap(self, c: int) -> np.ndarray:
        """AP of class ``c`` at each IoU threshold (NaN without ground truth)."""
        if not self._scores[c]:
            return average_precision(np.zeros(0), np.zeros((0, len(IOU_THRESHOLDS)), bool),
                                     int(self.num_gt[c]))
        return average_precision(np.concatenate(self._scores[c]),
                                 np.concatenate(self._matched[c]), int(self.num_gt[c]))

    def compute(self) -> dict:
        """``mAP50``, ``mAP50_95`` (NaN if no class has ground truth), per-class APs (NaN for
        classes without ground truth) and ground-truth counts."""
        aps = np.stack([self.ap(c) for c in range(self.num_classes)])  # (C, T)
        has_gt = self.num_gt > 0
        return {
            "mAP50": float(aps[has_gt, 0].mean()) if has_gt.any() else float("nan"),
            "mAP50_95": float(aps[has_gt].mean()) if has_gt.any() else float("nan"),
            "AP50_per_class": aps[:, 0].tolist(),
            "AP50_95_per_class": aps.mean(1).tolist(),
            "num_gt_per_class": self.num_gt.tolist(),
            "frames": self.num_frames,
        }


class SegmentationMetric:
    """Confusion-matrix mIoU, per-class IoU and pixel accuracy over frames."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_ID):
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with class ids "
                             f"0..{num_classes - 1}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self.num_frames = 0
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one frame: integer class maps of equal shape (``target`` may hold
        ``ignore_index``); predictions must be valid class ids everywhere."""
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        for name, arr in (("pred", pred), ("target", target)):
            if arr.dtype.kind not in "iu":
                raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
        pred, target = pred.ravel().astype(np.int64), target.ravel().astype(np.int64)
        valid = target != self.ignore_index
        _check_range(target[valid], self.num_classes, "target (besides ignore_index)")
        _check_range(pred, self.num_classes, "pred")
        cells = target[valid] * self.num_classes + pred[valid]
        self.confusion += np.bincount(cells, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)
        self.num_frames += 1

    def compute(self) -> dict:
        """``mIoU``, ``IoU_per_class`` (NaN where a class is in neither ground truth nor
        prediction), ``pixel_accuracy``; NaN when no pixel was counted."""
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp  # TP + FP + FN
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        total = cm.sum()
        present = ~np.isnan(iou)
        return {
            "mIoU": float(iou[present].mean()) if present.any() else float("nan"),
            "IoU_per_class": iou.tolist(),
            "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
            "frames": self.num_frames,
        }


class DepthMetric:
    """AbsRel, RMSE and delta < 1.25^k over the valid pixels of all frames."""

    def __init__(self, min_depth: float = 1e-3):
        if not np.isfinite(min_depth) or min_depth <= 0:
            raise ValueError(f"min_depth must be finite and > 0, got {min_depth!r}")
        self.min_depth = float(min_depth)
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self.num_frames = 0
        self.num_pixels = 0
        self._abs_rel = 0.0
        self._sq_err = 0.0
        self._delta = np.zeros(3, np.int64)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one frame: predicted and ground-truth depth in metres, equal shapes.

        Pixels count where the ground truth is finite and > 0. Predictions there must be
        finite; ones below ``min_depth`` are clamped to it (a model predicting 0 is wrong, not
        excused).
        """
        pred = np.asarray(pred, np.float64)
        target = np.asarray(target, np.float64)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
        valid = np.isfinite(target) & (target > 0)
        p, t = pred[valid], target[valid]
        if not np.isfinite(p).all():
            raise ValueError(f"{int((~np.isfinite(p)).sum())} predictions at valid pixels are "
                             "NaN or Inf; expected finite depths in metres")
        p = np.maximum(p, self.min_depth)
        self.num_frames += 1
        self.num_pixels += p.size
        self._abs_rel += float(np.sum(np.abs(p - t) / t))
        self._sq_err += float(np.sum((p - t) ** 2))
        ratio = np.maximum(p / t, t / p)
        self._delta += [int(np.sum(ratio < 1.25 ** k)) for k in (1, 2, 3)]

    def compute(self) -> dict:
        """``abs_rel``, ``rmse``, ``delta1..3`` (NaN without valid pixels), ``pixels``."""
        n = self.num_pixels
        if not n:
            out = {k: float("nan") for k in ("abs_rel", "rmse", "delta1", "delta2", "delta3")}
        else:
            d = self._delta / n
            out = {"abs_rel": self._abs_rel / n, "rmse": float(np.sqrt(self._sq_err / n)),
                   "delta1": float(d[0]), "delta2": float(d[1]), "delta3": float(d[2])}
        return {**out, "pixels": n, "frames": self.num_frames}


# ---------------------------------------------------------------- input checks

def _boxes(value: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(value, np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be (K, 4) x1y1x2y2, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or Inf")
    return arr


def _vector(value: ArrayLike, name: str, length: int) -> np.ndarray:
    arr = np.asarray(value, np.float64).reshape(-1) if np.size(value) else np.zeros(0)
    if len(arr) != length:
        raise ValueError(f"{name} has {len(arr)} entries, expected {length} (one per box)")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or Inf")
    return arr


def _labels(value: ArrayLike, name: str, length: int, num_classes: int) -> np.ndarray:
    arr = np.asarray(value).reshape(-1) if np.size(value) else np.zeros(0, np.int64)
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer class ids, got dtype {arr.dtype}")
    if len(arr) != length:
        raise ValueError(f"{name} has {len(arr)} entries, expected {length} (one per box)")
    arr = arr.astype(np.int64)
    _check_range(arr, num_classes, name)
    return arr


def _check_range(ids: np.ndarray, num_classes: int, name: str) -> None:
    bad = (ids < 0) | (ids >= num_classes)
    if bad.any():
        raise ValueError(f"{name} holds class id {int(ids[bad][0])}; expected 0.."
                         f"{num_classes - 1}")
