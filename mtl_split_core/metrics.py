"""Evaluation metrics, accumulated over frames (numpy only).

- Detection: COCO-style AP per class (101-point interpolation, greedy matching by score, each
  ground truth matched once), mAP@0.5 and mAP@0.5:0.95 over classes that have ground truth.
- Segmentation: confusion matrix -> per-class IoU, mIoU (classes absent from both ground truth
  and prediction are NaN and left out), pixel accuracy; 255 = ignore.
- Depth: AbsRel, RMSE, delta < 1.25^k over valid pixels (ground truth > 0 and finite).
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1y1x2y2 boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class DetectionMetric:
    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        # per class: list of (score, matched flags per IoU threshold); and GT counts
        self.scores = [[] for _ in range(num_classes)]
        self.matches = [[] for _ in range(num_classes)]
        self.num_gt = np.zeros(num_classes, np.int64)

    def update(self, boxes, scores, labels, gt_boxes, gt_labels) -> None:
        boxes, scores = np.asarray(boxes).reshape(-1, 4), np.asarray(scores).ravel()
        labels, gt_labels = np.asarray(labels).ravel(), np.asarray(gt_labels).ravel()
        gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
        for c in range(self.num_classes):
            gt = gt_boxes[gt_labels == c]
            self.num_gt[c] += len(gt)
            sel = labels == c
            if not sel.any():
                continue
            order = np.argsort(-scores[sel], kind="stable")
            pred, pred_scores = boxes[sel][order], scores[sel][order]
            ious = box_iou(pred, gt)
            matched = np.zeros((len(pred), len(IOU_THRESHOLDS)), bool)
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(gt), bool)
                for i in range(len(pred)):
                    if not len(gt):
                        break
                    cand = np.where(~taken, ious[i], -1.0)
                    j = int(np.argmax(cand))
                    if cand[j] >= thr:
                        taken[j] = True
                        matched[i, t] = True
            self.scores[c].extend(pred_scores.tolist())
            self.matches[c].append(matched)

    def ap(self, c: int) -> np.ndarray:
        """AP of class c at each IoU threshold (NaN without ground truth)."""
        if self.num_gt[c] == 0:
            return np.full(len(IOU_THRESHOLDS), np.nan)
        if not self.scores[c]:
            return np.zeros(len(IOU_THRESHOLDS))
        order = np.argsort(-np.asarray(self.scores[c]), kind="stable")
        matched = np.concatenate(self.matches[c])[order]
        tp = np.cumsum(matched, 0)
        fp = np.cumsum(~matched, 0)
        recall = tp / self.num_gt[c]
        precision = tp / np.maximum(tp + fp, 1)
        out = []
        for t in range(len(IOU_THRESHOLDS)):
            # Precision envelope, sampled at 101 recall points (COCO).
            prec = np.maximum.accumulate(precision[::-1, t])[::-1]
            idx = np.searchsorted(recall[:, t], np.linspace(0, 1, 101), side="left")
            out.append(np.mean([prec[i] if i < len(prec) else 0.0 for i in idx]))
        return np.asarray(out)

    def compute(self) -> dict:
        aps = np.stack([self.ap(c) for c in range(self.num_classes)])
        has = self.num_gt > 0
        return {"mAP50": float(np.mean(aps[has, 0])) if has.any() else float("nan"),
                "mAP50_95": float(np.mean(aps[has])) if has.any() else float("nan"),
                "AP50_per_class": aps[:, 0].tolist()}


class SegmentationMetric:
    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred, target) -> None:
        pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
        valid = (target != self.ignore) & (target < self.num_classes)
        idx = target[valid].astype(np.int64) * self.num_classes + pred[valid].astype(np.int64)
        self.confusion += np.bincount(idx, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def compute(self) -> dict:
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        union = cm.sum(0) + cm.sum(1) - tp
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        total = cm.sum()
        return {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                "IoU_per_class": iou.tolist(),
                "pixel_accuracy": float(tp.sum() / total) if total else float("nan")}


class DepthMetric:
    def __init__(self):
        self.n = 0
        self.abs_rel = self.sq_err = 0.0
        self.delta = np.zeros(3)

    def update(self, pred, target) -> None:
        pred, target = np.asarray(pred, np.float64).ravel(), np.asarray(target, np.float64).ravel()
        valid = (target > 0) & np.isfinite(target) & np.isfinite(pred) & (pred > 0)
        p, t = pred[valid], target[valid]
        if not p.size:
            return
        self.n += p.size
        self.abs_rel += float(np.sum(np.abs(p - t) / t))
        self.sq_err += float(np.sum((p - t) ** 2))
        ratio = np.maximum(p / t, t / p)
        self.delta += [np.sum(ratio < 1.25 ** k) for k in (1, 2, 3)]

    def compute(self) -> dict:
        if not self.n:
            return {k: float("nan") for k in ("abs_rel", "rmse", "delta1", "delta2", "delta3")}
        d = self.delta / self.n
        return {"abs_rel": self.abs_rel / self.n, "rmse": float(np.sqrt(self.sq_err / self.n)),
                "delta1": float(d[0]), "delta2": float(d[1]), "delta3": float(d[2])}
