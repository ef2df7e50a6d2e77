"""``coco``: instance annotations in COCO's exact layout, from sim renders."""

import json

import numpy as np
import pytest

from mtl_split_core.classes import DETECTION_CLASSES, IGNORE_ID, SEGMENTATION_CLASSES
from mtl_split_core.data.sources import DataSpec, SourceError, split_of
from support.data_layouts import compressed_rle, write_coco, write_png

N_STUFF = len(SEGMENTATION_CLASSES) - len(DETECTION_CLASSES)


def _open(root, split="train", query=""):
    return DataSpec.parse(f"coco:{root}{query}").open(split)


def _expected_semantic(seg, background=0):
    """Sim ids -> this source's ids ("background", then the categories by id): things keep
    their class, every other pixel is background."""
    out = np.full(seg.shape, background, np.uint8)
    things = seg >= N_STUFF
    out[things] = seg[things] - N_STUFF + 1
    return out


def test_instances_give_boxes_masks_and_crowd_ignore(tmp_path, frames):
    crowd = np.zeros(frames[0].seg.shape, bool)
    crowd[0:6, 0:10] = True
    extra = [{"id": 999, "image_id": 1000, "category_id": 10, "bbox": [0, 0, 10, 6],
              "area": 60, "iscrowd": 1, "segmentation": compressed_rle(crowd)}]
    index = write_coco(tmp_path, frames[:3], extra=extra)
    src = _open(tmp_path)
    assert src.detection_classes == DETECTION_CLASSES  # sorted by category id
    assert src.segmentation_classes == ("background", *DETECTION_CLASSES)
    samples = list(src)
    assert len(src) == len(samples) == 3
    for i, (s, f) in enumerate(zip(samples, frames)):
        assert s.labelled == {"detection", "segmentation"} and s.depth is None and s.k is None
        np.testing.assert_array_equal(s.image, f.rgb)
        anns = [a for a in index["annotations"] if a["image_id"] == 1000 + i
                and not a["iscrowd"]]
        want = sorted((x, y, x + w, y + h, DETECTION_CLASSES.index(
            next(c["name"] for c in index["categories"] if c["id"] == a["category_id"])))
            for a in anns for x, y, w, h in [a["bbox"]])
        got = sorted(tuple(b) + (c,) for b, c in zip(s.boxes.tolist(), s.classes.tolist()))
        assert got == want and len(got) >= 1
        expected = _expected_semantic(f.seg)
        if i == 0:
            expected[crowd & (f.seg < N_STUFF)] = IGNORE_ID  # objects stay in front of it
            np.testing.assert_array_equal(s.ignore_boxes, [[0, 0, 10, 6]])
        else:
            assert s.ignore_boxes.shape == (0, 4)
        np.testing.assert_array_equal(s.semantic, expected)


