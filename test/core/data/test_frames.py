"""One dataset builder for both on-disk forms; unreadable files are named, not None."""

import json

import cv2
import numpy as np
import pytest

from mtl_split_core.data.dataset import load_dataset
from mtl_split_core.data.frames import DatasetBuilder, indexed_frames, xyxy_boxes
from mtl_split_core.data.shards import pack_shards

INDEX = {"images": [{"id": 0, "file_name": "a", "split": "train", "k": list(range(9))},
                    {"id": 1, "file_name": "b", "split": "val", "k": list(range(9))}],
         "annotations": [{"image_id": 0, "category_id": 2, "bbox": [1, 2, 3, 4]},
                         {"image_id": 0, "category_id": 5, "bbox": [5, 6, 1, 1]}]}


def _folder(root):
    for sub in ("rgb", "seg", "depth"):
        (root / sub).mkdir(parents=True)
    for name in ("a", "b"):
        cv2.imwrite(str(root / "rgb" / f"{name}.jpg"), np.full((8, 12, 3), 90, np.uint8))
        cv2.imwrite(str(root / "seg" / f"{name}.png"), np.full((8, 12), 3, np.uint8))
        cv2.imwrite(str(root / "depth" / f"{name}.png"), np.full((8, 12), 2500, np.uint16))
    (root / "index.json").write_text(json.dumps(INDEX))
    return root


def test_builder_stacks_arrays_and_keeps_boxes_per_frame():
    b = DatasetBuilder()
    assert b.build()["images"].shape == (0,)
    boxes, labels = xyxy_boxes(INDEX["annotations"])
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 6], [5, 6, 6, 7]])
    assert labels.dtype == np.int64 and labels.tolist() == [2, 5]
    b.add(np.zeros((8, 12, 3), np.uint8), np.zeros((8, 12), np.uint8),
          np.ones((8, 12), np.float32), boxes, labels, list(range(9)))
    d = b.build()
    assert len(b) == 1 and d["images"].shape == (1, 8, 12, 3) and d["k"].shape == (1, 9)
    assert isinstance(d["boxes"], list) and d["boxes"][0] is boxes
    assert [img["id"] for img, _ in indexed_frames(INDEX, ("val",))] == [1]


def test_folder_and_shards_give_the_same_dict(tmp_path):
    root = _folder(tmp_path / "ds")
    pack_shards(root, tmp_path / "sh")
    a = load_dataset(root, ("train", "val"))
    b = load_dataset(tmp_path / "sh", ("train", "val"))
    assert set(a) == set(b) == {"images", "seg", "depth", "boxes", "labels", "k"}
    np.testing.assert_array_equal(a["seg"], b["seg"])
    np.testing.assert_allclose(a["depth"], b["depth"], rtol=0.03)  # shards: 8-bit log depth
    for x, y in zip(a["boxes"] + a["labels"], b["boxes"] + b["labels"]):
        np.testing.assert_array_equal(x, y)
    assert a["depth"][0, 0, 0] == pytest.approx(2.5)


def test_a_missing_image_is_named(tmp_path):
    root = _folder(tmp_path / "ds")
    (root / "seg" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        load_dataset(root, ("val",))


def test_partial_label_fields_appear_only_when_given():
    def frame(b, **kw):
        b.add(np.zeros((8, 12, 3), np.uint8), np.zeros((8, 12), np.uint8),
              np.ones((8, 12), np.float32), np.zeros((0, 4), np.float32),
              np.zeros(0, np.int64), list(range(9)), **kw)

    plain = DatasetBuilder()
    frame(plain)
    assert set(plain.build()) == {"images", "seg", "depth", "boxes", "labels", "k"}
    b = DatasetBuilder()
    frame(b)
    frame(b, labelled={"depth"}, ignore_boxes=np.array([[1, 2, 3, 4]], np.float32),
          weight=0.25)
    d = b.build()
    assert d["has_detection"].tolist() == [True, False]
    assert d["has_segmentation"].tolist() == [True, False]
    assert d["has_depth"].tolist() == [True, True] and d["has_depth"].dtype == bool
    assert d["ignore_boxes"][0].shape == (0, 4) and d["ignore_boxes"][1].tolist() == [[1, 2, 3, 4]]
    assert d["sample_weight"].dtype == np.float32 and d["sample_weight"].tolist() == [1.0, 0.25]
