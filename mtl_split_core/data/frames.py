"""The one place a dataset dict is built, whatever the on-disk form (folder or shards).

A dataset dict holds ``images`` (N, H, W, 3) RGB uint8, ``seg`` (N, H, W) uint8, ``depth``
(N, H, W) float32 metres (0 = invalid), ``boxes`` list of (K, 4) float32 x1y1x2y2, ``labels``
list of (K,) int64 and ``k`` (N, 9) intrinsics (a NaN row = unknown); ``train`` and
``evaluate`` take it.

Frames from data sources with partial labels also carry ``has_detection``,
``has_segmentation``, ``has_depth`` (N,) bool (a frame without a label keeps a placeholder:
no boxes, seg all 255, depth all 0), ``ignore_boxes`` (list of (M, 4) float32) and
``sample_weight`` (N,) float32 (relative probability of drawing the frame in training). A dict
without these fields means every frame is fully labelled, has no ignore regions and weight 1.

Large data sets never become such a dict: a ``Frames`` object (a map-style torch ``Dataset``)
decodes frame ``i`` on demand, in the DataLoader's worker processes, as the same per-frame dict
(``frame_truth`` of the dataset dict); what training needs before decoding (the labels a frame
may carry, its sampling weight) it holds for every frame as small arrays.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mtl_split_core.errors import InputError

FIELDS = ("images", "seg", "depth", "boxes", "labels", "k")
STACKED = ("images", "seg", "depth", "k")  # arrays; boxes and labels stay per-frame lists
LABEL_TASKS = ("detection", "segmentation", "depth")
# Partial-label fields: present only when some frame was added with them.
HAS_FIELDS = tuple(f"has_{task}" for task in LABEL_TASKS)
EXTRA_FIELDS = (*HAS_FIELDS, "ignore_boxes", "sample_weight")


class DatasetBuilder:
    """Collect frames one by one, then ``build()`` the dataset dict."""

    def __init__(self) -> None:
        self._fields: dict[str, list] = {key: [] for key in FIELDS + EXTRA_FIELDS}
        self._extended = False

    def add(self, image: np.ndarray, seg: np.ndarray, depth: np.ndarray, boxes: np.ndarray,
            labels: np.ndarray, k: Sequence[float], *,
            labelled: Iterable[str] | None = None, ignore_boxes: np.ndarray | None = None,
            weight: float | None = None) -> None:
        """One frame. ``labelled``: the tasks it has labels for (None = all); ``ignore_boxes``
        (M, 4); ``weight``: its relative sampling probability (None = 1)."""
        for key, value in zip(FIELDS, (image, seg, depth, boxes, labels, k)):
            self._fields[key].append(value)
        if labelled is not None or ignore_boxes is not None or weight is not None:
            self._extended = True
        tasks = LABEL_TASKS if labelled is None else frozenset(labelled)
        for task, key in zip(LABEL_TASKS, HAS_FIELDS):
            self._fields[key].append(task in tasks)
        self._fields["ignore_boxes"].append(
            np.zeros((0, 4), np.float32) if ignore_boxes is None else ignore_boxes)
        self._fields["sample_weight"].append(1.0 if weight is None else weight)

    def __len__(self) -> int:
        return len(self._fields["images"])

    def build(self) -> dict:
        """The dataset dict; the partial-label fields only if some frame was added with them,
        so frames of fully labelled data give the same dict as before they existed."""
        out: dict[str, Any] = {key: self._fields[key] for key in FIELDS}
        for key in STACKED:
            out[key] = np.stack(out[key]) if out[key] else np.zeros((0,))
        if self._extended:
            for key in HAS_FIELDS:
                out[key] = np.asarray(self._fields[key], bool)
            out["ignore_boxes"] = self._fields["ignore_boxes"]
            out["sample_weight"] = np.asarray(self._fields["sample_weight"], np.float32)
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


# A frame: the dataset dict's fields of one frame ("images" holds its one image). A frame
# that failed to decode is {ERROR: message}: DataLoader would wrap an exception raised in a
# worker into a traceback, so errors travel as data and are raised in the main process.
Frame = dict[str, Any]
ERROR = "error"


class FrameError(InputError):
    """A frame that could not be read; the message names it (one line)."""


class Frames(Dataset):
    """A data set's frames at the network input, decoded on demand (``frames[i]``).

    ``may_label`` (N, 3) bool: per frame, the ``LABEL_TASKS`` it may carry a label for, known
    without decoding it (a superset is allowed: a frame's own ``has_<task>`` flags decide);
    ``weights`` (N,) its relative sampling probability, None = uniform.
    """

    may_label: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Frame:
        raise NotImplementedError

    def index_bytes(self) -> int:
        """Host memory held for every frame (this object's arrays and its sources' index)."""
        return self.may_label.nbytes + (0 if self.weights is None else self.weights.nbytes)

    def subset(self, index: np.ndarray) -> Frames:
        """The frames at ``index`` (positions into this one)."""
        return SubsetFrames(self, np.asarray(index, np.int64))

    def to_dict(self) -> dict:
        """Every frame decoded into one dataset dict (small data sets and tests only)."""
        builder = DatasetBuilder()
        for i in range(len(self)):
            frame = checked(self[i])
            flagged = all(f in frame for f in HAS_FIELDS)
            builder.add(frame["images"], frame["seg"], frame["depth"], frame["boxes"],
                        frame["labels"], frame.get("k", np.full(9, np.nan)),
                        labelled=[t for t, f in zip(LABEL_TASKS, HAS_FIELDS) if frame[f]]
                        if flagged else None,
                        ignore_boxes=frame.get("ignore_boxes"),
                        weight=frame.get("sample_weight"))
        return builder.build()


class ArrayFrames(Frames):
    """A dataset dict already in memory, seen as ``Frames``."""

    def __init__(self, data: dict) -> None:
        self.data = data
        n = len(data["images"])
        self.may_label = np.ones((n, len(LABEL_TASKS)), bool)
        for j, key in enumerate(HAS_FIELDS):
            if key in data:
                self.may_label[:, j] = np.asarray(data[key], bool).reshape(n)
        weights = data.get("sample_weight")
        self.weights = None if weights is None else np.asarray(weights, np.float64).reshape(-1)

    def __len__(self) -> int:
        return len(self.data["images"])

    def __getitem__(self, index: int) -> Frame:
        return frame_truth(self.data, index)

    def to_dict(self) -> dict:
        return self.data

    def index_bytes(self) -> int:  # the frames themselves are in memory
        return super().index_bytes() + sum(
            v.nbytes if isinstance(v, np.ndarray) else sum(np.asarray(x).nbytes for x in v)
            for v in self.data.values())


class SubsetFrames(Frames):
    def __init__(self, base: Frames, index: np.ndarray) -> None:
        self.base, self.index = base, index
        self.may_label = base.may_label[index]
        self.weights = None if base.weights is None else base.weights[index]

    def __len__(self) -> int:
        return len(self.index)

    def index_bytes(self) -> int:
        return self.base.index_bytes() + self.index.nbytes

    def __getitem__(self, index: int) -> Frame:
        return self.base[int(self.index[index])]


def frame_truth(data: dict, index: int) -> Frame:
    """Ground truth of frame ``index`` of a dataset dict (every per-frame field)."""
    return {key: values[index] for key, values in data.items() if len(values) > index}


# Bytes per network-input pixel of a decoded frame: RGB, segmentation id, float32 depth.
FRAME_BYTES_PER_PIXEL = 3 + 1 + 4
ORDER_BYTES = 8  # an epoch's order: one int64 per frame


def loader_memory(frames: Frames, input_size: tuple[int, int], batch: int, workers: int,
                  prefetch: int = 2) -> int:
    """Host memory (bytes) the training loader needs beyond the program: the index held for
    every frame plus the epoch's order, and the batches in flight (``prefetch`` per worker,
    at least one, each frame's arrays once in the worker and once collated)."""
    w, h = input_size
    in_flight = max(1, workers) * prefetch * batch * w * h * FRAME_BYTES_PER_PIXEL * 2
    return frames.index_bytes() + ORDER_BYTES * len(frames) + in_flight


def as_frames(data: dict | Frames) -> Frames:
    return data if isinstance(data, Frames) else ArrayFrames(data)


def checked(frame: Frame) -> Frame:
    """``frame``, or its error raised here (in the main process) as a ``FrameError``."""
    if ERROR in frame:
        raise FrameError(frame[ERROR])
    return frame


def frame_batches(frames: Frames, batches: Iterable[Sequence[int]] | Sampler,
                  collate: Callable[[list[Frame]], Any], workers: int = 0,
                  prefetch: int = 2) -> Iterator[Any]:
    """``collate(frames of each batch)``, decoded by ``workers`` processes (0 = here), in
    order. A frame that failed to decode raises its ``FrameError`` here."""
    def gather(frame_list: list[Frame]) -> Any:
        for frame in frame_list:
            if ERROR in frame:
                return {ERROR: frame[ERROR]}
        return collate(frame_list)

    if workers:
        # Objects so far stay out of the cyclic collector: a collection in a forked worker
        # would write to every one of them and copy the pages it shares with this process
        # (~40 MB each, measured), as Python's gc docs advise for fork without exec.
        gc.freeze()
    loader = DataLoader(frames, batch_sampler=batches, collate_fn=gather,  # type: ignore[arg-type]
                        num_workers=workers, prefetch_factor=prefetch if workers else None,
                        persistent_workers=False)
    for batch in loader:
        if isinstance(batch, dict) and ERROR in batch:
            raise FrameError(batch[ERROR])
        yield batch


# Per-frame fields stacked into one tensor per batch; the rest stay one tensor per frame.
BATCH_STACKED = ("images", "seg", "depth", "k", *HAS_FIELDS, "sample_weight")


def collate_tensors(frame_list: list[Frame]) -> dict[str, Any]:
    """A batch of frames as tensors: stacked where every frame has the same shape, lists of
    tensors for boxes, labels and ignore boxes."""
    batch: dict[str, Any] = {}
    for key in frame_list[0]:
        values = [f[key] for f in frame_list]
        if key in BATCH_STACKED:
            batch[key] = torch.from_numpy(np.stack([np.asarray(v) for v in values]))
        else:
            batch[key] = [torch.from_numpy(np.asarray(v)) for v in values]
    return batch
