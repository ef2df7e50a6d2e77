"""Attach labels made in an annotation tool (a COCO export, e.g. from CVAT) to a ``folder``
data set: `mtl-split dataset add-labels DIR --coco FILE`.

Rules (docs/TRAIN_YOUR_DATA.md says the same for users):
- A COCO image matches a folder image with the same file name, ignoring folders and the
  extension (``frames/0001.jpg`` matches ``images/0001.png``: tools re-encode uploads).
- Categories match by name; names the folder does not know yet are appended to its
  ``detection_classes`` (ids in the folder are indexes into that list).
- For every matched image the COCO file is the whole truth: its earlier boxes and semantic
  mask are replaced; it is marked ``detection``-labelled (0 annotations = nothing there).
  ``iscrowd`` 1 is kept (an ignore region for detection).
- Masks (polygons, or RLE in either COCO form) become ``semantic/NAME.png``: each pixel the
  class of the smallest mask covering it (small objects in front), other pixels
  ``background`` when given, else 255 (ignore). An image is ``segmentation``-labelled only when
  every one of its annotations has a usable mask (a box without a mask would leave its object
  unlabelled) and it has a mask or a background class. Malformed masks (RLE counts that do not
  cover the image, bad polygons) are counted; their image keeps its boxes only
  (``data/coco_masks.py`` checks and decodes them). ``segmentation_classes`` gets the
  background (if any) and then the detection classes, appended by name.
- Unmatched COCO images, annotations of unknown images or categories and empty boxes are
  skipped and counted; no match at all is an error.
- Atomic: new semantic masks are written under temporary names, then moved into place and
  ``index.json`` replaced; a stop request before that leaves the folder untouched.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.coco_masks import MaskError, coco_mask
from mtl_split_core.data.sources.folder import FORMAT_NAME, FORMAT_VERSION
from mtl_split_core.errors import InputError

MAX_SEGMENTATION_CLASSES = IGNORE_ID  # ids 0..254; 255 = ignore


@dataclass
class LabelReport:
    """What ``add_coco_labels`` did (``summary()`` is the line the command prints)."""

    folder: Path
    coco_images: int = 0
    matched: int = 0
    unmatched_names: list[str] = field(default_factory=list)
    boxes: int = 0
    ignore_regions: int = 0
    segmented: int = 0
    skipped_annotations: int = 0
    bad_masks: int = 0             # malformed masks: their images get no semantic label
    first_bad_mask: str = ""
    new_classes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def summary(self) -> str:
        if self.interrupted:
            return f"add-labels: interrupted; {self.folder} left unchanged"
        unmatched = len(self.unmatched_names)
        line = (f"add-labels: {self.matched} of {self.coco_images} COCO images matched in "
                f"{self.folder}; {self.boxes} boxes ({self.ignore_regions} ignore regions), "
                f"{self.segmented} images with semantic masks")
        if self.new_classes:
            line += f"; new classes: {', '.join(self.new_classes)}"
        if self.skipped_annotations:
            line += (f"; {self.skipped_annotations} annotations skipped (unknown image or "
                     "category, or an empty box)")
        if self.bad_masks:
            line += (f"; {self.bad_masks} malformed masks ({self.first_bad_mask}): their "
                     "images keep boxes only")
        if unmatched:
            shown = ", ".join(self.unmatched_names[:5]) + (", ..." if unmatched > 5 else "")
            line += f"; {unmatched} COCO images not in the folder: {shown}"
        return line


def _stem(file_name: str) -> str:
    return PurePosixPath(str(file_name).replace("\\", "/")).stem


def read_folder_index(folder: Path) -> dict:
    """The folder's index.json, checked to be the ``folder`` format."""
    path = folder / "index.json"
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; expected a folder data set (from "
                         "`mtl-split dataset from-bag`)") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME \
            or index.get("version") != FORMAT_VERSION or not isinstance(index.get("images"),
                                                                         list):
        raise InputError(f"{path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION} "
                         "with an images list")
    for key in ("detection_classes", "segmentation_classes"):
        names = index.get(key, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: {key} must be a list of class names")
    for img in index["images"]:
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or \
                not isinstance(img.get("file_name"), str) or \
                not all(isinstance(img.get(k), int) and img[k] > 0 for k in ("width", "height")):
            raise InputError(f"{path}: every image needs \"id\", \"file_name\", \"width\" "
                             f"and \"height\"; got {str(img)[:80]}")
    return index


def read_coco(path: Path) -> dict:
    """A COCO instances file with images, annotations and categories lists."""
    try:
        coco = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; expected a COCO instances JSON") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in
                                             ("images", "annotations", "categories")):
        raise InputError(f"{path}: expected a COCO instances file (\"images\", "
                         "\"annotations\" and \"categories\" lists)")
    for what, key in (("images", "file_name"), ("categories", "name")):
        for item in coco[what]:
            if not isinstance(item, dict) or not isinstance(item.get("id"), (int, str)) \
                    or not isinstance(item.get(key), str):
                raise InputError(f"{path}: every entry of {what} needs \"id\" (a number) and "
                                 f"\"{key}\" (text); got {str(item)[:80]}")
    return coco


