"""``load_sources``: letterbox geometry, class lists, weights and partial-label flags."""

import json

import cv2
import numpy as np
import pytest

from mtl_split_core.classes import DETECTION_CLASSES, IGNORE_ID, STUFF_CLASSES
from mtl_split_core.data.dataset import load_dataset
from mtl_split_core.data.frames import FrameError
from mtl_split_core.data.sources import DataSource, DataSpec, Sample, SourceError, base
from mtl_split_core.data.sources.loading import ClassLists, load_sources, union_classes
from mtl_split_core.geometry import Intrinsics
from support.data_layouts import write_coco, write_folder, write_png


def _load(texts, split="train", size=(64, 48), **kw):
    """``load_sources`` with every frame decoded into a dataset dict (``.data``)."""
    loaded = load_sources([DataSpec.parse(t) for t in texts], split, size, **kw)
    loaded.data = loaded.data.to_dict()
    return loaded


def test_letterbox_moves_every_label_with_the_image(tmp_path, wide_frames):
    write_folder(tmp_path, wide_frames)                      # 120x60 -> 64x48: bands of 8 px
    out = _load([f"folder:{tmp_path}"]).data
    sx, sy, oy = 64 / 120, 32 / 60, 8
    rows = np.floor((np.arange(32) + 0.5) / sy).astype(int)  # nearest source pixel centres
    cols = np.floor((np.arange(64) + 0.5) / sx).astype(int)
    for i, f in enumerate(wide_frames):
        img, seg, depth = out["images"][i], out["seg"][i], out["depth"][i]
        assert img.shape == (48, 64, 3) and (img[:oy] == 128).all() and (img[40:] == 128).all()
        area = cv2.resize(f.rgb, (64, 32), interpolation=cv2.INTER_AREA)
        assert np.abs(img[oy:40].astype(int) - area).mean() < 4
        assert (seg[:oy] == IGNORE_ID).all() and (seg[40:] == IGNORE_ID).all()
        np.testing.assert_array_equal(seg[oy:40], f.seg[np.ix_(rows, cols)])
        assert (depth[:oy] == 0).all() and (depth[40:] == 0).all()
        mm = np.round(f.depth * 1000) / 1000
        np.testing.assert_allclose(depth[oy:40], mm[np.ix_(rows, cols)], atol=1e-6)
        want = f.boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([0, oy, 0, oy])
        np.testing.assert_allclose(out["boxes"][i], want, rtol=1e-6)
        scaled = Intrinsics.from_camera_info_k(f.camera.k, 120, 60).scaled(sx, sy)
        k = out["k"][i].reshape(3, 3)
        np.testing.assert_allclose([k[0, 0], k[1, 1], k[0, 2], k[1, 2]],
                                   [scaled.fx, scaled.fy, scaled.cx, scaled.cy + oy])
        # A 3D point projects onto the same place before and after, in letterboxed pixels.
        p = np.array([0.3, -0.2, 2.0])
        u, v, _ = np.asarray(f.camera.k).reshape(3, 3) @ p / p[2]
        u2, v2, _ = k @ p / p[2]
        assert (u2 + 0.5, v2 + 0.5) == pytest.approx(((u + 0.5) * sx, (v + 0.5) * sy + oy))


def test_same_size_sim_data_is_todays_dict(tmp_path):
    from mtl_split_core.sim.generate import generate_dataset

    generate_dataset(tmp_path, frames=4, size=(64, 48), frames_per_scene=4, workers=1,
                     progress=False, split_fractions=(1, 0, 0))
    ref = load_dataset(tmp_path, ("train",))
    loaded = _load([f"sim:{tmp_path}"])
    out = loaded.data
    assert loaded.detection_classes == DETECTION_CLASSES
    assert loaded.segmentation_classes == STUFF_CLASSES + DETECTION_CLASSES
    for key in ("images", "seg", "depth", "k"):
        assert out[key].dtype == ref[key].dtype
        np.testing.assert_array_equal(out[key], ref[key])
    for key in ("boxes", "labels"):
        for a, b in zip(out[key], ref[key]):
            np.testing.assert_array_equal(a, b)
    assert out["has_detection"].all() and out["has_segmentation"].all()
    assert out["has_depth"].all() and all(b.shape == (0, 4) for b in out["ignore_boxes"])
    np.testing.assert_allclose(out["sample_weight"], 0.25)
    assert loaded.frames == {f"sim:{tmp_path}": 4}


