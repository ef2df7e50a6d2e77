"""NYU Depth V2, labelled part (``nyuv2:FILE.mat[?classes=MAP.json][&splits=splits.mat]``).

``nyu_depth_v2_labeled.mat`` (or a folder holding it) is MATLAB v7.3, i.e. HDF5. MATLAB writes
column-major, so h5py sees every array with its axes reversed: ``images`` (N, 3, W, H) uint8,
``depths`` (N, W, H) metres (in-painted, dense), ``labels`` (N, W, H) raw class ids (1..894,
0 = unlabelled), ``instances`` (N, W, H) instance number within its class; ``names`` holds the
class names (a cell array of references to char arrays).

Classes: ``?classes=MAP.json`` maps raw ids to a smaller list (e.g. the 40- or 13-class sets)
and says which classes are things (get boxes, one per (label, instance) pair; thing pixels with
instance 0 become ignore boxes); format in docs/DATA_FORMAT.md. Without it the raw ids are
the classes, named from ``names``; they must fit a uint8 mask (the full 894 do not: pass a map,
or ``?classes=none`` for images + depth only). Splits: ``?splits=splits.mat`` (the official
``trainNdxs``/``testNdxs``, 1-based; val = a stable hash tenth of trainNdxs), else a stable hash
of the frame name (``nyuv2_0001`` = MATLAB index 1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.sources.base import (
    DataSource,
    Sample,
    SourceError,
    register_source,
    split_of,
)
from mtl_split_core.data.sources.label_images import boxes_of, region_boxes
from mtl_split_core.data.sources.matfile import read_mat_arrays

FILE_NAME = "nyu_depth_v2_labeled.mat"
# Kinect RGB intrinsics published with the NYU Depth V2 toolbox (camera_params.m: fx_rgb,
# fy_rgb, cx_rgb, cy_rgb; Silberman et al., ECCV 2012), for the 640x480 images.
NYU_K = np.array([[518.857901, 0.0, 325.582449], [0.0, 519.469611, 253.736166],
                  [0.0, 0.0, 1.0]])
MAX_CLASSES = IGNORE_ID  # ids 0..254 fit a uint8 mask next to the ignore id
PAIR = 1 << 16  # (label, instance) -> label * PAIR + instance; instances are uint8

if TYPE_CHECKING:  # imported where a file is opened: only this source needs h5py
    import h5py


class ClassMap:
    """Raw NYU class id -> segmentation id / detection id, and the resulting class lists."""

    def __init__(self, names: list[str], things: list[str], raw_to_name: dict[int, str | None],
                 n_raw: int) -> None:
        stuff = [n for n in names if n not in things]
        self.segmentation_classes = tuple(stuff + things)  # stuff first, then things
        self.detection_classes = tuple(things)
        self.semantic = np.full(n_raw + 1, IGNORE_ID, np.uint8)  # raw id -> semantic id
        self.detection = np.full(n_raw + 1, -1, np.int64)        # raw id -> detection id
        for raw, name in raw_to_name.items():
            if name is not None:
                self.semantic[raw] = self.segmentation_classes.index(name)
                if name in things:
                    self.detection[raw] = things.index(name)


@register_source("nyuv2")
class Nyuv2Source(DataSource):
    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        unknown = set(self.options) - {"classes", "splits"}
        if unknown:
            raise SourceError(f"nyuv2:{root}: unknown option(s) {sorted(unknown)}, expected "
                              "'classes' and/or 'splits'")
        self.path = self.root / FILE_NAME if self.root.is_dir() else self.root
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                count = self._check_layout(f)
                raw_names = read_names(f)
                n_raw = len(raw_names) if raw_names else max_label(f["labels"])
        except OSError as exc:
            raise SourceError(f"nyuv2:{self.path}: cannot open ({exc}), expected the labelled "
                              f"NYU Depth V2 .mat (MATLAB v7.3 / HDF5)") from None
        self.classes = self._class_map(raw_names, n_raw)
        if self.classes is not None:
            self.segmentation_classes = self.classes.segmentation_classes
            self.detection_classes = self.classes.detection_classes
        self.n_raw = n_raw
        self._file: h5py.File | None = None
        self._pid = 0
        self.indices = self._split_indices(count)
        if not self.indices:
            raise SourceError(f"nyuv2:{self.path}: no frames in split {split!r}")

    def _check_layout(self, f: h5py.File) -> int:
        """Frame count, after checking every array h5py shows in MATLAB's reversed order."""
        missing = [k for k in ("images", "depths", "labels", "instances") if k not in f]
        if missing:
            raise SourceError(f"nyuv2:{self.path}: no {', '.join(missing)}, expected images, "
                              "depths, labels and instances")
        shape = f["images"].shape
        if len(shape) != 4 or shape[1] != 3 or f["images"].dtype != np.uint8:
            raise SourceError(f"nyuv2:{self.path}: images {f['images'].dtype} {shape}, expected "
                              "uint8 (N, 3, W, H) as h5py shows MATLAB's H x W x 3 x N")
        for key in ("depths", "labels", "instances"):
            if f[key].shape != (shape[0], shape[2], shape[3]) or f[key].dtype.kind not in "iuf":
                raise SourceError(f"nyuv2:{self.path}: {key} {f[key].dtype} {f[key].shape}, "
                                  f"expected numbers shaped {(shape[0], shape[2], shape[3])}")
        return int(shape[0])

    def _class_map(self, raw_names: list[str], n_raw: int) -> ClassMap | None:
        choice = self.options.get("classes")
        if choice == "none":
            return None
        if choice is not None:
            return read_class_map(Path(choice), n_raw)
        if n_raw > MAX_CLASSES:
            raise SourceError(f"nyuv2:{self.path}: {n_raw} raw classes do not fit a uint8 mask "
                              f"(at most {MAX_CLASSES}), expected ?classes=MAP.json (a class "
                              "map, docs/DATA_FORMAT.md) or ?classes=none (depth only)")
        names = raw_names or [f"class_{i}" for i in range(1, n_raw + 1)]
        return ClassMap(names, [], dict(enumerate(names, 1)), n_raw)

    def _split_indices(self, count: int) -> list[int]:
        """0-based frame indices of this split."""
        names = [frame_name(i) for i in range(count)]
        if "splits" not in self.options:
            return [i for i in range(count) if split_of(names[i]) == self.split]
        path = Path(self.options["splits"])
        arrays = read_mat_arrays(path)
        if "trainNdxs" not in arrays or "testNdxs" not in arrays:
            raise SourceError(f"{path}: arrays {sorted(arrays)}, expected trainNdxs and testNdxs")
        parts = {}
        for key in ("trainNdxs", "testNdxs"):
            values = arrays[key].ravel()
            if not np.array_equal(values, np.round(values)) or values.size and (
                    values.min() < 1 or values.max() > count):
                raise SourceError(f"{path}: {key} holds values outside 1..{count}, expected "
                                  f"1-based frame indices of {self.path.name}")
            parts[key] = (values.astype(np.int64) - 1).tolist()
        if set(parts["trainNdxs"]) & set(parts["testNdxs"]):
            raise SourceError(f"{path}: trainNdxs and testNdxs overlap, expected disjoint sets")
        if self.split == "test":
            return sorted(parts["testNdxs"])
        return sorted(i for i in parts["trainNdxs"]
                      if (split_of(names[i]) == "val") == (self.split == "val"))

    def __len__(self) -> int:
        return len(self.indices)

    def may_label(self, index: int) -> frozenset[str]:
        if self.classes is None:
            return frozenset(("depth",))
        return frozenset(("depth", "segmentation") + (
            ("detection",) if self.classes.detection_classes else ()))

    def sample(self, index: int) -> Sample:
        try:
            return self._sample(self._open(), self.indices[index])
        except OSError as exc:  # the file changed or broke since it was opened
            raise SourceError(f"nyuv2:{self.path}: cannot read ({exc}), expected the labelled "
                              "NYU Depth V2 .mat") from None

    def _open(self) -> h5py.File:
        """The .mat file, opened once per process (DataLoader workers each open their own)."""
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}  # an open HDF5 file does not pickle

    def _sample(self, f: h5py.File, i: int) -> Sample:
        image = np.ascontiguousarray(np.asarray(f["images"][i]).transpose(2, 1, 0))
        depth = np.asarray(f["depths"][i], np.float32).T
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
        sample = Sample(name=frame_name(i), image=image, depth=depth, k=NYU_K.copy())
        if self.classes is not None:
            labels = np.asarray(f["labels"][i]).T.astype(np.int64)
            if labels.min() < 0 or labels.max() > self.n_raw:
                raise SourceError(f"nyuv2:{self.path}: labels of frame {i + 1} hold "
                                  f"{labels.min()}..{labels.max()}, expected 0..{self.n_raw}")
            instances = np.asarray(f["instances"][i]).T.astype(np.int64)
            self._add_labels(sample, self.classes, labels, instances)
        return sample

    @staticmethod
    def _add_labels(sample: Sample, classes: ClassMap, labels: np.ndarray,
                    instances: np.ndarray) -> None:
        sample.semantic = classes.semantic[labels]
        if not classes.detection_classes:
            return  # no things: detection not labelled
        thing = classes.detection[labels] >= 0
        keys = labels * PAIR + instances
        pairs = np.unique(keys[thing & (instances > 0)])
        sample.boxes = boxes_of([keys == p for p in pairs.tolist()])
        sample.classes = classes.detection[pairs // PAIR]
        # Thing pixels without an instance number: no box to learn, so neither a miss nor a
        # false positive there.
        sample.ignore_boxes = region_boxes(thing & (instances == 0))


def frame_name(index: int) -> str:
    """Name of the 0-based frame ``index`` (MATLAB's 1-based index in the name)."""
    return f"nyuv2_{index + 1:04d}"


def read_names(f: h5py.File) -> list[str]:
    """Class names from the ``names`` cell array (references to uint16 char arrays), or []."""
    if "names" not in f:
        return []
    try:
        return ["".join(chr(int(c)) for c in np.asarray(f[ref]).ravel())
                for ref in np.asarray(f["names"]).ravel()]
    except (KeyError, ValueError, TypeError) as exc:
        raise SourceError(f"nyuv2:{f.filename}: names ({exc}), expected a cell array of class "
                          "names (references to char arrays)") from None


def max_label(labels: h5py.Dataset, chunk: int = 64) -> int:
    """Largest raw class id in ``labels`` (read in chunks: the full array is ~900 MB)."""
    return max(int(np.asarray(labels[i:i + chunk]).max()) for i in range(0, labels.shape[0],
                                                                            chunk))


def read_class_map(path: Path, n_raw: int) -> ClassMap:
    """A class-map JSON: {"classes": [names], "things": [names], "map": {"raw id": name|null}}."""
    try:
        data = json.loads(path.read_text())
        names, things, mapping = data["classes"], data.get("things", []), data["map"]
        raw_to_name = {int(k): v for k, v in mapping.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SourceError(f"{path}: expected a class-map JSON {{\"classes\": [...], \"things\": "
                          f"[...], \"map\": {{\"raw id\": name or null}}}} ({exc})") from None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
            and len(set(names)) == len(names) and 0 < len(names) <= MAX_CLASSES):
        raise SourceError(f"{path}: classes must be 1..{MAX_CLASSES} distinct names")
    if not isinstance(things, list) or not set(things) <= set(names):
        raise SourceError(f"{path}: things {things!r}, expected a list of names from classes")
    things = [n for n in names if n in things]  # class-list order
    for raw, name in raw_to_name.items():
        if not 1 <= raw <= n_raw:
            raise SourceError(f"{path}: raw id {raw}, expected 1..{n_raw}")
        if name is not None and name not in names:
            raise SourceError(f"{path}: raw id {raw} maps to {name!r}, expected a name from "
                              "classes or null")
    return ClassMap(names, things, raw_to_name, n_raw)
