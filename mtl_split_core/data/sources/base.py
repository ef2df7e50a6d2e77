"""What every data source yields, and how one is named on the command line.

A data source reads one data set in its own on-disk layout (``sim``, ``coco``, ``cityscapes``,
``nyuv2``, ``kitti``, ``folder``) and yields ``Sample`` objects at the data set's own resolution;
labels it does not have are ``None`` (partial labels). Sources register themselves by format
name; ``DataSpec.parse("coco:/d/coco@0.3")`` names one on the command line.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from mtl_split_core.data.frames import LABEL_TASKS
from mtl_split_core.errors import InputError

SPLITS = ("train", "val", "test")
ALL_TASKS = frozenset(LABEL_TASKS)
INDEX_BYTES_PER_SAMPLE = 256  # a small dict or a path string with its list slot
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


def split_of(name: str) -> str:
    """The split of a sample for formats without splits of their own: a stable hash of its name
    (the same on every machine and Python run, unlike ``hash``), 80/10/10 like the simulator."""
    u = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") / 2 ** 64
    train, val, _ = SPLIT_FRACTIONS
    return SPLITS[0] if u < train else SPLITS[1] if u < train + val else SPLITS[2]


class SourceError(InputError):
    """A data set that cannot be read as the format says: the message names the path and what
    was expected there."""


@dataclass
class Sample:
    """One frame at its source's resolution. ``None`` = not labelled in this source.

    ``boxes`` (K, 4) float32 x1y1x2y2 pixels (x2/y2 exclusive), ``classes`` (K,) int64 indexes
    into the source's ``detection_classes``; ``ignore_boxes`` (M, 4) regions where detections
    count neither as true nor false positives (COCO ``iscrowd``, KITTI ``DontCare``);
    ``semantic`` (H, W) uint8 indexes into ``segmentation_classes``, ``IGNORE_ID`` (255) =
    unlabelled; ``depth`` (H, W) float32 metres, 0 = invalid; ``k`` (3, 3) intrinsics
    (pixel-centre convention) when known.
    """

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: np.ndarray | None = None
    classes: np.ndarray | None = None
    ignore_boxes: np.ndarray | None = None
    semantic: np.ndarray | None = None
    depth: np.ndarray | None = None
    k: np.ndarray | None = None

    @property
    def labelled(self) -> frozenset[str]:
        """The tasks this sample has labels for."""
        have = {"detection": self.boxes is not None, "segmentation": self.semantic is not None,
                "depth": self.depth is not None}
        return frozenset(task for task, present in have.items() if present)


class DataSource(ABC):
    """One data set split. Subclasses set ``format`` and register with ``register_source``.

    ``options`` are the ``?key=value`` parts of the spec (e.g. ``classes=map.json``); a source
    rejects options it does not know with a ``SourceError``.
    """

    format: ClassVar[str]
    detection_classes: tuple[str, ...] = ()
    segmentation_classes: tuple[str, ...] = ()

    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        if split not in SPLITS:
            raise SourceError(f"{self.format}:{root}: split {split!r}, expected one of {SPLITS}")
        self.root, self.split, self.options = Path(root), split, dict(options)

    @classmethod
    def labelled_splits(cls, options: Mapping[str, str]) -> tuple[str, ...]:
        """The splits this data set has labels for (what `mtl-split eval` can score), given the
        spec's ``options``; a data set whose test labels are withheld overrides it."""
        return SPLITS

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples in this split (known without decoding images)."""

    @abstractmethod
    def sample(self, index: int) -> Sample:
        """Sample ``index`` (0 <= index < len), read from disk now: the one place a source
        decodes, called in DataLoader workers (a source must pickle: open files lazily)."""

    def may_label(self, index: int) -> frozenset[str]:
        """The tasks sample ``index`` may carry a label for, known without decoding it (a
        superset is fine: the decoded sample decides). Default: every task."""
        return ALL_TASKS

    def index_bytes(self) -> int:
        """Host memory this source holds for its samples (names, paths, annotations): by
        default an estimate for a Python list of one small record per sample."""
        return INDEX_BYTES_PER_SAMPLE * len(self)

    def __iter__(self) -> Iterator[Sample]:
        """The samples in order, decoded one at a time."""
        for index in range(len(self)):
            yield self.sample(index)


S = TypeVar("S", bound=type[DataSource])
_SOURCES: dict[str, type[DataSource]] = {}


def register_source(format_name: str) -> Callable[[S], S]:
    """Class decorator: make a ``DataSource`` available under ``format_name``."""
    def add(cls: S) -> S:
        cls.format = format_name
        _SOURCES[format_name] = cls
        return cls
    return add


def source_formats() -> tuple[str, ...]:
    return tuple(sorted(_SOURCES))


@dataclass(frozen=True)
class DataSpec:
    """``FORMAT:PATH[@WEIGHT][?key=value&...]`` from the command line."""

    format: str
    path: Path
    weight: float = 1.0
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> DataSpec:
        fmt, sep, rest = text.partition(":")
        if not sep or not fmt or not rest:
            raise SourceError(f"data {text!r}: expected FORMAT:PATH[@WEIGHT], FORMAT one of "
                              f"{', '.join(source_formats())}")
        if fmt not in _SOURCES:
            raise SourceError(f"data {text!r}: unknown format {fmt!r}, expected one of "
                              f"{', '.join(source_formats())}")
        rest, _, query = rest.partition("?")
        options: dict[str, str] = {}
        for item in filter(None, query.split("&")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise SourceError(f"data {text!r}: option {item!r} is not key=value")
            options[key] = value
        path, at, weight_text = rest.rpartition("@") if "@" in rest else (rest, "", "")
        weight = 1.0
        if at:
            try:
                weight = float(weight_text)
            except ValueError:
                weight = math.nan
            if not math.isfinite(weight) or weight <= 0:
                raise SourceError(f"data {text!r}: weight {weight_text!r} must be a positive "
                                  "number")
        if not path:
            raise SourceError(f"data {text!r}: empty path")
        return cls(fmt, Path(path), weight, options)

    def labelled_splits(self) -> tuple[str, ...]:
        """The splits of this data set that have labels (``DataSource.labelled_splits``)."""
        return _SOURCES[self.format].labelled_splits(self.options)

    def open(self, split: str) -> DataSource:
        """The named source's ``split``; a missing path is a ``SourceError``."""
        if not self.path.exists():
            raise SourceError(f"{self.format}:{self.path}: no such file or folder")
        return _SOURCES[self.format](self.path, split, self.options)
