"""Render a dataset to disk: several frames per scene, split by scene, in parallel.

Format (docs/DATA_FORMAT.md): ``index.json`` (COCO-style) + ``rgb/*.jpg`` (q95) +
``depth/*.png`` (uint16 millimetres, 0 = invalid) + ``seg/*.png`` (uint8 class ids).
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.sim.scene import SimScene

SPLITS = ("train", "val", "test")
MAX_DEPTH_MM = 65535


def scene_split(scene: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split of a scene index (scenes never straddle splits)."""
    u = ((scene * 2654435761) % 2 ** 32) / 2 ** 32  # Knuth hash: spread, reproducible
    return SPLITS[0] if u < fractions[0] else SPLITS[1] if u < fractions[0] + fractions[1] \
        else SPLITS[2]


# One scene's work: out_dir, seed, scene index, frames, (width, height), split fractions, style.
RenderJob = tuple[Path, int, int, int, tuple[int, int], tuple[float, ...], str]


def _render_scene(job: RenderJob) -> list[dict]:
    out_dir, seed, scene, frames, size, fractions, style = job
    records = []
    with SimScene(seed * 100_003 + scene, *size, style=style) as sim:
        for i in range(frames):
            f = sim.render()
            name = f"s{scene:05d}_{i:03d}"
            cv2.imwrite(str(out_dir / "rgb" / f"{name}.jpg"), f.rgb[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            mm = np.clip(np.round(f.depth * 1000.0), 0, MAX_DEPTH_MM).astype(np.uint16)
            cv2.imwrite(str(out_dir / "depth" / f"{name}.png"), mm)
            cv2.imwrite(str(out_dir / "seg" / f"{name}.png"), f.seg)
            records.append({"file": name, "scene": scene, "split": scene_split(scene, fractions),
                            "width": size[0], "height": size[1], "k": f.camera.k,
                            "pose": list(f.pose),
                            "boxes": f.boxes.tolist(), "labels": f.labels.tolist()})
    return records


def generate_dataset(out_dir: str | Path, frames: int, size: tuple[int, int] = (320, 240),
                     seed: int = 0, workers: int = 2, frames_per_scene: int = 10,
                     split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                     progress: bool = True, style: str = "default") -> dict:
    """Render ``frames`` frames into ``out_dir``; returns the index written to index.json."""
    out_dir = Path(out_dir)
    for sub in ("rgb", "depth", "seg"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    n_scenes = -(-frames // frames_per_scene)
    jobs = [(out_dir, seed, s, min(frames_per_scene, frames - s * frames_per_scene),
             size, tuple(split_fractions), style) for s in range(n_scenes)]
    records = []
    bar = tqdm(total=frames, desc="rendering", unit="frame", disable=not progress)
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for recs in pool.imap(_render_scene, jobs):
                records += recs
                bar.update(len(recs))
    else:
        for job in jobs:
            recs = _render_scene(job)
            records += recs
            bar.update(len(recs))
    bar.close()
    index = _coco_index(records, size)
    (out_dir / "index.json").write_text(json.dumps(index))
    return index


def _coco_index(records: Sequence[dict], size: Sequence[int]) -> dict:
    images: list[dict] = []
    annotations: list[dict] = []
    for image_id, r in enumerate(records):
        images.append({"id": image_id, "file_name": r["file"], "width": size[0],
                       "height": size[1], "split": r["split"], "scene": r["scene"],
                       "k": r["k"], "pose": r["pose"]})
        for (x1, y1, x2, y2), label in zip(r["boxes"], r["labels"]):
            annotations.append({"id": len(annotations), "image_id": image_id,
                                "category_id": int(label),
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
    return {"info": {"format": "mtl_split_sim/1", "depth": "uint16 mm, 0 invalid",
                     "bbox": "COCO [x, y, w, h], visible extent, x+w exclusive"},
            "categories": [{"id": i, "name": n} for i, n in enumerate(DETECTION_CLASSES)],
            "segmentation_classes": list(SEGMENTATION_CLASSES),
            "images": images, "annotations": annotations}
