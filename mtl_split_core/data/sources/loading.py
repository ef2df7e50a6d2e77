"""From data sources to the frames ``train`` / ``evaluate`` take, decoded on demand.

When its frame is read, every sample is checked (shapes, labels in range), its class ids are
mapped onto the model's class lists (the union of the sources' lists by name, a mapping file,
or fixed lists), and it is letterboxed into the network input with the geometry the edge uses
at run time (``preprocess.letterbox_params``): image bilinear, semantic and depth nearest
(padding 255 and 0), boxes and K through the same transform. Frames without a label keep
placeholders and a ``has_<task>`` flag of False; each source's frames share its ``@WEIGHT``
as sampling mass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.frames import ERROR, HAS_FIELDS, LABEL_TASKS, Frame, Frames
from mtl_split_core.data.sources.base import DataSource, DataSpec, Sample, SourceError
from mtl_split_core.preprocess import Transform, letterbox, letterbox_params, to_model

# The stuff class a model gets when no source names one (a model needs at least one).
DEFAULT_STUFF = "background"


@dataclass(frozen=True)
class ClassLists:
    """A model's class lists; ``segmentation_classes`` = stuff first, then the detection
    classes in order (``ModelConfig``'s rule)."""

    detection_classes: tuple[str, ...]
    segmentation_classes: tuple[str, ...]


@dataclass
class LoadedData:
    data: SourceFrames                      # the frames, decoded on demand
    detection_classes: tuple[str, ...]
    segmentation_classes: tuple[str, ...]   # stuff first, then detection classes in order
    frames: dict[str, int] = field(default_factory=dict)      # per source: its frames
    # Source class names with no model class ("name -> null" in the map, or not in fixed
    # lists): their boxes become ignore regions, their pixels 255.
    unmapped: tuple[str, ...] = ()

    @property
    def classes(self) -> ClassLists:
        return ClassLists(self.detection_classes, self.segmentation_classes)

    def summary(self) -> list[str]:
        """What was loaded, one line per fact, for the command's output."""
        lines = [f"data {name}: {n} frames" for name, n in self.frames.items()]
        if self.unmapped:
            lines.append("classes without a model class (ignored): "
                         + ", ".join(sorted(self.unmapped)))
        return lines


def _target(name: str, class_map: Mapping[str, str | None]) -> str | None:
    return class_map[name] if name in class_map else name


def union_classes(sources: Iterable[DataSource],
                  class_map: Mapping[str, str | None] | None = None) -> ClassLists:
    """The model's lists from the sources': detection classes in order of first appearance,
    then every other segmentation class as a stuff class (``background`` if there is none)."""
    class_map = class_map or {}
    sources = list(sources)
    detection: list[str] = []
    stuff: list[str] = []
    for src in sources:
        for name in src.detection_classes:
            target = _target(name, class_map)
            if target is not None and target not in detection:
                detection.append(target)
    for src in sources:
        for name in src.segmentation_classes:
            target = _target(name, class_map)
            if target is not None and target not in detection and target not in stuff:
                stuff.append(target)
    stuff = stuff or [DEFAULT_STUFF]
    return ClassLists(tuple(detection), tuple(stuff) + tuple(detection))


class _Remap:
    """One source's class ids -> the model's (-1 / 255 where the model has no such class)."""

    def __init__(self, src: DataSource, lists: ClassLists,
                 class_map: Mapping[str, str | None]) -> None:
        model_det = {n: i for i, n in enumerate(lists.detection_classes)}
        model_seg = {n: i for i, n in enumerate(lists.segmentation_classes)}
        self.det = np.array([model_det.get(_target(n, class_map) or "", -1)
                             for n in src.detection_classes], np.int64)
        self.seg = np.full(256, IGNORE_ID, np.uint8)
        self.unmapped = {n for n, i in zip(src.detection_classes, self.det) if i < 0}
        for i, name in enumerate(src.segmentation_classes[:IGNORE_ID]):
            j = model_seg.get(_target(name, class_map) or "")
            if j is None:
                self.unmapped.add(name)
            else:
                self.seg[i] = j

    def boxes(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model labels of the kept boxes, mask of the boxes whose class the model lacks)."""
        mapped = self.det[classes]
        lost = mapped < 0
        return mapped[~lost], lost

    def semantic(self, semantic: np.ndarray) -> np.ndarray:
        return self.seg[semantic]


def _box_array(boxes: np.ndarray) -> bool:
    return boxes.ndim == 2 and boxes.shape[1] == 4 and bool(np.isfinite(boxes).all())


def _check(sample: Sample, src: DataSource, where: str) -> None:
    """Shapes and label ranges: the one place every source's output is checked."""
    image = sample.image
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or \
            image.shape[2] != 3 or 0 in image.shape:
        raise SourceError(f"{where}: image must be (H, W, 3) uint8")
    hw = image.shape[:2]
    if sample.boxes is not None:
        classes = sample.classes
        if not _box_array(sample.boxes) or classes is None or classes.shape != (
                len(sample.boxes),) or not np.issubdtype(classes.dtype, np.integer):
            raise SourceError(f"{where}: boxes must be (K, 4) finite with K integer classes")
        if len(classes) and (classes.min() < 0 or classes.max() >= len(src.detection_classes)):
            raise SourceError(f"{where}: detection class {int(classes.max())} out of range: "
                              f"expected 0..{len(src.detection_classes) - 1}")
    if sample.ignore_boxes is not None and not _box_array(sample.ignore_boxes):
        raise SourceError(f"{where}: ignore boxes must be (M, 4) finite")
    if sample.semantic is not None:
        sem = sample.semantic
        if sem.dtype != np.uint8 or sem.shape != hw:
            raise SourceError(f"{where}: semantic must be uint8 of the image's size {hw}")
        bad = sem[(sem != IGNORE_ID) & (sem >= len(src.segmentation_classes))]
        if bad.size:
            raise SourceError(f"{where}: segmentation id {int(bad.max())} out of range: "
                              f"expected 0..{len(src.segmentation_classes) - 1} or 255")
    if sample.depth is not None and sample.depth.shape != hw:
        raise SourceError(f"{where}: depth must have the image's size {hw}")
    if sample.k is not None and (np.shape(sample.k) != (3, 3) or not np.isfinite(sample.k).all()):
        raise SourceError(f"{where}: k must be a finite 3x3 matrix")


def _clip(boxes: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the image, and which of them still have an area."""
    boxes = boxes.astype(np.float32).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _fit(label: np.ndarray, transform: Transform, size: tuple[int, int],
         out_wh: tuple[int, int], pad: float) -> np.ndarray:
    """A label map resized with nearest neighbour (pixel-centre aligned) into the letterbox."""
    if label.shape[::-1] != size:
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST_EXACT)
    if size == out_wh:
        return label
    out = np.full(out_wh[::-1], pad, label.dtype)
    ox, oy = int(transform[2]), int(transform[3])
    out[oy:oy + size[1], ox:ox + size[0]] = label
    return out


def letterbox_k(k: np.ndarray, transform: Transform) -> np.ndarray:
    """Intrinsics (pixel-centre convention) of the letterboxed image: a resize maps pixel edges
    linearly, so ``u' + 0.5 = sx * (u + 0.5) + ox`` (as ``geometry.Intrinsics.scaled``)."""
    sx, sy, ox, oy = transform
    a = np.array([[sx, 0, (sx - 1) / 2 + ox], [0, sy, (sy - 1) / 2 + oy], [0, 0, 1]])
    return a @ k


def _letterboxed(sample: Sample, remap: _Remap, out_wh: tuple[int, int]) -> dict:
    """The sample's arrays at the network input (placeholders where it has no label)."""
    h, w = sample.image.shape[:2]
    transform, size = letterbox_params((w, h), out_wh)
    if (w, h) == out_wh:
        image = sample.image
    else:
        x, _ = letterbox(sample.image, out_wh)
        image = np.clip(np.round(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
    boxes, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    ignore = [] if sample.ignore_boxes is None else [np.asarray(sample.ignore_boxes)]
    if sample.boxes is not None and sample.classes is not None:
        labels, lost = remap.boxes(sample.classes.astype(np.int64))
        ignore.append(sample.boxes[lost])
        boxes, keep = _clip(sample.boxes[~lost], w, h)
        boxes, labels = boxes[keep], labels[keep]
    ignore_boxes, keep = _clip(np.concatenate(ignore).reshape(-1, 4) if ignore else
                               np.zeros((0, 4), np.float32), w, h)
    seg = np.full(out_wh[::-1], IGNORE_ID, np.uint8)
    if sample.semantic is not None:
        seg = _fit(remap.semantic(sample.semantic), transform, size, out_wh, IGNORE_ID)
    depth = np.zeros(out_wh[::-1], np.float32)
    if sample.depth is not None:
        d = np.asarray(sample.depth, np.float32)
        with np.errstate(invalid="ignore"):
            d = np.where(np.isfinite(d) & (d > 0), d, np.float32(0))
        depth = _fit(d, transform, size, out_wh, 0.0)
    k = np.full(9, np.nan) if sample.k is None else letterbox_k(
        np.asarray(sample.k, np.float64), transform).reshape(9)
    return {"image": image, "seg": seg, "depth": depth,
            "boxes": to_model(boxes, transform).astype(np.float32), "labels": labels, "k": k,
            "ignore_boxes": to_model(ignore_boxes[keep], transform).astype(np.float32)}


class SourceFrames(Frames):
    """The frames of several sources' split at the network input, each decoded, checked,
    mapped onto the model's classes and letterboxed when asked for (in a DataLoader worker).
    Holds only the sources' indexes; ``len`` and ``may_label`` need no decoding."""

    def __init__(self, parts: Sequence[tuple[str, DataSource, _Remap, float]],
                 input_size: tuple[int, int]) -> None:
        self.parts, self.input_size = list(parts), input_size
        self.ends = np.cumsum([len(src) for _, src, _, _ in self.parts])
        n = int(self.ends[-1]) if len(self.ends) else 0
        self.may_label = np.zeros((n, len(LABEL_TASKS)), bool)
        self.frame_weights = np.zeros(n, np.float64)
        self.weights = self.frame_weights
        start = 0
        for (_, src, _, weight), end in zip(self.parts, self.ends):
            for j, task in enumerate(LABEL_TASKS):
                self.may_label[start:end, j] = [task in src.may_label(i)
                                                for i in range(len(src))]
            self.frame_weights[start:end] = weight / max(1, len(src))
            start = int(end)

    def __len__(self) -> int:
        return len(self.may_label)

    def index_bytes(self) -> int:
        return super().index_bytes() + sum(src.index_bytes() for _, src, _, _ in self.parts)

    def __getitem__(self, index: int) -> Frame:
        part = int(np.searchsorted(self.ends, index, side="right"))
        name, src, remap, _ = self.parts[part]
        i = int(index) - (int(self.ends[part - 1]) if part else 0)
        try:
            sample = src.sample(i)
            _check(sample, src, f"{name}: {sample.name}")
        except SourceError as err:
            return {ERROR: str(err)}
        f = _letterboxed(sample, remap, self.input_size)
        labelled = sample.labelled
        return {"images": f["image"], "seg": f["seg"], "depth": f["depth"],
                "boxes": f["boxes"], "labels": f["labels"], "k": f["k"],
                **{key: task in labelled for task, key in zip(LABEL_TASKS, HAS_FIELDS)},
                "ignore_boxes": f["ignore_boxes"],
                "sample_weight": np.float32(self.frame_weights[index])}


def load_sources(specs: Sequence[DataSpec], split: str, input_size: tuple[int, int],
                 class_map: Mapping[str, str | None] | None = None,
                 classes: ClassLists | None = None) -> LoadedData:
    """Every source's ``split`` as frames at ``input_size`` (W, H), decoded on demand.

    ``classes`` given (an existing model's lists) = map onto those; otherwise the union of the
    sources' lists after ``class_map``. A training source with no frames, or no frames at all,
    is a ``SourceError``. Opening reads each source's index (annotation files), no image.
    """
    if not specs:
        raise SourceError("data: no data source given")
    class_map = dict(class_map or {})
    opened = [(spec, spec.open(split), f"{spec.format}:{spec.path}") for spec in specs]
    names = ", ".join(name for _, _, name in opened)
    for _, src, name in opened:
        if split == "train" and len(src) == 0:
            raise SourceError(f"{name}: no train frames (an empty data set?)")
    if sum(len(src) for _, src, _ in opened) == 0:
        raise SourceError(f"data {names}: no {split} frames")
    lists = classes or union_classes((src for _, src, _ in opened), class_map)
    parts = [(name, src, _Remap(src, lists, class_map), spec.weight)
             for spec, src, name in opened]
    unmapped = sorted(set().union(*(remap.unmapped for _, _, remap, _ in parts)))
    return LoadedData(SourceFrames(parts, input_size), lists.detection_classes,
                      lists.segmentation_classes, {name: len(src) for _, src, name in opened},
                      tuple(unmapped))