def add_coco_labels(folder: str | Path, coco_file: str | Path, background: str | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> LabelReport:
    """Attach the boxes and masks of ``coco_file`` to the folder data set ``folder`` (see the
    module docstring for the rules); rewrites its index.json atomically."""
    folder, coco_file = Path(folder), Path(coco_file)
    index = read_folder_index(folder)
    coco = read_coco(coco_file)
    report = LabelReport(folder, coco_images=len(coco["images"]))
    ours = {_stem(img["file_name"]): img for img in index["images"]}
    matches: dict[Any, dict] = {}  # COCO image id -> our image record
    for img in coco["images"]:
        mine = ours.get(_stem(img["file_name"]))
        if mine is None:
            report.unmatched_names.append(str(img["file_name"]))
            continue
        size = (img.get("width"), img.get("height"))
        if size != (None, None) and size != (mine["width"], mine["height"]):
            raise InputError(f"{coco_file}: image {img['file_name']!r} is {size[0]}x{size[1]} "
                             f"but {mine['file_name']} in {folder} is {mine['width']}x"
                             f"{mine['height']}; annotate the folder's images at their size")
        matches[img["id"]] = mine
    report.matched = len(matches)
    if not matches:
        example = next(iter(ours), "none")
        raise InputError(f"{coco_file}: none of its {len(coco['images'])} images is in "
                         f"{folder} (matched by file name without folder and extension; "
                         f"e.g. COCO {report.unmatched_names[:1]}, folder {example!r})")

    detection = list(index.get("detection_classes", []))
    for cat in coco["categories"]:
        if str(cat["name"]) not in detection:
            detection.append(str(cat["name"]))
            report.new_classes.append(str(cat["name"]))
    class_of = {cat["id"]: detection.index(str(cat["name"])) for cat in coco["categories"]}

    records = list({id(m): m for m in matches.values()}.values())  # one per folder image
    per_image: dict[int, list[dict]] = {id(m): [] for m in records}
    for ann in coco["annotations"]:
        mine = matches.get(_key(ann, "image_id"))
        box = _box(ann, mine) if mine is not None else None
        if mine is None or box is None or _key(ann, "category_id") not in class_of:
            report.skipped_annotations += 1
            continue
        per_image[id(mine)].append({**ann, "bbox": box,
                                    "category_id": class_of[ann["category_id"]]})

    segmentation = list(index.get("segmentation_classes", []))
    semantic: dict[str, np.ndarray] = {}  # our image name -> mask
    for mine in records:
        anns = per_image[id(mine)]
        mask = _semantic(anns, mine, background is not None, coco_file, report)
        if mask is not None:
            semantic[_stem(mine["file_name"])] = mask
    if semantic:
        for name in ([background] if background else []) + detection:
            if name not in segmentation:
                segmentation.append(name)
        if len(segmentation) > MAX_SEGMENTATION_CLASSES:
            raise InputError(f"{folder}: {len(segmentation)} segmentation classes; at most "
                             f"{MAX_SEGMENTATION_CLASSES} fit a uint8 mask (255 = ignore)")
        seg_id = {i: segmentation.index(name) for i, name in enumerate(detection)}
        fill = segmentation.index(background) if background else IGNORE_ID
        semantic = {name: _remap(mask, seg_id, fill) for name, mask in semantic.items()}

    if should_stop():
        report.interrupted = True
        return report
    _write(folder, index, records, per_image, semantic, detection, segmentation, should_stop,
           report)
    return report


def _key(ann: Any, name: str) -> int | str | None:
    """An id field of an annotation, None unless it can be an id (a number or text)."""
    value = ann.get(name) if isinstance(ann, dict) else None
    return value if isinstance(value, (int, str)) else None


def _box(ann: Mapping[str, Any], image: Mapping[str, Any]) -> list[float] | None:
    """The COCO [x, y, w, h] box clipped to the image; None when malformed or empty."""
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or \
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        return None
    x1, y1 = max(0.0, float(bbox[0])), max(0.0, float(bbox[1]))
    x2 = min(float(image["width"]), float(bbox[0]) + float(bbox[2]))
    y2 = min(float(image["height"]), float(bbox[1]) + float(bbox[3]))
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def _mask(segmentation: Any, height: int, width: int, coco_file: Path) -> np.ndarray | None:
    """A COCO ``segmentation`` as a bool mask (None when there is none); ``MaskError`` when it
    is malformed. An RLE mask of another size than its image stops the command: the export
    does not belong to these images."""
    if isinstance(segmentation, dict) and "counts" in segmentation and \
            list(segmentation.get("size", [])) != [height, width]:
        raise InputError(f"{coco_file}: an RLE mask of size {segmentation.get('size')} on "
                         f"an image of {width}x{height} (size must be [height, width])")
    return coco_mask(segmentation, height, width)


def _semantic(anns: list[dict], image: Mapping[str, Any], has_background: bool,
              coco_file: Path, report: LabelReport) -> np.ndarray | None:
    """(H, W) int32 detection class ids (-1 = no mask) when the image is fully segmented."""
    h, w = int(image["height"]), int(image["width"])
    masks = []
    for ann in anns:
        try:
            mask = _mask(ann.get("segmentation"), h, w, coco_file)
        except MaskError as err:
            report.bad_masks += 1
            report.first_bad_mask = report.first_bad_mask or f"annotation {ann.get('id')}: {err}"
            mask = None
        if mask is None:
            return None  # a box without a mask: its object's pixels would be mislabelled
        masks.append((int(mask.sum()), ann["category_id"], mask))
    if not masks and not has_background:
        return None
    ids = np.full((h, w), -1, np.int32)
    for _, category, mask in sorted(masks, key=lambda m: -m[0]):  # largest first
        ids[mask] = category
    return ids


def _remap(ids: np.ndarray, seg_id: Mapping[int, int], fill: int) -> np.ndarray:
    out = np.full(ids.shape, fill, np.uint8)
    for det, seg in seg_id.items():
        out[ids == det] = seg
    return out


def _write(folder: Path, index: dict, records: list[dict],
           per_image: Mapping[int, list[dict]], semantic: Mapping[str, np.ndarray],
           detection: list[str], segmentation: list[str], should_stop: Callable[[], bool],
           report: LabelReport) -> None:
    matched_ids = {m["id"] for m in records}
    annotations = [a for a in index.get("annotations", [])
                   if isinstance(a, dict) and a.get("image_id") not in matched_ids]
    next_id = max((a["id"] for a in annotations if isinstance(a.get("id"), int)), default=-1) + 1
    for mine in records:
        for ann in per_image[id(mine)]:
            x, y, w, h = ann["bbox"]
            crowd = 1 if ann.get("iscrowd") else 0
            annotations.append({"id": next_id, "image_id": mine["id"],
                                "category_id": ann["category_id"], "bbox": [x, y, w, h],
                                "iscrowd": crowd, "area": float(w * h)})
            next_id += 1
            report.boxes += 1
            report.ignore_regions += crowd
    stale: list[Path] = []
    for mine in records:
        name = _stem(mine["file_name"])
        labelled = [t for t in mine.get("labelled", []) if t not in ("detection",
                                                                     "segmentation")]
        labelled.insert(0, "detection")
        if name in semantic:
            labelled.insert(1, "segmentation")
            mine["semantic_file"] = f"semantic/{name}.png"
        elif "semantic_file" in mine:
            stale.append(folder / mine.pop("semantic_file"))
        mine["labelled"] = labelled
    report.segmented = len(semantic)
    index.update(detection_classes=detection, segmentation_classes=segmentation,
                 annotations=annotations)

    temps: list[tuple[Path, Path]] = []
    try:
        if semantic:
            (folder / "semantic").mkdir(exist_ok=True)
        for name, mask in semantic.items():
            if should_stop():
                report.interrupted = True
                return
            final = folder / "semantic" / f"{name}.png"
            temp = final.with_name(f".{name}.partial.png")
            if not cv2.imwrite(str(temp), mask):
                raise OSError(f"cannot write {temp}")
            temps.append((temp, final))
        index_temp = folder / ".index.json.partial"
        index_temp.write_text(json.dumps(index, indent=1))
        temps.append((index_temp, folder / "index.json"))
        if should_stop():
            report.interrupted = True
            return
        # From here on only renames: quick, and a stop request waits for them.
        for temp, final in temps:
            os.replace(temp, final)
        temps = []
        for path in stale:
            path.unlink(missing_ok=True)
    finally:
        for temp, _ in temps:
            temp.unlink(missing_ok=True)
