"""``folder``: our own format, written in its exact layout from sim renders."""

import json

import numpy as np
import pytest

from mtl_split_core.data.sources import DataSpec, SourceError, split_of
from support.data_layouts import depth_mm, write_folder, write_png


def _open(root, split="train"):
    return DataSpec.parse(f"folder:{root}").open(split)


def test_labels_come_back_as_written(tmp_path, frames):
    write_folder(tmp_path, frames[:3], labelled={1: ["depth"], 2: ["detection"]},
                 crowd={0: [[2, 3, 10, 5]]})
    samples = list(_open(tmp_path))
    assert [s.name for s in samples] == ["frame_000", "frame_001", "frame_002"]
    full, depth_only, boxes_only = samples
    f = frames[0]
    np.testing.assert_array_equal(full.image, f.rgb)
    np.testing.assert_array_equal(full.semantic, f.seg)
    np.testing.assert_allclose(full.depth, f.depth, atol=5e-4)  # millimetre PNG
    assert full.depth.dtype == np.float32
    np.testing.assert_array_equal(full.boxes, f.boxes)
    np.testing.assert_array_equal(full.classes, f.labels)
    np.testing.assert_array_equal(full.ignore_boxes, [[2, 3, 12, 8]])  # crowd: x, y, w, h
    np.testing.assert_allclose(full.k.reshape(9), f.camera.k)
    assert full.labelled == {"detection", "segmentation", "depth"}
    assert depth_only.labelled == {"depth"} and depth_only.boxes is None
    np.testing.assert_allclose(depth_only.depth, frames[1].depth, atol=5e-4)
    assert boxes_only.labelled == {"detection"} and boxes_only.semantic is None
    np.testing.assert_array_equal(boxes_only.boxes, frames[2].boxes)


def test_detection_labelled_with_no_annotations_means_nothing_there(tmp_path, frames):
    index = write_folder(tmp_path, frames[:1])
    index["annotations"] = []
    (tmp_path / "index.json").write_text(json.dumps(index))
    (s,) = list(_open(tmp_path))
    assert "detection" in s.labelled and s.boxes.shape == (0, 4) and s.classes.shape == (0,)


def test_splits_given_or_hashed(tmp_path, frames):
    write_folder(tmp_path, frames, splits={0: "val", 1: None, 2: None, 3: "test"})
    want = {"val": {"frame_000"}, "test": {"frame_003"}, "train": set()}
    for i in (1, 2):
        want[split_of(f"images/frame_{i:03d}.png")].add(f"frame_{i:03d}")
    for split, names in want.items():
        src = _open(tmp_path, split)
        assert len(src) == len(names) and {s.name for s in src} == names


def _edit(root, change):
    index = json.loads((root / "index.json").read_text())
    change(index)
    (root / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("change, expected", [
    (lambda ix: ix.update(format="coco"), 'expected "format": "mtl-split-folder"'),
    (lambda ix: ix.update(version=2), "version 2"),
    (lambda ix: ix.update(detection_classes="duck"), "detection_classes: expected a list"),
    (lambda ix: ix["images"][0].pop("width"), r'images\[0\]: "width"'),
    (lambda ix: ix["images"][0].update(labelled=["depth", "pose"]), '"labelled" must list'),
    (lambda ix: ix["images"][0].pop("depth_file"), 'labelled depth but no "depth_file"'),
    (lambda ix: ix["images"][0].update(split="dev"), "split 'dev'"),
    (lambda ix: ix["images"][0].update(k=[1, 2, 3]), "k must be 9 numbers"),
    (lambda ix: ix["images"][0].update(labelled=["depth"]), 'has annotations but its'),
    (lambda ix: ix["annotations"][0].update(image_id=99), "image_id names no image"),
])
def test_a_bad_index_is_one_line_naming_it(tmp_path, frames, change, expected):
    write_folder(tmp_path, frames[:1])
    _edit(tmp_path, change)
    with pytest.raises(SourceError, match=expected) as err:
        _open(tmp_path)
    assert str(tmp_path / "index.json") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("change, expected", [
    (lambda ix: ix["annotations"][0].update(category_id=7), "category_id 7 out of range"),
    (lambda ix: ix["annotations"][0].update(bbox=[1, 2, 3]), "bbox must be 4 finite"),
    (lambda ix: ix["images"][0].update(width=95), "size 96x72, index.json says 95x72"),
])
def test_bad_labels_are_named_when_read(tmp_path, frames, change, expected):
    write_folder(tmp_path, frames[:1])
    _edit(tmp_path, change)
    with pytest.raises(SourceError, match=expected):
        list(_open(tmp_path))


def test_missing_and_wrong_files_are_named(tmp_path, frames):
    write_folder(tmp_path, frames[:1])
    (tmp_path / "images" / "frame_000.png").unlink()
    with pytest.raises(SourceError, match="images/frame_000.png: missing or unreadable"):
        list(_open(tmp_path))
    write_folder(tmp_path, frames[:1])
    write_png(tmp_path / "depth" / "frame_000.png", depth_mm(frames[0].depth).astype(np.uint8))
    with pytest.raises(SourceError, match="depth/frame_000.png: expected a single-channel "
                       "uint16"):
        list(_open(tmp_path))
    (tmp_path / "index.json").unlink()
    with pytest.raises(SourceError, match="index.json: missing file"):
        _open(tmp_path)
