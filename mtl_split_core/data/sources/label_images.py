"""Reading the image files of real data sets, and boxes from instance masks.

Shared by the ``cityscapes``, ``nyuv2`` and ``kitti`` sources: a read that fails names the file
and what was expected there (``SourceError``); boxes follow ``Sample``'s convention (the visible
extent of a mask, x1 y1 x2 y2 pixel edges, x2/y2 exclusive).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.data.sources.base import SourceError

GRAY_DTYPES = (np.uint8, np.uint16)


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a colour image file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path}: cannot read, expected a colour image (PNG/JPEG)")
    return np.ascontiguousarray(image[..., ::-1])


def read_gray(path: Path, what: str, dtypes: tuple[type, ...] = GRAY_DTYPES) -> np.ndarray:
    """A single-channel PNG at its own bit depth; ``what`` says what it should hold."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SourceError(f"{path}: cannot read, expected {what}")
    if image.ndim != 2 or image.dtype.type not in dtypes:
        raise SourceError(f"{path}: got {image.dtype} with shape {image.shape}, expected {what} "
                          f"(single channel, {'/'.join(np.dtype(d).name for d in dtypes)})")
    return image


def check_size(array: np.ndarray, size: tuple[int, int], path: Path, what: str) -> None:
    """``array`` must be ``size`` = (H, W) like the image it labels."""
    if array.shape[:2] != size:
        raise SourceError(f"{path}: {what} is {array.shape[1]}x{array.shape[0]}, expected the "
                          f"image's {size[1]}x{size[0]}")


def mask_box(mask: np.ndarray) -> list[float]:
    """Visible extent of a non-empty boolean mask: [x1, y1, x2, y2], x2/y2 exclusive."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def boxes_of(masks: list[np.ndarray]) -> np.ndarray:
    """(K, 4) float32 boxes of non-empty boolean masks."""
    return np.asarray([mask_box(m) for m in masks], np.float32).reshape(-1, 4)


def instance_boxes(instances: np.ndarray, instance_class: Mapping[int, int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One box per instance id in ``instance_class`` (id -> class) that occurs in ``instances``,
    in the mapping's order: (K, 4) float32 boxes and (K,) int64 classes."""
    masks, classes = [], []
    for instance, cls in instance_class.items():
        mask = instances == instance
        if mask.any():
            masks.append(mask)
            classes.append(cls)
    return boxes_of(masks), np.asarray(classes, np.int64)


def region_boxes(mask: np.ndarray) -> np.ndarray:
    """(M, 4) float32 boxes of the 8-connected regions of a boolean mask (crowd areas: one box
    per blob rather than one spanning scattered blobs)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    x, y, w, h = (stats[1:count, i].astype(np.float32) for i in range(4))
    return np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
