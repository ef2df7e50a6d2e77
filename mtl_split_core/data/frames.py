"""The one place a dataset dict is built, whatever the on-disk form (folder or shards).

A dataset dict holds ``images`` (N, H, W, 3) RGB uint8, ``seg`` (N, H, W) uint8, ``depth``
(N, H, W) float32 metres (0 = invalid), ``boxes`` list of (K, 4) float32 x1y1x2y2, ``labels``
list of (K,) int64 and ``k`` (N, 9) intrinsics (a NaN row = unknown); ``train`` and
``evaluate`` take it.

Frames from data sources with partial labels also carry ``has_detection``,
``has_segmentation``, ``has_depth`` (N,) bool (a frame without a label keeps a placeholder:
no boxes, seg all 255, depth all 0), ``ignore_boxes`` (list of (M, 4) float32) and
``sample_weight`` (N,) float32 (relative probability of drawing the frame in training). A dict
without these fields means every frame is fully labelled, has no ignore regions and weight 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FIELDS = ("images", "seg", "depth", "boxes", "labels", "k")
STACKED = ("images", "seg", "depth", "k")  # arrays; boxes and labels stay per-frame lists
LABEL_TASKS = ("detection", "segmentation", "depth")
# Partial-label fields: present only when some frame was added with them.
HAS_FIELDS = tuple(f"has_{task}" for task in LABEL_TASKS)
EXTRA_FIELDS = (*HAS_FIELDS, "ignore_boxes", "sample_weight")


class DatasetBuilder:
    """Collect frames one by one, then ``build()`` the dataset dict."""

    def __init__(self) -> None:
        self._fields: dict[str, list] = {key: [] for key in FIELDS + EXTRA_FIELDS}
        self._extended = False

    def add(self, image: np.ndarray, seg: np.ndarray, depth: np.ndarray, boxes: np.ndarray,
            labels: np.ndarray, k: Sequence[float], *,
            labelled: Iterable[str] | None = None, ignore_boxes: np.ndarray | None = None,
            weight: float | None = None) -> None:
        """One frame. ``labelled``: the tasks it has labels for (None = all); ``ignore_boxes``
        (M, 4); ``weight``: its relative sampling probability (None = 1)."""
        for key, value in zip(FIELDS, (image, seg, depth, boxes, labels, k)):
            self._fields[key].append(value)
        if labelled is not None or ignore_boxes is not None or weight is not None:
            self._extended = True
        tasks = LABEL_TASKS if labelled is None else frozenset(labelled)
        for task, key in zip(LABEL_TASKS, HAS_FIELDS):
            self._fields[key].append(task in tasks)
        self._fields["ignore_boxes"].append(
            np.zeros((0, 4), np.float32) if ignore_boxes is None else ignore_boxes)
        self._fields["sample_weight"].append(1.0 if weight is None else weight)

    def __len__(self) -> int:
        return len(self._fields["images"])

    def build(self) -> dict:
        """The dataset dict; the partial-label fields only if some frame was added with them,
        so frames of fully labelled data give the same dict as before they existed."""
        out: dict[str, Any] = {key: self._fields[key] for key in FIELDS}
        for key in STACKED:
            out[key] = np.stack(out[key]) if out[key] else np.zeros((0,))
        if self._extended:
            for key in HAS_FIELDS:
                out[key] = np.asarray(self._fields[key], bool)
            out["ignore_boxes"] = self._fields["ignore_boxes"]
            out["sample_weight"] = np.asarray(self._fields["sample_weight"], np.float32)
        return out


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """``cv2.imread`` that names the file instead of returning None."""
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image


def decode_image(data: np.ndarray, flags: int, what: str) -> np.ndarray:
    """``cv2.imdecode`` that says what failed instead of returning None."""
    image = cv2.imdecode(data, flags)
    if image is None:
        raise ValueError(f"cannot decode {what}")
    return image


def indexed_frames(index: dict, splits: Sequence[str]) -> Iterator[tuple[dict, list[dict]]]:
    """(image record, its annotations) of a COCO-style ``index.json`` for the given splits."""
    anns: dict[int, list] = {}
    for a in index["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    for img in index["images"]:
        if img["split"] in splits:
            yield img, anns.get(img["id"], [])


def xyxy_boxes(annotations: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """COCO [x, y, w, h] annotations -> (K, 4) float32 x1y1x2y2 boxes and (K,) int64 labels."""
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)],
                     np.float32).reshape(-1, 4)
    return boxes, np.array([a["category_id"] for a in annotations], np.int64)
