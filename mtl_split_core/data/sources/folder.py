"""``folder``: our own documented format for anything else (docs/DATA_FORMAT.md, "folder").

``DIR/index.json`` (COCO-style, ``"format": "mtl-split-folder"``) + ``images/`` + optional
``depth/`` (uint16 mm) and ``semantic/`` (uint8 ids) PNGs. Each image says which labels it has
(``labelled``), so a recording with depth only and a hand-labelled subset live in one folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mtl_split_core.data.sources.base import (
    DataSource,
    Sample,
    SourceError,
    register_source,
    split_of,
)
from mtl_split_core.data.sources.files import (
    class_names,
    intrinsics,
    read_json,
    read_label,
    read_rgb,
    xywh_box,
)

FORMAT_NAME, FORMAT_VERSION = "mtl-split-folder", 1
TASKS = ("detection", "segmentation", "depth")


@register_source("folder")
class FolderSource(DataSource):
    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        if self.options:
            raise SourceError(f"folder:{root}: unknown option(s) {sorted(self.options)}; the "
                              "folder format takes none")
        self.index_path = self.root / "index.json"
        index = read_json(self.index_path, "folder")
        where = f"folder:{self.index_path}"
        if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
            raise SourceError(f"{where}: expected \"format\": \"{FORMAT_NAME}\"")
        if index.get("version") != FORMAT_VERSION:
            raise SourceError(f"{where}: version {index.get('version')!r}, this reader knows "
                              f"{FORMAT_VERSION}")
        self.detection_classes = class_names(index.get("detection_classes"),
                                             f"{where}: detection_classes")
        self.segmentation_classes = class_names(index.get("segmentation_classes"),
                                                f"{where}: segmentation_classes")
        images, annotations = index.get("images"), index.get("annotations", [])
        if not isinstance(images, list) or not isinstance(annotations, list):
            raise SourceError(f"{where}: expected lists \"images\" and \"annotations\"")
        self._annotations: dict[int, list[dict]] = {}
        self._images = [self._check_image(img, i) for i, img in enumerate(images)]
        ids = {img["id"] for img in self._images}
        if len(ids) != len(self._images):
            raise SourceError(f"{where}: image ids repeat")
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) or \
                    ann["image_id"] not in ids:
                raise SourceError(f"{where}: annotations[{i}]: image_id names no image")
            self._annotations.setdefault(ann["image_id"], []).append(ann)
        for img in self._images:
            if self._annotations.get(img["id"]) and "detection" not in img["labelled"]:
                raise SourceError(f"{where}: image {img['id']} has annotations but its "
                                  "\"labelled\" lacks \"detection\"")
        self._images = [img for img in self._images if img["split"] == split]

    def _check_image(self, img: Any, i: int) -> dict:
        where = f"folder:{self.index_path}: images[{i}]"
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(
                img.get("file_name"), str):
            raise SourceError(f"{where}: expected an object with \"id\" (int) and \"file_name\"")
        for key in ("width", "height"):
            if not isinstance(img.get(key), int) or img[key] <= 0:
                raise SourceError(f"{where}: \"{key}\" must be a positive integer")
        labelled = img.get("labelled")
        if labelled is None:  # hand-written index: what the files and annotations give
            labelled = ["detection"] + [t for t, key in (("segmentation", "semantic_file"),
                                                         ("depth", "depth_file")) if key in img]
        if not isinstance(labelled, list) or not set(labelled) <= set(TASKS):
            raise SourceError(f"{where}: \"labelled\" must list some of {list(TASKS)}")
        for task, key in (("segmentation", "semantic_file"), ("depth", "depth_file")):
            if task in labelled and not isinstance(img.get(key), str):
                raise SourceError(f"{where}: labelled {task} but no \"{key}\"")
        split = img.get("split", split_of(img["file_name"]))
        if split not in ("train", "val", "test"):
            raise SourceError(f"{where}: split {split!r}, expected train, val or test")
        k = intrinsics(img["k"], where) if img.get("k") is not None else None
        return {**img, "labelled": frozenset(labelled), "split": split, "k": k}

    def __len__(self) -> int:
        return len(self._images)

    def may_label(self, index: int) -> frozenset[str]:
        return self._images[index]["labelled"]

    def sample(self, index: int) -> Sample:
        img = self._images[index]
        image = read_rgb(self.root / img["file_name"], "folder")
        size = (img["width"], img["height"])
        if (image.shape[1], image.shape[0]) != size:
            raise SourceError(f"folder:{self.root / img['file_name']}: size "
                              f"{image.shape[1]}x{image.shape[0]}, index.json says "
                              f"{size[0]}x{size[1]}")
        sample = Sample(name=Path(img["file_name"]).stem, image=image, k=img["k"])
        labelled = img["labelled"]
        if "detection" in labelled:
            self._boxes(sample, img)
        if "segmentation" in labelled:
            sample.semantic = read_label(self.root / img["semantic_file"], "folder", np.uint8,
                                         size)
        if "depth" in labelled:
            mm = read_label(self.root / img["depth_file"], "folder", np.uint16, size)
            sample.depth = mm.astype(np.float32) / 1000.0
        return sample

    def _boxes(self, sample: Sample, img: dict) -> None:
        boxes, classes, ignore = [], [], []
        for ann in self._annotations.get(img["id"], []):
            where = f"folder:{self.index_path}: annotation {ann.get('id')}"
            box = xywh_box(ann.get("bbox"), where)
            if ann.get("iscrowd", 0):
                ignore.append(box)
                continue
            cls = ann.get("category_id")
            if not isinstance(cls, int) or not 0 <= cls < len(self.detection_classes):
                raise SourceError(f"{where}: category_id {cls!r} out of range: expected an "
                                  f"index into the {len(self.detection_classes)} "
                                  "detection_classes")
            boxes.append(box)
            classes.append(cls)
        sample.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        sample.classes = np.asarray(classes, np.int64)
        sample.ignore_boxes = np.asarray(ignore, np.float32).reshape(-1, 4)
