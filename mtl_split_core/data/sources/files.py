"""Reading the files of a data set, with every failure a ``SourceError`` naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_split_core.data.sources.base import SourceError


def read_json(path: Path, fmt: str) -> Any:
    """A JSON file's contents; a missing or malformed file is a ``SourceError``."""
    if not path.is_file():
        raise SourceError(f"{fmt}:{path}: missing file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SourceError(f"{fmt}:{path}: not valid JSON ({err})") from None


def read_rgb(path: Path, fmt: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (grey and 16-bit images are converted)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise SourceError(f"{fmt}:{path}: missing or unreadable image")
    return np.ascontiguousarray(image[..., ::-1])


def read_label(path: Path, fmt: str, dtype: type[np.generic],
               size: tuple[int, int] | None = None) -> np.ndarray:
    """A single-channel label image stored exactly as ``dtype`` (e.g. uint8 ids, uint16 mm),
    of ``size`` (W, H) when given."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if image is None:
        raise SourceError(f"{fmt}:{path}: missing or unreadable image")
    if image.ndim != 2 or image.dtype != dtype:
        raise SourceError(f"{fmt}:{path}: expected a single-channel {np.dtype(dtype).name} "
                          f"PNG, got {image.dtype.name} with shape {image.shape}")
    if size is not None and (image.shape[1], image.shape[0]) != size:
        raise SourceError(f"{fmt}:{path}: size {image.shape[1]}x{image.shape[0]}, expected "
                          f"{size[0]}x{size[1]} like its image")
    return image


def intrinsics(values: Any, where: str) -> np.ndarray:
    """A 3x3 matrix from 9 finite numbers (row-major) with positive focal lengths."""
    try:
        k = np.asarray(values, np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: k must be 9 numbers (row-major 3x3)") from None
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise SourceError(f"{where}: k must be finite with positive fx, fy")
    return k


def class_names(values: Any, where: str) -> tuple[str, ...]:
    """A list of distinct non-empty class names."""
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise SourceError(f"{where}: expected a list of class names")
    if len(set(values)) != len(values):
        raise SourceError(f"{where}: class names repeat")
    return tuple(values)


def xywh_box(bbox: Any, where: str) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` -> (x1, y1, x2, y2)."""
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in bbox):
        raise SourceError(f"{where}: bbox must be 4 finite numbers [x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h
