"""``sim``: our simulator's data (``mtl-split gen-data`` folders and packed ``shard_*.npz``).

Read with the simulator's own readers (``data.dataset.SimFolder``, ``data.shards.ShardReader``,
one frame at a time), so a sim folder gives the same frames through this source as
``load_dataset``. Every frame has all three labels and
its intrinsics; the split is the one the generator assigned (by scene).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.data.dataset import SimFolder
from mtl_split_core.data.shards import ShardReader
from mtl_split_core.data.sources.base import DataSource, Sample, SourceError, register_source
from mtl_split_core.data.sources.files import read_json
from mtl_split_core.data.sources.folder import FORMAT_NAME


@register_source("sim")
class SimSource(DataSource):
    def __init__(self, root: Path, split: str, options: Mapping[str, str]) -> None:
        super().__init__(root, split, options)
        if self.options:
            raise SourceError(f"sim:{root}: unknown option(s) {sorted(self.options)}; the sim "
                              "format takes none")
        self.detection_classes, self.segmentation_classes = DETECTION_CLASSES, SEGMENTATION_CLASSES
        shards = sorted(self.root.glob("shard_*.npz"))
        self._parts: list[SimFolder | ShardReader]
        if shards:
            self._parts = [self._shard(path) for path in shards]
        else:
            index_path = self.root / "index.json"
            if not index_path.is_file():
                raise SourceError(f"sim:{root}: expected index.json with rgb/ depth/ seg/ "
                                  "(mtl-split gen-data) or shard_*.npz")
            index = read_json(index_path, "sim")
            if isinstance(index, dict) and index.get("format") == FORMAT_NAME:
                raise SourceError(f"sim:{root}: this is a folder data set (index.json says "
                                  f"\"mtl-split-folder\"), name it folder:{root}")
            try:
                self._parts = [SimFolder(self.root, (split,))]
                if "categories" in index:
                    self.detection_classes = tuple(c["name"] for c in index["categories"])
                if "segmentation_classes" in index:
                    self.segmentation_classes = tuple(index["segmentation_classes"])
            except (KeyError, TypeError) as err:
                raise SourceError(f"sim:{index_path}: not a gen-data index (no {err})") from None
        self._ends = np.cumsum([len(p) for p in self._parts])

    def _shard(self, path: Path) -> ShardReader:
        try:
            return ShardReader(path, (self.split,))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise SourceError(f"sim:{path}: not a dataset shard ({err})") from None

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def sample(self, index: int) -> Sample:
        part = int(np.searchsorted(self._ends, index, side="right"))
        reader = self._parts[part]
        position = index - (int(self._ends[part - 1]) if part else 0)
        name = (f"{reader.path.stem}_{int(reader.rows[position]):05d}"
                if isinstance(reader, ShardReader) else reader.frames[position][0]["file_name"])
        try:
            f = reader.frame(position)
        except (FileNotFoundError, ValueError) as err:
            raise SourceError(f"sim:{self.root}: {err}") from None
        return Sample(name=name, image=f.image, boxes=f.boxes, classes=f.labels,
                      semantic=f.seg, depth=f.depth, k=np.asarray(f.k, np.float64).reshape(3, 3))
