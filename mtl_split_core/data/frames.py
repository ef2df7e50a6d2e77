"""The one place a dataset dict is built, whatever the on-disk form (folder or shards).

A dataset dict holds ``images`` (N, H, W, 3) RGB uint8, ``seg`` (N, H, W) uint8, ``depth``
(N, H, W) float32 metres (0 = invalid), ``boxes`` list of (K, 4) float32 x1y1x2y2, ``labels``
list of (K,) int64 and ``k`` (N, 9) intrinsics; ``train`` and ``evaluate`` take it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

FIELDS = ("images", "seg", "depth", "boxes", "labels", "k")
STACKED = ("images", "seg", "depth", "k")  # arrays; boxes and labels stay per-frame lists


class DatasetBuilder:
    """Collect frames one by one, then ``build()`` the dataset dict."""

    def __init__(self) -> None:
        self._fields: dict[str, list] = {key: [] for key in FIELDS}

    def add(self, image: np.ndarray, seg: np.ndarray, depth: np.ndarray, boxes: np.ndarray,
            labels: np.ndarray, k: Sequence[float]) -> None:
        for key, value in zip(FIELDS, (image, seg, depth, boxes, labels, k)):
            self._fields[key].append(value)

    def __len__(self) -> int:
        return len(self._fields["images"])

    def build(self) -> dict:
        out: dict[str, Any] = dict(self._fields)
        for key in STACKED:
            out[key] = np.stack(out[key]) if out[key] else np.zeros((0,))
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
