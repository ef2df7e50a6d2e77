"""Simulator renders whose labels are known exactly, and writers of data sets in the exact
on-disk layouts the sources read."""

import json

import cv2
import numpy as np
import pytest

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.sim.scene import SimScene


def render(seed, width, height, frames):
    with SimScene(seed, width, height) as scene:
        return [scene.render() for _ in range(frames)]


@pytest.fixture(scope="session")
def frames():
    """Four 96x72 renders (the scene seed is chosen so that each shows at least one object)."""
    out = render(3, 96, 72, 4)
    assert all(len(f.labels) for f in out[:3])
    return out


@pytest.fixture(scope="session")
def wide_frames():
    """Two 120x60 renders: letterboxed into 64x48 they get padding above and below."""
    return render(5, 120, 60, 2)


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array[..., ::-1] if array.ndim == 3 else array)


def depth_mm(depth):
    return np.clip(np.round(depth * 1000), 0, 65535).astype(np.uint16)


def write_folder(root, frames, labelled=None, splits=None, crowd=None):
    """``frames`` as a ``folder`` data set: frame i labelled with ``labelled[i]`` (default all),
    split ``splits[i]`` (None = absent: hash split), ``crowd``: {frame: [x, y, w, h]}."""
    images, annotations = [], []
    for i, f in enumerate(frames):
        name = f"frame_{i:03d}"
        write_png(root / "images" / f"{name}.png", f.rgb)
        tasks = (labelled or {}).get(i, ["detection", "segmentation", "depth"])
        record = {"id": i, "file_name": f"images/{name}.png", "width": f.rgb.shape[1],
                  "height": f.rgb.shape[0], "k": list(f.camera.k), "labelled": tasks,
                  "stamp": {"sec": 100 + i, "nanosec": 0}}
        split = (splits or {}).get(i, "train")
        if split is not None:
            record["split"] = split
        if "segmentation" in tasks:
            write_png(root / "semantic" / f"{name}.png", f.seg)
            record["semantic_file"] = f"semantic/{name}.png"
        if "depth" in tasks:
            write_png(root / "depth" / f"{name}.png", depth_mm(f.depth))
            record["depth_file"] = f"depth/{name}.png"
        images.append(record)
        if "detection" in tasks:
            for (x1, y1, x2, y2), label in zip(f.boxes.tolist(), f.labels.tolist()):
                annotations.append({"id": len(annotations), "image_id": i,
                                    "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "iscrowd": 0, "area": (x2 - x1) * (y2 - y1)})
        for box in (crowd or {}).get(i, []):
            annotations.append({"id": len(annotations), "image_id": i, "category_id": 0,
                                "bbox": box, "iscrowd": 1, "area": box[2] * box[3]})
    index = {"format": "mtl-split-folder", "version": 1,
             "detection_classes": list(DETECTION_CLASSES),
             "segmentation_classes": list(SEGMENTATION_CLASSES),
             "images": images, "annotations": annotations}
    (root / "index.json").write_text(json.dumps(index))
    return index