def test_polygons_fill_the_pixels_inside_their_edges(tmp_path):
    image = np.zeros((10, 20, 3), np.uint8)
    write_png(tmp_path / "val2017" / "a.png", image)
    index = {"images": [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
             "categories": [{"id": 5, "name": "box"}],
             "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [2, 1, 4, 3],
                              "area": 12, "iscrowd": 0,
                              "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4], [10, 5, 14, 5]]}]}
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(index))
    (s,) = list(_open(tmp_path, "val"))
    want = np.zeros((10, 20), np.uint8)
    want[1:4, 2:6] = 1  # the 2-point "polygon" encloses nothing
    np.testing.assert_array_equal(s.semantic, want)


def test_the_split_is_the_files(tmp_path, frames):
    write_coco(tmp_path, frames[:2])
    write_coco(tmp_path, frames[2:3], "instances_val2017.json", "val2017")
    assert len(_open(tmp_path, "train")) == 2
    (v,) = list(_open(tmp_path, "val"))
    np.testing.assert_array_equal(v.image, frames[2].rgb)
    with pytest.raises(SourceError, match="no single annotations/instances_\\*test\\*.json"):
        _open(tmp_path, "test")
    with pytest.raises(SourceError, match="holds the val split, not test; add &split=all"):
        _open(tmp_path, "test", "?ann=instances_val2017.json")
    assert len(_open(tmp_path, "test", "?ann=instances_val2017.json&split=all")) == 1


def test_a_box_only_export_is_hash_split_without_masks(tmp_path, frames):
    write_coco(tmp_path, frames, "instances_default.json", "images", masks=False)
    seen = []
    for split in ("train", "val", "test"):
        for s in _open(tmp_path, split):
            assert split_of(f"{s.name}.png") == split
            assert s.semantic is None and s.labelled == {"detection"}
            seen.append(s.name)
    assert len(seen) == len(frames)


def test_background_can_be_left_unlabelled(tmp_path, frames):
    write_coco(tmp_path, frames[:1])
    src = _open(tmp_path, query="?background=ignore")
    assert src.segmentation_classes == DETECTION_CLASSES
    (s,) = list(src)
    want = _expected_semantic(frames[0].seg, background=IGNORE_ID)
    want[want != IGNORE_ID] -= 1
    np.testing.assert_array_equal(s.semantic, want)


def test_an_object_without_a_mask_is_ignored_in_its_box(tmp_path, frames):
    index = write_coco(tmp_path, frames[:1])
    ann = index["annotations"][0]
    ann["segmentation"] = []
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(index))
    (s,) = list(_open(tmp_path))
    x, y, w, h = ann["bbox"]
    assert (s.semantic[y:y + h, x:x + w] == IGNORE_ID).all()
    assert len(s.boxes) == len(index["annotations"])


def _edit(root, change, name="instances_train2017.json"):
    path = root / "annotations" / name
    index = json.loads(path.read_text())
    change(index)
    path.write_text(json.dumps(index))


@pytest.mark.parametrize("change, expected", [
    (lambda ix: ix["annotations"][0].update(category_id=11), "category_id 11 is not in"),
    (lambda ix: ix["annotations"][0].update(segmentation=[[1, 2, "x"]]), "a polygon must be"),
    (lambda ix: ix["annotations"][0]["segmentation"].update(size=[5, 5]), "RLE size"),
    (lambda ix: ix["annotations"][1]["segmentation"].update(counts=[1, 2]),
     "RLE counts must be non-negative integers adding up to"),
    # A compressed string whose runs overrun the image never reaches pycocotools' decoder.
    (lambda ix: ix["annotations"][1]["segmentation"].update(counts="?" * 40),
     "RLE counts must be non-negative integers adding up to"),
    (lambda ix: ix["images"][0].update(height=71), "size 96x72, instances_train2017.json says"),
])
def test_bad_annotations_are_named(tmp_path, frames, change, expected):
    write_coco(tmp_path, frames[:1])
    _edit(tmp_path, change)
    with pytest.raises(SourceError, match=expected) as err:
        list(_open(tmp_path))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change, expected", [
    (lambda ix: ix.pop("categories"), 'expected lists "images", "annotations" and'),
    (lambda ix: ix["annotations"][0].update(image_id=5), "image_id names no image"),
    (lambda ix: ix["categories"][0].pop("name"), 'categories need "id" and "name"'),
])
def test_a_bad_index_is_named(tmp_path, frames, change, expected):
    write_coco(tmp_path, frames[:1])
    _edit(tmp_path, change)
    with pytest.raises(SourceError, match=expected):
        _open(tmp_path)


def test_wrong_layouts_are_named(tmp_path, frames):
    with pytest.raises(SourceError, match="expected annotations/instances_\\*.json"):
        _open(tmp_path)
    write_coco(tmp_path, frames[:1])
    for image in (tmp_path / "train2017").iterdir():
        image.unlink()
    (tmp_path / "train2017").rmdir()
    with pytest.raises(SourceError, match="expected an images folder train2017/"):
        _open(tmp_path)
    with pytest.raises(SourceError, match="unknown option"):
        _open(tmp_path, query="?imgs=x")
    with pytest.raises(SourceError, match="annotation file nope.json not found"):
        _open(tmp_path, query="?ann=nope.json")
    (tmp_path / "train2017").mkdir()
    with pytest.raises(SourceError, match="missing or unreadable image"):
        list(_open(tmp_path))