def _people_folder(root, semantic_ids=(0, 1, 2)):
    """A 40x30 folder labelling person (box + mask), duck (mask) and sky."""
    sem = np.full((30, 40), semantic_ids[0], np.uint8)
    sem[5:20, 5:15] = semantic_ids[1]
    sem[20:25, 30:35] = semantic_ids[2]
    write_png(root / "images" / "p.png", np.full((30, 40, 3), 60, np.uint8))
    write_png(root / "semantic" / "p.png", sem)
    index = {"format": "mtl-split-folder", "version": 1,
             "detection_classes": ["person", "duck"],
             "segmentation_classes": ["sky", "person", "duck"],
             "images": [{"id": 0, "file_name": "images/p.png", "width": 40, "height": 30,
                         "semantic_file": "semantic/p.png", "split": "train",
                         "labelled": ["detection", "segmentation"]}],
             "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [5, 5, 10, 15],
                              "iscrowd": 0, "area": 150}]}
    (root / "index.json").write_text(json.dumps(index))
    return root


def test_class_lists_are_the_union_by_name_and_ids_follow(tmp_path, frames):
    write_folder(tmp_path / "sim", frames[:2])
    people = _people_folder(tmp_path / "people")
    loaded = _load([f"folder:{tmp_path / 'sim'}", f"folder:{people}@0.5"], size=(40, 30))
    stuff = (*STUFF_CLASSES, "sky")
    assert loaded.detection_classes == (*DETECTION_CLASSES, "person")
    assert loaded.segmentation_classes == stuff + loaded.detection_classes
    d = loaded.data
    np.testing.assert_array_equal(d["labels"][2], [len(DETECTION_CLASSES)])  # person
    seg = d["seg"][2]
    assert seg[0, 0] == stuff.index("sky")
    assert seg[10, 10] == len(stuff) + len(DETECTION_CLASSES)              # person
    assert seg[22, 32] == len(stuff) + DETECTION_CLASSES.index("duck")
    np.testing.assert_allclose(d["sample_weight"], [0.5, 0.5, 0.5])      # 1/2 each, 0.5/1
    assert np.isnan(d["k"][2]).all() and np.isfinite(d["k"][:2]).all()
    assert union_classes([]).segmentation_classes == ("background",)


def test_a_class_map_renames_and_drops(tmp_path, frames):
    write_folder(tmp_path / "sim", frames[:1])
    people = _people_folder(tmp_path / "people")
    loaded = _load([f"folder:{tmp_path / 'sim'}", f"folder:{people}"], size=(40, 30),
                   class_map={"duck": "toy", "person": None, "sky": "background"})
    assert loaded.detection_classes == ("toy", *DETECTION_CLASSES[1:])
    assert loaded.segmentation_classes[:len(STUFF_CLASSES)] == STUFF_CLASSES
    d = loaded.data
    assert d["labels"][1].shape == (0,)
    np.testing.assert_array_equal(d["ignore_boxes"][1], [[5, 5, 15, 20]])  # dropped -> ignore
    seg = d["seg"][1]
    assert seg[0, 0] == 0 and seg[10, 10] == IGNORE_ID
    assert seg[22, 32] == len(STUFF_CLASSES)                                  # duck -> toy
    assert loaded.unmapped == ("person",)  # its boxes are ignored, its pixels 255


def test_fixed_class_lists_ignore_what_they_lack(tmp_path):
    people = _people_folder(tmp_path / "people")
    lists = ClassLists(("duck",), ("background", "duck"))
    loaded = _load([f"folder:{people}"], size=(40, 30), classes=lists)
    assert loaded.classes == lists
    d = loaded.data
    assert d["labels"][0].shape == (0,) and d["ignore_boxes"][0].shape == (1, 4)
    seg = d["seg"][0]
    assert seg[0, 0] == IGNORE_ID and seg[10, 10] == IGNORE_ID and seg[22, 32] == 1
    assert loaded.unmapped == ("person", "sky")
    assert any("ignored): person, sky" in line for line in loaded.summary())


