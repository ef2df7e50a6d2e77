"""Load a simulated dataset into memory from either on-disk form: a generated folder
(``index.json`` + rgb/ depth/ seg/) or a folder of packed shards (``shard_*.npz``).

Returns the dict ``train``/``evaluate`` take (``mtl_split_core.data.frames``).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.data.frames import DatasetBuilder, indexed_frames, read_image, xyxy_boxes
from mtl_split_core.data.shards import load_shards


def load_dataset(root: str | Path, splits: tuple[str, ...] = ("train",)) -> dict:
    root = Path(root)
    shards = sorted(root.glob("shard_*.npz"))
    if shards:
        return load_shards(shards, splits)
    index_path = root / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{root} holds neither index.json nor shard_*.npz")
    index = json.loads(index_path.read_text())
    out = DatasetBuilder()
    for img, anns in indexed_frames(index, splits):
        name = img["file_name"]
        mm = read_image(root / "depth" / f"{name}.png", cv2.IMREAD_UNCHANGED)
        out.add(read_image(root / "rgb" / f"{name}.jpg")[..., ::-1],
                read_image(root / "seg" / f"{name}.png", cv2.IMREAD_UNCHANGED),
                mm.astype(np.float32) / 1000.0, *xyxy_boxes(anns), img["k"])
    return out.build()
