"""Data sets written in the exact on-disk layouts the data sources read, from simulator renders
(so every expected value is known)."""

import json

import cv2
import numpy as np

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.sim.scene import SimScene


def render(seed, width, height, frames):
    with SimScene(seed, width, height) as scene:
        return [scene.render() for _ in range(frames)]


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


# COCO category ids are not 0..N-1; listing them out of order checks that the reader sorts.
COCO_IDS = {name: 10 + 3 * i for i, name in enumerate(DETECTION_CLASSES)}


def uncompressed_rle(mask):
    """COCO's uncompressed RLE of a bool mask: run lengths in column-major order, starting with
    a run of zeros."""
    flat = np.asarray(mask, bool).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": runs if not flat[0] else [0] + runs}


def compressed_rle(mask):
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def coco_instances(f, image_id, first_id=0):
    """One instance per thing class visible in a render (its pixels of ``f.seg``), as COCO
    annotations alternating compressed and uncompressed RLE."""
    anns = []
    for j, cls in enumerate(sorted(set(np.unique(f.seg).tolist()) - set(range(
            len(SEGMENTATION_CLASSES) - len(DETECTION_CLASSES))))):
        mask = f.seg == cls
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        name = SEGMENTATION_CLASSES[cls]
        anns.append({"id": first_id + j, "image_id": image_id, "category_id": COCO_IDS[name],
                     "bbox": [int(x1), int(y1), int(x2 - x1), int(y2 - y1)],
                     "area": int(mask.sum()), "iscrowd": 0,
                     "segmentation": compressed_rle(mask) if j % 2 == 0 else
                     uncompressed_rle(mask)})
    return anns


def write_coco(root, frames, ann_name="instances_train2017.json", images_dir="train2017",
               extra=None, masks=True):
    """``frames`` as COCO: ``root/annotations/ann_name`` + ``root/images_dir/NAME.png``;
    ``extra`` annotations are appended; ``masks=False`` = a box-only export (CVAT)."""
    images, annotations = [], []
    for i, f in enumerate(frames):
        name = f"{ann_name.split('.')[0]}_{i:012d}.png"
        write_png(root / images_dir / name, f.rgb)
        images.append({"id": 1000 + i, "file_name": name, "width": f.rgb.shape[1],
                       "height": f.rgb.shape[0]})
        for ann in coco_instances(f, 1000 + i, len(annotations)):
            if not masks:
                ann["segmentation"] = []
            annotations.append(ann)
    annotations += extra or []
    categories = [{"id": COCO_IDS[n], "name": n, "supercategory": "sim"}
                  for n in reversed(DETECTION_CLASSES)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    index = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / ann_name).write_text(json.dumps(index))
    return index