def test_partial_labels_keep_placeholders_and_flags(tmp_path, frames):
    write_folder(tmp_path, frames[:3], labelled={1: ["depth"], 2: ["detection"]})
    write_coco(tmp_path / "coco", frames[:1])
    d = _load([f"folder:{tmp_path}", f"coco:{tmp_path / 'coco'}"], size=(96, 72)).data
    np.testing.assert_array_equal(d["has_detection"], [True, False, True, True])
    np.testing.assert_array_equal(d["has_segmentation"], [True, False, False, True])
    np.testing.assert_array_equal(d["has_depth"], [True, True, False, False])
    assert d["boxes"][1].shape == (0, 4) and (d["seg"][1] == IGNORE_ID).all()
    assert (d["seg"][2] == IGNORE_ID).all() and (d["depth"][2] == 0).all()
    assert (d["depth"][3] == 0).all() and (d["depth"][1] > 0).any()
    np.testing.assert_allclose(d["sample_weight"], [1 / 3] * 3 + [1])


def test_empty_and_out_of_range_data_are_named(tmp_path, frames):
    write_folder(tmp_path / "val_only", frames[:1], splits={0: "val"})
    with pytest.raises(SourceError, match=f"folder:{tmp_path / 'val_only'}: no train frames"):
        _load([f"folder:{tmp_path / 'val_only'}"])
    with pytest.raises(SourceError, match="no test frames"):
        _load([f"folder:{tmp_path / 'val_only'}"], split="test")
    assert len(_load([f"folder:{tmp_path / 'val_only'}"], split="val").data["images"]) == 1
    people = _people_folder(tmp_path / "people", semantic_ids=(0, 1, 7))
    with pytest.raises(FrameError, match="p: segmentation id 7 out of range: expected 0..2"):
        _load([f"folder:{people}"])
    with pytest.raises(SourceError, match="no data source"):
        load_sources([], "train", (64, 48))


class _OneSample(DataSource):
    """A source yielding one hand-made sample (to feed ``load_sources`` what no file format
    here would produce)."""

    detection_classes = ("a", "b")
    segmentation_classes = ("bg", "a", "b")
    made = None

    def __len__(self):
        return 1

    def sample(self, index):
        return self.made


@pytest.mark.parametrize("change, expected", [
    ({"classes": np.array([1, 9])}, "detection class 9 out of range: expected 0..1"),
    ({"classes": np.array([1])}, "boxes must be \\(K, 4\\) finite with K integer classes"),
    ({"classes": np.array([1.0, 0.0])}, "boxes must be .* integer classes"),
    ({"ignore_boxes": np.zeros((2, 3))}, "ignore boxes must be \\(M, 4\\) finite"),
    ({"boxes": np.array([[0, 0, np.nan, 4], [1, 1, 2, 2]])}, "boxes must be"),
    ({"image": np.zeros((6, 8, 3), np.float32)}, "image must be \\(H, W, 3\\) uint8"),
    ({"semantic": np.zeros((5, 8), np.uint8)}, "semantic must be uint8 of the image's size"),
    ({"depth": np.zeros((6, 7), np.float32)}, "depth must have the image's size"),
    ({"k": np.eye(2)}, "k must be a finite 3x3 matrix"),
])
def test_every_sample_is_checked(tmp_path, monkeypatch, change, expected):
    sample = Sample("s1", np.zeros((6, 8, 3), np.uint8), boxes=np.array([[0, 0, 2, 2],
                    [1, 1, 3, 3]], np.float32), classes=np.array([0, 1]))
    for key, value in change.items():
        setattr(sample, key, value)
    monkeypatch.setitem(base._SOURCES, "one", _OneSample)
    monkeypatch.setattr(_OneSample, "made", sample)
    with pytest.raises(FrameError, match=f"one:{tmp_path}: s1: {expected}"):
        _load([f"one:{tmp_path}"])


def test_depth_not_finite_or_negative_is_invalid(tmp_path, monkeypatch):
    depth = np.array([[1.5, np.nan, -2.0, np.inf]], np.float32).repeat(3, 0)
    sample = Sample("d", np.zeros((3, 4, 3), np.uint8), depth=depth)
    monkeypatch.setitem(base._SOURCES, "one", _OneSample)
    monkeypatch.setattr(_OneSample, "made", sample)
    d = _load([f"one:{tmp_path}"], size=(4, 3)).data
    np.testing.assert_array_equal(d["depth"][0], [[1.5, 0, 0, 0]] * 3)
    assert d["has_depth"].tolist() == [True] and d["has_detection"].tolist() == [False]
