"""Load a simulated dataset into memory from either on-disk form: a generated folder
(``index.json`` + rgb/ depth/ seg/) or a folder of packed shards (``shard_*.npz``).

Returns the dict ``train``/``evaluate`` take: ``images`` (N, H, W, 3) RGB uint8, ``seg``
(N, H, W) uint8, ``depth`` (N, H, W) float32 metres, ``boxes``/``labels`` lists, ``k`` (N, 9).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.data.shards import load_shards


def load_dataset(root, splits=("train",)) -> dict:
    root = Path(root)
    shards = sorted(root.glob("shard_*.npz"))
    if shards:
        return load_shards(shards, splits)
    index_path = root / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{root} holds neither index.json nor shard_*.npz")
    index = json.loads(index_path.read_text())
    anns: dict[int, list] = {}
    for a in index["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    out = {"images": [], "seg": [], "depth": [], "boxes": [], "labels": [], "k": []}
    for img in index["images"]:
        if img["split"] not in splits:
            continue
        name = img["file_name"]
        out["images"].append(cv2.imread(str(root / "rgb" / f"{name}.jpg"))[..., ::-1])
        out["seg"].append(cv2.imread(str(root / "seg" / f"{name}.png"), cv2.IMREAD_UNCHANGED))
        mm = cv2.imread(str(root / "depth" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        out["depth"].append(mm.astype(np.float32) / 1000.0)
        a = anns.get(img["id"], [])
        out["boxes"].append(np.array([[x, y, x + w, y + h] for x, y, w, h in
                                      (b["bbox"] for b in a)], np.float32).reshape(-1, 4))
        out["labels"].append(np.array([b["category_id"] for b in a], np.int64))
        out["k"].append(img["k"])
    for key in ("images", "seg", "depth", "k"):
        out[key] = np.stack(out[key]) if out[key] else np.zeros((0,))
    return out
