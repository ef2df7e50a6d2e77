"""The KITTI object data set (``kitti:ROOT[?depth=DIR]``): images, 2D boxes, optional depth.

Layout under ROOT (the official object download)::

    training/image_2/NAME.png      RGB (left colour camera)
    training/label_2/NAME.txt      one object per line, 15 fields (below)
    training/calib/NAME.txt        optional; ``P2:`` 12 values, K = its left 3x3
    DIR/NAME.png                   optional (``?depth=DIR``): uint16, metres = p / 256, 0 = invalid

Label line: type, truncated, occluded, alpha, bbox left top right bottom (pixels, inclusive,
0-based), height width length, x y z, rotation_y. ``DontCare`` lines become ignore boxes. Boxes
become Sample's pixel edges: x2 = right + 1, y2 = bottom + 1. No segmentation. The ``testing``
folder has no labels and is not read; train/val/test is a stable hash of NAME. A frame without
a depth file has no depth label (depth maps usually cover a subset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mtl_split_core.data.sources.base import (
    DataSource,
    Sample,
    SourceError,
    register_source,
    split_of,
)
from mtl_split_core.data.sources.label_images import check_size, read_gray, read_rgb

CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
DONT_CARE = "DontCare"
LABEL_FIELDS = 15
DEPTH_SCALE = 256.0  # KITTI depth maps: uint16 value / 256 = metres
EDGE_SLACK = 1.0  # px a box edge may pass the image border (annotation rounding)


@register_source("kitti")
class KittiSource(DataSource):
    detection_classes = CLASSES

    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        unknown = set(self.options) - {"depth"}
        if unknown:
            raise SourceError(f"kitti:{root}: unknown option(s) {sorted(unknown)}, expected "
                              "only 'depth'")
        self.images = self.root / "training" / "image_2"
        if not self.images.is_dir():
            raise SourceError(f"kitti:{self.images}: missing, expected the KITTI object layout "
                              "training/image_2 (+ label_2, calib)")
        self.names = sorted(p.stem for p in self.images.glob("*.png") if split_of(p.stem) == split)
        if not self.names:
            raise SourceError(f"kitti:{self.images}: no *.png images in split {split!r}")
        self.labels = self._folder(self.root / "training" / "label_2", ".txt")
        self.calib = self._folder(self.root / "training" / "calib", ".txt")
        self.depth: Path | None = None
        if "depth" in self.options:
            self.depth = Path(self.options["depth"])
            if not self.depth.is_dir() or not any(
                    (self.depth / f"{n}.png").is_file() for n in self.names):
                raise SourceError(f"kitti:{self.depth}: expected a folder of depth maps named "
                                  f"like the images (NAME.png) covering split {split!r}")
        if self.labels is None and self.depth is None:
            raise SourceError(f"kitti:{root}: expected training/label_2 or ?depth=DIR (no "
                              "labels)")

    def _folder(self, path: Path, suffix: str) -> Path | None:
        """A per-image folder, or None if absent; present = every image has its file."""
        if not path.is_dir():
            return None
        for name in self.names:
            if not (path / f"{name}{suffix}").is_file():
                raise SourceError(f"kitti:{path / (name + suffix)}: missing, expected for image "
                                  f"{name}.png")
        return path

    def __len__(self) -> int:
        return len(self.names)

    def may_label(self, index: int) -> frozenset[str]:
        return frozenset((("detection",) if self.labels is not None else ())
                         + (("depth",) if self.depth is not None else ()))

    def sample(self, index: int) -> Sample:
        name = self.names[index]
        sample = Sample(name=name, image=read_rgb(self.images / f"{name}.png"))
        height, width = sample.image.shape[:2]
        if self.labels is not None:
            sample.boxes, sample.classes, sample.ignore_boxes = read_labels(
                self.labels / f"{name}.txt", width, height)
        if self.calib is not None:
            sample.k = read_calib(self.calib / f"{name}.txt")
        if self.depth is not None and (self.depth / f"{name}.png").is_file():
            path = self.depth / f"{name}.png"
            raw = read_gray(path, "a KITTI depth map (uint16, metres * 256)", (np.uint16,))
            check_size(raw, (height, width), path, "the depth map")
            sample.depth = raw.astype(np.float32) / DEPTH_SCALE
        return sample


def read_labels(path: Path, width: int, height: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (K, 4), classes (K,) and DontCare ignore boxes (M, 4) of one ``label_2`` file."""
    boxes, classes, ignore = [], [], []
    for number, line in enumerate(read_text(path, "a KITTI label file").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != LABEL_FIELDS:
            raise SourceError(f"{where}: {len(fields)} fields, expected {LABEL_FIELDS} (type, "
                              "truncated, occluded, alpha, bbox x4, dimensions x3, location x3, "
                              "rotation_y)")
        kind = fields[0]
        if kind != DONT_CARE and kind not in CLASSES:
            raise SourceError(f"{where}: type {kind!r}, expected one of {', '.join(CLASSES)} "
                              f"or {DONT_CARE}")
        try:
            left, top, right, bottom = (float(v) for v in fields[4:8])
        except ValueError:
            raise SourceError(f"{where}: bbox {fields[4:8]}, expected 4 numbers") from None
        box = [left, top, right + 1.0, bottom + 1.0]
        if not (all(math.isfinite(v) for v in box) and -EDGE_SLACK <= left < box[2] <= width
                + EDGE_SLACK and -EDGE_SLACK <= top < box[3] <= height + EDGE_SLACK):
            raise SourceError(f"{where}: bbox {fields[4:8]}, expected left <= right, top <= "
                              f"bottom inside the {width}x{height} image")
        box = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
               min(box[2], width), min(box[3], height)]
        if kind == DONT_CARE:
            ignore.append(box)
        else:
            boxes.append(box)
            classes.append(CLASSES.index(kind))
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64),
            np.asarray(ignore, np.float32).reshape(-1, 4))


def read_calib(path: Path) -> np.ndarray:
    """K (3x3) of the left colour camera: the left 3x3 of ``P2`` in a KITTI calib file."""
    for line in read_text(path, "a KITTI calib file").splitlines():
        key, _, values = line.partition(":")
        if key.strip() == "P2":
            try:
                p2 = np.array([float(v) for v in values.split()], np.float64)
            except ValueError:
                p2 = np.zeros(0)
            if p2.size != 12 or not np.isfinite(p2).all() or p2[0] <= 0 or p2[5] <= 0:
                raise SourceError(f"{path}: P2 {values.strip()!r}, expected 12 finite numbers "
                                  "(3x4 row-major, fx and fy > 0)")
            return p2.reshape(3, 4)[:, :3].copy()
    raise SourceError(f"{path}: no 'P2:' line, expected a KITTI calib file")


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read ({exc}), expected {what}") from None
