"""The Cityscapes data set (``cityscapes:ROOT``): images, fine labels, disparity -> depth.

Layout under ROOT (the official download, unpacked side by side)::

    leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png       RGB
    gtFine/{split}/{city}/{stem}_gtFine_labelIds.png        uint8 label ids (0..33)
    gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png     label id, or label id * 1000 + k
    disparity/{split}/{city}/{stem}_disparity.png           uint16, d = (p - 1) / 256, 0 = invalid
    camera/{split}/{city}/{stem}_camera.json                baseline (m), fx, fy, u0, v0 (px)

Segmentation: the 19 train classes (label id -> train id, others 255). Detection: the 8 thing
classes; one box per instance (id >= 1000), crowd regions (a thing's label id < 1000) and
instances of classes ignored in evaluation (caravan, trailer) become ignore boxes. Depth:
baseline * fx / d (metres); K from the camera JSON. ``gtFine``, ``disparity`` or ``camera``
may be absent for a split (that label is then missing; disparity needs the camera files); a
folder that is present must cover every image.

The official test labels are withheld (placeholders only): option ``?test=val`` serves
Cityscapes' ``val`` folder as the ``test`` split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.sources.base import DataSource, Sample, SourceError, register_source
from mtl_split_core.data.sources.label_images import (
    check_size,
    instance_boxes,
    read_gray,
    read_rgb,
    region_boxes,
)

# Label id -> (name, train id or None, has instances), from the official table in
# cityscapesScripts, cityscapesscripts/helpers/labels.py (github.com/mcordts/cityscapesScripts).
# Written out as data; "license plate" (id -1) never appears in label images.
LABELS: tuple[tuple[str, int | None, bool], ...] = (
    ("unlabeled", None, False), ("ego vehicle", None, False),
    ("rectification border", None, False), ("out of roi", None, False), ("static", None, False),
    ("dynamic", None, False), ("ground", None, False), ("road", 0, False),
    ("sidewalk", 1, False), ("parking", None, False), ("rail track", None, False),
    ("building", 2, False), ("wall", 3, False), ("fence", 4, False), ("guard rail", None, False),
    ("bridge", None, False), ("tunnel", None, False), ("pole", 5, False),
    ("polegroup", None, False), ("traffic light", 6, False), ("traffic sign", 7, False),
    ("vegetation", 8, False), ("terrain", 9, False), ("sky", 10, False), ("person", 11, True),
    ("rider", 12, True), ("car", 13, True), ("truck", 14, True), ("bus", 15, True),
    ("caravan", None, True), ("trailer", None, True), ("train", 16, True),
    ("motorcycle", 17, True), ("bicycle", 18, True),
)
TRAIN_CLASSES = tuple(name for name, _ in sorted(
    ((name, tid) for name, tid, _ in LABELS if tid is not None), key=lambda item: item[1]))
THING_CLASSES = tuple(name for name, tid, inst in LABELS if inst and tid is not None)
FIRST_THING = TRAIN_CLASSES.index(THING_CLASSES[0])  # train ids: 11 stuff, then the 8 things
# Label id -> train id (IGNORE_ID for void / ignored-in-eval classes), as a lookup table.
TRAIN_ID = np.array([IGNORE_ID if tid is None else tid for _, tid, _ in LABELS], np.uint8)
INSTANCE_DIVISOR = 1000  # instance image value = label id * 1000 + instance number
INSTANCE_LABEL_IDS = [i for i, (_, _, has_instances) in enumerate(LABELS) if has_instances]


@register_source("cityscapes")
class CityscapesSource(DataSource):
    detection_classes = THING_CLASSES
    segmentation_classes = TRAIN_CLASSES

    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        unknown = set(self.options) - {"test"}
        if unknown:
            raise SourceError(f"cityscapes:{root}: unknown option(s) {sorted(unknown)}, "
                              "expected only 'test'")
        folder = self.options.get("test", "test") if split == "test" else split
        images = self.root / "leftImg8bit" / folder
        self.stems = sorted(p.relative_to(images).as_posix()[:-len("_leftImg8bit.png")]
                            for p in images.glob("*/*_leftImg8bit.png"))
        if not self.stems:
            raise SourceError(f"cityscapes:{images}: no {{city}}/*_leftImg8bit.png images, "
                              f"expected the {split!r} split here")
        self.images = images
        self.labels = self._label_dir("gtFine", folder, ("_gtFine_labelIds.png",
                                                         "_gtFine_instanceIds.png"))
        self.disparity = self._label_dir("disparity", folder, ("_disparity.png",))
        self.camera = self._label_dir("camera", folder, ("_camera.json",))
        if self.disparity is not None and self.camera is None:
            raise SourceError(f"cityscapes:{root}: disparity/{folder} without camera/{folder}, "
                              "expected the camera JSONs (baseline, fx) to turn it into depth")
        if self.labels is None and self.disparity is None:
            raise SourceError(f"cityscapes:{root}: expected gtFine/{folder} or "
                              f"disparity/{folder} + camera/{folder} (no labels for {split!r})")

    @classmethod
    def labelled_splits(cls, options: Mapping[str, str]) -> tuple[str, ...]:
        # The official test folder holds placeholder labels only; ?test=val makes it labelled.
        return ("train", "val", "test") if "test" in options else ("train", "val")

    def _label_dir(self, name: str, folder: str, suffixes: tuple[str, ...]) -> Path | None:
        """The label folder for this split, or None if absent; every image must have its files."""
        path = self.root / name / folder
        if not path.is_dir():
            return None
        for stem in self.stems:
            for suffix in suffixes:
                if not (path / (stem + suffix)).is_file():
                    raise SourceError(f"cityscapes:{path / (stem + suffix)}: missing, expected "
                                      f"for image {stem}_leftImg8bit.png")
        return path

    def __len__(self) -> int:
        return len(self.stems)

    def may_label(self, index: int) -> frozenset[str]:
        return frozenset((("detection", "segmentation") if self.labels is not None else ())
                         + (("depth",) if self.disparity is not None else ()))

    def sample(self, index: int) -> Sample:
        stem = self.stems[index]
        image = read_rgb(self.images / f"{stem}_leftImg8bit.png")
        sample = Sample(name=stem.rsplit("/", 1)[-1], image=image)
        if self.labels is not None:
            self._add_labels(sample, self.labels / stem)
        if self.camera is not None:
            baseline, fx, fy, u0, v0 = read_camera(self.camera / f"{stem}_camera.json")
            sample.k = np.array([[fx, 0.0, u0], [0.0, fy, v0], [0.0, 0.0, 1.0]])
            if self.disparity is not None:
                sample.depth = depth_from_disparity(
                    self.disparity / f"{stem}_disparity.png", baseline * fx,
                    sample.image.shape[:2])
        return sample

    @staticmethod
    def _add_labels(sample: Sample, stem: Path) -> None:
        size = sample.image.shape[:2]
        label_path = Path(f"{stem}_gtFine_labelIds.png")
        label_ids = read_gray(label_path, "Cityscapes label ids 0..33")
        check_size(label_ids, size, label_path, "the label image")
        if label_ids.max() >= len(LABELS):
            raise SourceError(f"{label_path}: label id {int(label_ids.max())}, expected "
                              f"0..{len(LABELS) - 1}")
        sample.semantic = TRAIN_ID[label_ids]
        instance_path = Path(f"{stem}_gtFine_instanceIds.png")
        instances = read_gray(instance_path, "Cityscapes instance ids").astype(np.int64)
        check_size(instances, size, instance_path, "the instance image")
        label_of = np.where(instances >= INSTANCE_DIVISOR, instances // INSTANCE_DIVISOR,
                            instances)
        if label_of.max() >= len(LABELS):
            bad = int(instances.flat[np.argmax(label_of)])
            raise SourceError(f"{instance_path}: instance id {bad}, expected a label id 0..33 "
                              f"or label id * 1000 + k")
        things: dict[int, int] = {}  # instance id -> detection class
        ignored: list[int] = []      # instances of classes ignored in evaluation
        for value in np.unique(instances[instances >= INSTANCE_DIVISOR]).tolist():
            _, train_id, has_instances = LABELS[value // INSTANCE_DIVISOR]
            if not has_instances:
                raise SourceError(f"{instance_path}: instance id {value} of class "
                                  f"{LABELS[value // INSTANCE_DIVISOR][0]!r}, expected "
                                  "instances only of thing classes")
            if train_id is None:
                ignored.append(value)
            else:
                things[value] = train_id - FIRST_THING
        sample.boxes, sample.classes = instance_boxes(instances, things)
        # Crowd: thing-class pixels without an instance number (e.g. a group of cars).
        crowd = np.isin(instances, INSTANCE_LABEL_IDS)
        ignore = [region_boxes(crowd & (instances == c)) for c in np.unique(instances[crowd])]
        ignore.append(instance_boxes(instances, dict.fromkeys(ignored, 0))[0])
        sample.ignore_boxes = np.concatenate(ignore).astype(np.float32).reshape(-1, 4)


def depth_from_disparity(path: Path, baseline_fx: float, size: tuple[int, int]) -> np.ndarray:
    """Metric depth (0 = invalid) of a Cityscapes disparity PNG: baseline * fx / d."""
    raw = read_gray(path, "Cityscapes disparity (uint16, d = (p - 1) / 256)", (np.uint16,))
    check_size(raw, size, path, "the disparity image")
    disparity = (raw.astype(np.float64) - 1.0) / 256.0
    valid = disparity > 0  # p = 0 is invalid; p = 1 (d = 0) is at infinity: no depth either
    depth = np.zeros(raw.shape, np.float32)
    depth[valid] = baseline_fx / disparity[valid]
    return depth


def read_camera(path: Path) -> tuple[float, float, float, float, float]:
    """(baseline m, fx, fy, u0, v0) from a Cityscapes ``*_camera.json``."""
    try:
        camera = json.loads(path.read_text())
        values = (camera["extrinsic"]["baseline"], *(camera["intrinsic"][key]
                                                     for key in ("fx", "fy", "u0", "v0")))
        baseline, fx, fy, u0, v0 = (float(v) for v in values)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{path}: expected a Cityscapes camera JSON with extrinsic.baseline "
                          f"and intrinsic fx, fy, u0, v0 ({type(exc).__name__}: {exc})") from None
    if not all(math.isfinite(v) for v in (baseline, fx, fy, u0, v0)) or min(
            baseline, fx, fy) <= 0:
        raise SourceError(f"{path}: baseline {baseline}, fx {fx}, fy {fy}, u0 {u0}, v0 {v0}: "
                          "expected finite values, baseline and focal lengths > 0")
    return baseline, fx, fy, u0, v0
