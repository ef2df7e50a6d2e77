"""Our simulator's data in either on-disk form, read one frame at a time: a generated folder
(``index.json`` + rgb/ depth/ seg/, ``SimFolder``) or packed shards (``shard_*.npz``,
``shards.ShardReader``). ``load_dataset`` decodes a whole (small) one into the dataset dict
``train``/``evaluate`` take (``mtl_split_core.data.frames``); large ones are read lazily
through the ``sim`` data source.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.data.frames import DatasetBuilder, indexed_frames, read_image, xyxy_boxes
from mtl_split_core.data.shards import SimFrame, load_shards


class SimFolder:
    """A generated folder's frames of some splits, by position."""

    def __init__(self, root: Path, splits: Sequence[str]) -> None:
        self.root = root
        index = json.loads((root / "index.json").read_text())
        self.frames = list(indexed_frames(index, splits))

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, i: int) -> SimFrame:
        img, anns = self.frames[i]
        name = img["file_name"]
        mm = read_image(self.root / "depth" / f"{name}.png", cv2.IMREAD_UNCHANGED)
        rgb = read_image(self.root / "rgb" / f"{name}.jpg")[..., ::-1]
        return SimFrame(np.ascontiguousarray(rgb),
                        read_image(self.root / "seg" / f"{name}.png", cv2.IMREAD_UNCHANGED),
                        mm.astype(np.float32) / 1000.0, *xyxy_boxes(anns),
                        np.asarray(img["k"], np.float64))


def load_dataset(root: str | Path, splits: tuple[str, ...] = ("train",)) -> dict:
    root = Path(root)
    shards = sorted(root.glob("shard_*.npz"))
    if shards:
        return load_shards(shards, splits)
    if not (root / "index.json").exists():
        raise FileNotFoundError(f"{root} holds neither index.json nor shard_*.npz")
    folder = SimFolder(root, splits)
    out = DatasetBuilder()
    for i in range(len(folder)):
        f = folder.frame(i)
        out.add(f.image, f.seg, f.depth, f.boxes, f.labels, f.k.tolist())
    return out.build()
