"""``sim``: our simulator's data (``mtl-split gen-data`` folders and packed ``shard_*.npz``).

Read with the existing loaders (``data.dataset.load_dataset``), so a sim folder gives the same
frames through this source as before data sources existed. Every frame has all three labels and
its intrinsics; the split is the one the generator assigned (by scene).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.data.shards import SPLIT_CODES
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
        self._shards = sorted(self.root.glob("shard_*.npz"))
        self.detection_classes, self.segmentation_classes = DETECTION_CLASSES, SEGMENTATION_CLASSES
        if self._shards:
            self._names = self._shard_names()
            return
        index_path = self.root / "index.json"
        if not index_path.is_file():
            raise SourceError(f"sim:{root}: expected index.json with rgb/ depth/ seg/ "
                              "(mtl-split gen-data) or shard_*.npz")
        index = read_json(index_path, "sim")
        if isinstance(index, dict) and index.get("format") == FORMAT_NAME:
            raise SourceError(f"sim:{root}: this is a folder data set (index.json says "
                              f"\"mtl-split-folder\"), name it folder:{root}")
        try:
            self._names = [img["file_name"] for img in index["images"] if img["split"] == split]
            if "categories" in index:
                self.detection_classes = tuple(c["name"] for c in index["categories"])
            if "segmentation_classes" in index:
                self.segmentation_classes = tuple(index["segmentation_classes"])
        except (KeyError, TypeError) as err:
            raise SourceError(f"sim:{index_path}: not a gen-data index (no {err})") from None

    def _shard_names(self) -> list[str]:
        names = []
        for path in self._shards:
            try:
                with np.load(path) as z:
                    codes = z["split"]
            except (OSError, ValueError, KeyError) as err:
                raise SourceError(f"sim:{path}: not a dataset shard ({err})") from None
            names += [f"{path.stem}_{i:05d}" for i in np.nonzero(codes == SPLIT_CODES[
                self.split])[0]]
        return names

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[Sample]:
        from mtl_split_core.data.dataset import load_dataset
        from mtl_split_core.data.shards import load_shards

        if not self._names:
            return
        names = iter(self._names)
        # One shard at a time keeps memory to a shard's frames, not the whole data set's.
        parts = ([path] for path in self._shards) if self._shards else [None]
        for part in parts:
            try:
                data = load_dataset(self.root, (self.split,)) if part is None else \
                    load_shards(part, (self.split,))
            except (FileNotFoundError, ValueError) as err:
                raise SourceError(f"sim:{part or self.root}: {err}") from None
            for i in range(len(data["images"])):
                yield Sample(name=next(names), image=data["images"][i], boxes=data["boxes"][i],
                             classes=data["labels"][i], semantic=data["seg"][i],
                             depth=data["depth"][i],
                             k=np.asarray(data["k"][i], np.float64).reshape(3, 3))
