"""``coco``: COCO instance annotations (``annotations/instances_*.json``) + an images folder.

Detection: ``bbox`` [x, y, w, h] -> x1y1x2y2; ``iscrowd`` 1 -> an ignore region (no training
target, neither a hit nor a false positive in evaluation). Segmentation: each instance's
polygons or RLE rasterised with pycocotools into one semantic mask. COCO annotates every
instance of its thing categories, so a pixel outside every mask is none of them: it is labelled
``background`` (the one stuff class of this source), or 255 (ignore) with ``?background=ignore``
when mixing with sources that label stuff classes (road, wall, ...) in detail. Crowd regions and
objects without a mask (their box) are 255. No depth, no intrinsics.

Splits: without ``?ann=FILE`` the file whose name holds the split (``instances_train2017.json``
-> train, ``instances_val2017.json`` -> val); a lone file naming no split (e.g. a CVAT export,
``instances_default.json``) is split by a hash of the image file name. ``?ann=FILE`` picks the
file (its name's split applies; ``&split=all`` uses all of it for the requested split,
``&split=hash`` hashes it). ``?images=DIR`` names the images folder (default: ``DIR/<stem>``,
``DIR/images/<stem>`` or ``DIR/images``, where ``<stem>`` is ``train2017`` for
``instances_train2017.json``).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data import json_stream
from mtl_split_core.data.coco_masks import MaskError, coco_mask
from mtl_split_core.data.sources.base import (
    SPLITS,
    DataSource,
    Sample,
    SourceError,
    register_source,
    split_of,
)
from mtl_split_core.data.sources.files import class_names, read_rgb, xywh_box

OPTIONS = ("ann", "images", "split", "background")
SPLIT_MODES = ("name", "all", "hash")
BACKGROUND = "background"


def _split_in_name(name: str) -> str | None:
    """The split a file name holds (``instances_val2017.json`` -> val), if any."""
    found = [s for s in SPLITS if s in name.lower()]
    return found[0] if len(found) == 1 else None


@register_source("coco")
class CocoSource(DataSource):
    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise SourceError(f"coco:{root}: unknown option(s) {unknown}, expected some of "
                              f"{list(OPTIONS)}")
        mode = self.options.get("split", "name")
        background = self.options.get("background", "label")
        if mode not in SPLIT_MODES or background not in ("label", "ignore"):
            raise SourceError(f"coco:{root}: expected split=name|all|hash and "
                              "background=label|ignore")
        self.ann_path = self._annotation_file()
        file_split = _split_in_name(self.ann_path.stem)
        if mode == "name" and file_split is not None and file_split != split:
            raise SourceError(f"coco:{self.ann_path}: holds the {file_split} split, not "
                              f"{split}; add &split=all to use it as {split}")
        self._file: BinaryIO | None = None
        self._pid = 0
        self._read_index()
        self.images_dir = self._images_dir()
        self._background = background == "label"
        self.segmentation_classes = ((BACKGROUND,) if self._background else ()) + tuple(
            n for n in self.detection_classes if n != BACKGROUND)
        hashed = mode == "hash" or (mode == "name" and file_split is None)
        self._labels = frozenset(("detection",) + (("segmentation",) if self._has_masks
                                                   else ()))
        self._selected = np.flatnonzero(
            [split_of(self._image(i)["file_name"]) == split for i in range(len(self._ids))]
        ) if hashed else np.arange(len(self._ids))

    def _annotation_file(self) -> Path:
        if "ann" in self.options:
            path = Path(self.options["ann"])
            for candidate in (path, self.root / path, self.root / "annotations" / path):
                if candidate.is_file():
                    return candidate
            raise SourceError(f"coco:{self.root}: annotation file {path} not found (looked in "
                              f"{self.root} and {self.root / 'annotations'})")
        files = sorted((self.root / "annotations").glob("instances_*.json"))
        if not files:
            raise SourceError(f"coco:{self.root}: expected annotations/instances_*.json")
        named = [f for f in files if _split_in_name(f.stem) == self.split]
        if len(named) == 1:
            return named[0]
        if len(files) == 1 and _split_in_name(files[0].stem) is None:
            return files[0]
        raise SourceError(f"coco:{self.root}: no single annotations/instances_*{self.split}*"
                          f".json among {[f.name for f in files]}; choose one with ?ann=FILE")

    def _images_dir(self) -> Path:
        if "images" in self.options:
            path = self.root / self.options["images"]
            if not path.is_dir():
                raise SourceError(f"coco:{path}: images folder not found")
            return path
        stem = self.ann_path.stem.removeprefix("instances_")
        for path in (self.root / stem, self.root / "images" / stem, self.root / "images"):
            if path.is_dir():
                return path
        raise SourceError(f"coco:{self.root}: expected an images folder {stem}/, images/{stem}/ "
                          "or images/ (or ?images=DIR)")

    def _read_index(self) -> None:
        """Stream the annotation file once: per image its id, size and name, per annotation
        only its image and byte range (read back when its image is decoded), so memory grows
        by ~40 bytes per image and ~16 per annotation, not by the file's size."""
        where = f"coco:{self.ann_path}"
        seen: set[str] = set()
        categories: list[dict] = []
        # C arrays, not Python lists: 8 bytes an entry while 100k+ records stream by.
        ids, sizes, name_ends = array("q"), array("q"), array("q")
        names = bytearray()
        ann_image, ann_range = array("q"), array("q")
        self._has_masks = False
        try:
            for key, value, start, end in json_stream.members(self.ann_path):
                if value is json_stream.LIST:
                    seen.add(key)
                elif key == "images":
                    img = json.loads(self._raw(start, end))
                    ids.append(int(img["id"]))
                    sizes.extend((int(img["width"]), int(img["height"])))
                    names += str(img["file_name"]).encode()
                    name_ends.append(len(names))
                elif key == "annotations":
                    if not isinstance(value, dict) or not isinstance(value.get("image_id"), int):
                        raise SourceError(f"{where}: annotations[{len(ann_image)}]: image_id "
                                          "names no image")
                    ann_image.append(value["image_id"])
                    ann_range.extend((start, end))
                    # Box-only exports (e.g. CVAT's) carry empty "segmentation" lists.
                    self._has_masks = self._has_masks or bool(value.get("segmentation"))
                elif key == "categories":
                    categories.append(json.loads(self._raw(start, end)))
        except (OSError, json_stream.JsonStreamError, ValueError) as err:
            raise SourceError(f"{where}: not valid JSON ({err})") from None
        except (KeyError, TypeError) as err:
            raise SourceError(f"{where}: categories need \"id\" and \"name\", images \"id\", "
                              f"\"file_name\", \"width\" and \"height\" ({err!r})") from None
        if not {"images", "annotations", "categories"} <= seen:
            raise SourceError(f"{where}: expected lists \"images\", \"annotations\" and "
                              "\"categories\"")
        try:
            categories = sorted(categories, key=lambda c: c["id"])
            self._category_index = {int(c["id"]): i for i, c in enumerate(categories)}
            cat_names = [c["name"] for c in categories]
        except (KeyError, TypeError, ValueError) as err:
            raise SourceError(f"{where}: categories need \"id\" and \"name\" ({err!r})") from None
        self.detection_classes = class_names(cat_names, f"{where}: categories")
        self._ids = np.frombuffer(ids, np.int64).copy()
        self._sizes = np.frombuffer(sizes, np.int64).astype(np.int32).reshape(-1, 2)
        self._names = bytes(names)
        self._name_ends = np.frombuffer(name_ends, np.int64).copy()
        # Annotations grouped by image (stable: file order within an image).
        order = np.argsort(self._ids, kind="stable")
        ann_ids = np.frombuffer(ann_image, np.int64)
        ann_of = np.zeros(0, np.int64)
        if ann_ids.size:
            sorted_ids = self._ids[order]
            pos = np.clip(np.searchsorted(sorted_ids, ann_ids), 0, max(0, len(order) - 1))
            wrong = ann_ids != (sorted_ids[pos] if len(order) else ann_ids + 1)
            if wrong.any():
                raise SourceError(f"{where}: annotations[{int(np.flatnonzero(wrong)[0])}]: "
                                  "image_id names no image")
            ann_of = order[pos]
        by_image = np.argsort(ann_of, kind="stable")
        self._ann_ranges = np.frombuffer(ann_range, np.int64).reshape(-1, 2)[by_image]
        self._ann_starts = np.searchsorted(ann_of[by_image], np.arange(len(ids) + 1))

    def _raw(self, start: int, end: int) -> bytes:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = open(self.ann_path, "rb"), os.getpid()
        return json_stream.element_bytes(self._file, start, end)

    def index_bytes(self) -> int:
        return len(self._names) + sum(a.nbytes for a in (
            self._ids, self._sizes, self._name_ends, self._ann_ranges, self._ann_starts,
            self._selected))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}  # each process opens the file itself

    def _image(self, i: int) -> dict:
        """Image record ``i`` (position in the file) as the annotation file has it."""
        name = self._names[(self._name_ends[i - 1] if i else 0):self._name_ends[i]]
        return {"id": int(self._ids[i]), "file_name": name.decode(),
                "width": int(self._sizes[i, 0]), "height": int(self._sizes[i, 1]), "index": i}

    def _image_annotations(self, i: int) -> list[dict]:
        where = f"coco:{self.ann_path}"
        out = []
        for start, end in self._ann_ranges[self._ann_starts[i]:self._ann_starts[i + 1]]:
            try:
                out.append(json.loads(self._raw(int(start), int(end))))
            except (OSError, ValueError) as err:  # the file changed since it was indexed
                raise SourceError(f"{where}: cannot read an annotation back ({err})") from None
        return out

    def __len__(self) -> int:
        return len(self._selected)

    def may_label(self, index: int) -> frozenset[str]:
        return self._labels

    def sample(self, index: int) -> Sample:
        img = self._image(int(self._selected[index]))
        path = self.images_dir / img["file_name"]
        image = read_rgb(path, "coco")
        h, w = image.shape[:2]
        if (w, h) != (img["width"], img["height"]):
            raise SourceError(f"coco:{path}: size {w}x{h}, {self.ann_path.name} says "
                              f"{img['width']}x{img['height']}")
        boxes, classes, ignore = [], [], []
        semantic = np.full((h, w), 0 if self._background else IGNORE_ID, np.uint8) \
            if self._has_masks else None
        unmasked = []
        anns = self._image_annotations(img["index"])
        # Crowd regions first, then larger instances before smaller ones, so what lies in
        # front stays visible.
        for ann in sorted(anns, key=lambda a: (not a.get("iscrowd"), -_area(a))):
            where = f"coco:{self.ann_path}: annotation {ann.get('id')}"
            box = xywh_box(ann.get("bbox"), where)
            category = ann.get("category_id")
            cls = self._category_index.get(category) if isinstance(category, int) else None
            if cls is None:
                raise SourceError(f"{where}: category_id {category!r} is not "
                                  "in \"categories\"")
            crowd = bool(ann.get("iscrowd", 0))
            if crowd:
                ignore.append(box)
            elif box[2] > box[0] and box[3] > box[1]:
                boxes.append(box)
                classes.append(cls)
            if semantic is None:
                continue
            mask = _mask(ann.get("segmentation"), h, w, where)
            if mask is None:
                unmasked.append(box)
            else:
                seg_id = self.segmentation_classes.index(self.detection_classes[cls])
                semantic[mask] = IGNORE_ID if crowd else seg_id
        if semantic is not None:
            for x1, y1, x2, y2 in unmasked:  # an object without a mask: its box is unknown
                semantic[max(0, math.floor(y1)):math.ceil(y2),
                         max(0, math.floor(x1)):math.ceil(x2)] = IGNORE_ID
        return Sample(name=Path(img["file_name"]).stem, image=image,
                      boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                      classes=np.asarray(classes, np.int64),
                      ignore_boxes=np.asarray(ignore, np.float32).reshape(-1, 4),
                      semantic=semantic)


def _area(ann: dict) -> float:
    area = ann.get("area")
    return float(area) if isinstance(area, int | float) and math.isfinite(area) else 0.0


def _mask(segmentation: Any, h: int, w: int, where: str) -> np.ndarray | None:
    """(H, W) bool of a COCO ``segmentation`` (polygons, RLE or compressed RLE, checked before
    decoding: ``data/coco_masks.py``); None if empty."""
    try:
        return coco_mask(segmentation, h, w)
    except MaskError as err:
        raise SourceError(f"{where}: {err}") from None
