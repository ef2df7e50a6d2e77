"""COCO ``segmentation`` fields (polygons, RLE with list or compressed-string counts) as bool
masks, checked before anything is decoded.

pycocotools rasterises polygons (as COCO's own tools do). RLE is decoded here, after checking
that its run lengths cover the image exactly: pycocotools reads (and can write) past its buffers
for counts that do not, so a hostile or broken annotation file must never reach it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


class MaskError(ValueError):
    """A ``segmentation`` that cannot be a mask of its image (the message says why)."""


def coco_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    """(H, W) bool mask of a COCO ``segmentation``; None when it is empty (or only polygons of
    fewer than 3 points, which enclose nothing)."""
    if not segmentation:
        return None
    if isinstance(segmentation, list):
        return polygon_mask(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation.get("size", [])) != [height, width]:
            raise MaskError(f"RLE size {segmentation.get('size')} is not the image's "
                            f"[{height}, {width}] ([height, width])")
        counts = segmentation["counts"]
        if isinstance(counts, str):
            counts = rle_counts(counts)
        return rle_mask(counts, height, width)
    raise MaskError(f"segmentation of type {type(segmentation).__name__}: expected polygons "
                    "or RLE")


def rle_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string: each count is written 5 bits per
    character (offset 48, bit 0x20 = more follows, 0x10 of the last = negative); from the
    third count on, each is stored as the difference to the count two before."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(text):
                raise MaskError("a truncated compressed RLE string")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise MaskError(f"character {text[p]!r} in a compressed RLE string")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_mask(counts: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of RLE run lengths over the column-major pixels, zeros first."""
    if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts) \
            or sum(counts) != height * width:
        raise MaskError(f"RLE counts must be non-negative integers adding up to {height}x"
                        f"{width} pixels")
    values = (np.arange(len(counts)) % 2).astype(bool)
    return np.repeat(values, counts).reshape(width, height).T


def polygon_mask(polygons: list, height: int, width: int) -> np.ndarray | None:
    """Polygons [x1, y1, x2, y2, ...] in pixel-edge coordinates, rasterised by pycocotools.
    Coordinates far outside the image are refused: rasterising them costs time and memory in
    proportion to their size."""
    from pycocotools import mask as pycoco_mask

    kept = []
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) % 2 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in poly):
            raise MaskError("a polygon must be a list of finite x, y numbers")
        if len(poly) < 6:  # fewer than 3 points enclose nothing
            continue
        xs, ys = np.asarray(poly[0::2], float), np.asarray(poly[1::2], float)
        if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or \
                ys.max() > 2 * height:
            raise MaskError(f"a polygon far outside the {width}x{height} image")
        kept.append([float(v) for v in poly])
    if not kept:
        return None
    with warnings.catch_warnings():  # pycocotools' numpy 2 copy-keyword deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        rle = pycoco_mask.merge(pycoco_mask.frPyObjects(kept, height, width))
        return np.asarray(pycoco_mask.decode(rle), bool).reshape(height, width)
