"""`add_labels`: a COCO export (polygon, compressed and uncompressed RLE, boxes only) attached
to a folder data set made by from-bag; index.json and semantic PNGs checked directly."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mtl_split_core.data.add_labels import add_coco_labels
from mtl_split_core.data.coco_masks import rle_counts, rle_mask
from mtl_split_core.data.from_bag import bag_to_folder
from mtl_split_core.errors import InputError
from support.rgbd_bag import rgbd_messages, sim_frames, write_bag

IMAGE, DEPTH = "/camera/image_raw", "/camera/depth/image_raw"
H, W = 48, 64


@pytest.fixture
def folder(tmp_path):
    bag = write_bag(tmp_path / "bag", rgbd_messages(sim_frames(4)))
    bag_to_folder(bag, tmp_path / "data", IMAGE, DEPTH)
    return tmp_path / "data"


def _names(folder):
    index = json.loads((folder / "index.json").read_text())
    return [r["file_name"].split("/")[-1].rsplit(".", 1)[0] for r in index["images"]]


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": [H, W], "counts": np.diff(np.concatenate([[0], change])).tolist()}


def _masks():
    big = np.zeros((H, W), bool)
    big[5:40, 5:60] = True       # a pallet, compressed RLE
    small = np.zeros((H, W), bool)
    small[20:30, 25:35] = True   # a crowd of persons in front of it, uncompressed RLE
    return big, small


def _coco(names):
    big, small = _masks()
    rle = coco_mask.encode(np.asfortranarray(big.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return {
        "categories": [{"id": 7, "name": "pallet"}, {"id": 9, "name": "person"}],
        "images": [
            {"id": 1, "file_name": f"task/frames/{names[0]}.jpg", "width": W, "height": H},
            {"id": 2, "file_name": f"{names[1]}.png", "width": W, "height": H},
            {"id": 3, "file_name": f"{names[2]}.png"},
            {"id": 4, "file_name": "unknown.png", "width": W, "height": H},
        ],
        "annotations": [
            # a rectangle polygon (pixel edges 10..30 x 8..20) -> pixels [8:20, 10:30]
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 8, 20, 12], "iscrowd": 0,
             "segmentation": [[10, 8, 30, 8, 30, 20, 10, 20]]},
            {"id": 2, "image_id": 2, "category_id": 7, "bbox": [5, 5, 55, 35], "iscrowd": 0,
             "segmentation": rle},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [25, 20, 10, 10], "iscrowd": 1,
             "segmentation": _uncompressed_rle(small)},
            {"id": 4, "image_id": 3, "category_id": 9, "bbox": [50, 30, 30, 30], "iscrowd": 0},
            {"id": 5, "image_id": 3, "category_id": 99, "bbox": [1, 1, 5, 5]},  # no category
            {"id": 6, "image_id": 4, "category_id": 7, "bbox": [1, 1, 5, 5]},   # no image
            {"id": 7, "image_id": 1, "category_id": 7, "bbox": [3, 3, 0, 5]},   # empty box
        ],
    }


def _semantic(folder, record):
    return cv2.imread(str(folder / record["semantic_file"]), cv2.IMREAD_UNCHANGED)


def test_boxes_masks_and_classes_attached_by_file_name(folder, tmp_path):
    names = _names(folder)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps(_coco(names)))
    report = add_coco_labels(folder, coco)
    index = json.loads((folder / "index.json").read_text())
    assert index["detection_classes"] == ["pallet", "person"] == report.new_classes
    assert index["segmentation_classes"] == ["pallet", "person"]
    images = index["images"]
    assert [r["labelled"] for r in images] == [["detection", "segmentation", "depth"],
                                               ["detection", "segmentation", "depth"],
                                               ["detection", "depth"], ["depth"]]
    by_image = {}
    for a in index["annotations"]:
        by_image.setdefault(a["image_id"], []).append(
            (a["category_id"], a["bbox"], a["iscrowd"]))
    assert by_image == {0: [(0, [10, 8, 20, 12], 0)],
                        1: [(0, [5, 5, 55, 35], 0), (1, [25, 20, 10, 10], 1)],
                        2: [(1, [50, 30, 14, 18], 0)]}  # clipped to the 64x48 image
    assert len({a["id"] for a in index["annotations"]}) == 4
    # polygon -> semantic: the rectangle's pixels are pallet (0), the rest ignore (255)
    sem = _semantic(folder, images[0])
    want = np.full((H, W), 255, np.uint8)
    want[8:20, 10:30] = 0
    assert sem.dtype == np.uint8 and np.array_equal(sem, want)
    # RLE masks: the small crowd mask on top of the big one
    big, small = _masks()
    sem = _semantic(folder, images[1])
    want = np.full((H, W), 255, np.uint8)
    want[big] = 0
    want[small] = 1
    assert np.array_equal(sem, want)
    assert "semantic_file" not in images[2] and not (folder / "semantic" / f"{names[2]}.png"
                                                    ).exists()
    assert report.matched == 3 and report.skipped_annotations == 3
    assert report.unmatched_names == ["unknown.png"] and report.boxes == 4
    line = report.summary()
    assert "3 of 4 COCO images matched" in line and "1 COCO images not in the folder: " \
        "unknown.png" in line and "1 ignore regions" in line and "\n" not in line
    assert not [p for p in folder.rglob(".*")]  # no temporary files left


def test_a_second_run_replaces_labels_and_a_background_class_fills_unmasked(folder, tmp_path):
    names = _names(folder)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps(_coco(names)))
    add_coco_labels(folder, coco)
    report = add_coco_labels(folder, coco, background="floor")
    index = json.loads((folder / "index.json").read_text())
    assert report.new_classes == [] and len(index["annotations"]) == 4  # replaced, not added
    assert index["segmentation_classes"] == ["pallet", "person", "floor"]
    sem = _semantic(folder, index["images"][0])
    want = np.full((H, W), 2, np.uint8)
    want[8:20, 10:30] = 0
    assert np.array_equal(sem, want)
    # A later export without masks for image 0: its semantic file and label are dropped.
    data = _coco(names)
    del data["annotations"][0]["segmentation"]
    coco.write_text(json.dumps(data))
    add_coco_labels(folder, coco)
    index = json.loads((folder / "index.json").read_text())
    assert index["images"][0]["labelled"] == ["detection", "depth"]
    assert "semantic_file" not in index["images"][0]
    assert not (folder / "semantic" / f"{names[0]}.png").exists()


def test_existing_classes_keep_their_ids(folder, tmp_path):
    index = json.loads((folder / "index.json").read_text())
    index["detection_classes"] = ["person", "forklift"]
    (folder / "index.json").write_text(json.dumps(index))
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps(_coco(_names(folder))))
    add_coco_labels(folder, coco)
    index = json.loads((folder / "index.json").read_text())
    assert index["detection_classes"] == ["person", "forklift", "pallet"]
    assert sorted(a["category_id"] for a in index["annotations"]) == [0, 0, 2, 2]


def test_a_stop_request_leaves_the_folder_unchanged(folder, tmp_path):
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps(_coco(_names(folder))))
    report = add_coco_labels(folder, coco, should_stop=lambda: True)
    assert report.interrupted and "unchanged" in report.summary()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_errors_name_the_file_and_what_was_expected(folder, tmp_path):
    coco = tmp_path / "coco.json"
    with pytest.raises(InputError, match="coco.json: no such file; expected a COCO"):
        add_coco_labels(folder, coco)
    coco.write_text("{not json")
    with pytest.raises(InputError, match="coco.json: not readable JSON"):
        add_coco_labels(folder, coco)
    coco.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="expected a COCO instances file"):
        add_coco_labels(folder, coco)
    data = _coco(["a", "b", "c"])
    coco.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"none of its 4 images is in .*matched by file name"):
        add_coco_labels(folder, coco)
    data = _coco(_names(folder))
    data["images"][0]["width"] = 640
    coco.write_text(json.dumps(data))
    with pytest.raises(InputError, match="is 640x48 but images/.* is 64x48"):
        add_coco_labels(folder, coco)
    with pytest.raises(InputError, match="index.json: no such file; expected a folder"):
        add_coco_labels(tmp_path, coco)
    index = json.loads((folder / "index.json").read_text())
    for bad, message in (({"format": "coco"}, "expected format 'mtl-split-folder' version 1"),
                         ({"detection_classes": [1]}, "detection_classes must be a list of"),
                         ({"images": [{"id": 0}]}, "every image needs \"id\", \"file_name\"")):
        (folder / "index.json").write_text(json.dumps({**index, **bad}))
        with pytest.raises(InputError, match=message):
            add_coco_labels(folder, coco)


def test_odd_values_in_an_export_are_skipped_or_one_error(folder, tmp_path):
    names = _names(folder)
    coco = tmp_path / "coco.json"
    data = {"categories": [{"id": 1, "name": "box"}],
            "images": [{"id": 1, "file_name": f"{names[0]}.png"},
                       {"id": 2, "file_name": f"{names[1]}.png"}],
            "annotations": [
                "not an object",
                {"id": 1, "image_id": [1], "category_id": 1, "bbox": [1, 1, 5, 5]},
                {"id": 2, "image_id": 1, "category_id": None, "bbox": [1, 1, 5, 5]},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": ["1", 1, 5, 5]},
                {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 1, float("nan"), 5]},
                {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                 "segmentation": "garbage"},
                {"id": 6, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5],
                 "segmentation": [[1, 2, 3]]},                       # too short a polygon
                {"id": 7, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5],
                 "segmentation": {"size": [H, W]}}]}                 # RLE without counts
    coco.write_text(json.dumps(data))
    report = add_coco_labels(folder, coco)
    assert report.skipped_annotations == 5 and report.boxes == 3 and report.segmented == 0
    assert report.bad_masks == 2 and "annotation 5: segmentation of type str" in \
        report.summary()
    index = json.loads((folder / "index.json").read_text())
    assert [r["labelled"] for r in index["images"][:2]] == [["detection", "depth"]] * 2
    for bad in ({"id": [1], "file_name": "x.png"}, {"id": 1, "file_name": 5}):
        data["images"] = [bad]
        coco.write_text(json.dumps(data))
        with pytest.raises(InputError, match="every entry of images needs \"id\""):
            add_coco_labels(folder, coco)
    data["images"] = [{"id": 1, "file_name": f"{names[0]}.png"}]
    data["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                            "segmentation": {"size": [10, 10], "counts": [100]}}]
    coco.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"an RLE mask of size \[10, 10\] on an image of 64x48"):
        add_coco_labels(folder, coco)


def test_rle_decoding_matches_pycocotools_and_refuses_what_does_not_fit():
    rng = np.random.default_rng(0)
    for trial in range(20):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random()
        if trial % 3 == 0:
            mask = np.zeros((h, w), bool)
            mask[h // 3:, w // 4:w // 2 + 1] = True   # long runs: multi-character counts
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = rle_counts(rle["counts"].decode())
        assert sum(counts) == h * w
        assert np.array_equal(rle_mask(counts, int(h), int(w)), mask)
    for counts in ([100], [10, 5000], [-1, 3073], [1.5, 3070.5], "abc"):
        with pytest.raises(ValueError, match="adding up to 48x64 pixels"):
            rle_mask(counts, H, W)
    with pytest.raises(ValueError, match="truncated"):
        rle_counts("0" + chr(48 + 0x20))


def test_malformed_masks_keep_the_boxes_and_are_counted(folder, tmp_path):
    names = _names(folder)
    coco = tmp_path / "coco.json"
    anns = [{"size": [H, W], "counts": [5, 10]},             # does not cover the image
            {"size": [H, W], "counts": "\x7f\x7f"},           # not RLE characters
            [[0, 0, 1e12, 0, 1e12, 1e12]]]                  # far outside the image
    data = {"categories": [{"id": 1, "name": "box"}],
            "images": [{"id": i, "file_name": f"{names[i]}.png"} for i in range(3)],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5],
                             "segmentation": seg} for i, seg in enumerate(anns)]}
    coco.write_text(json.dumps(data))
    report = add_coco_labels(folder, coco, background="floor")
    assert report.bad_masks == 3 and report.segmented == 0 and report.boxes == 3
    index = json.loads((folder / "index.json").read_text())
    assert [r["labelled"] for r in index["images"][:3]] == [["detection", "depth"]] * 3
