"""NYUv2 source: a tiny labelled .mat written as MATLAB v7.3 does (HDF5, axes reversed, names as
a cell array of char references), images and depth from a sim render, painted instances; the
official splits.mat as MATLAB v5 (plain and compressed) and v7.3."""

import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from mtl_split_core.data.sources import nyuv2  # noqa: F401  (registers the format)
from mtl_split_core.data.sources.base import SPLITS, DataSpec, SourceError, split_of
from support.sim_frame import HEIGHT, WIDTH, sim_frame
from support.source_checks import load, one_line_error

N = 6
NAMES = ["wall", "floor", "ceiling", "bed", "chair", "sofa", "table", "door", "window",
         "picture", "lamp", "books"]
CHAIR, TABLE, WINDOW, BOOKS = 5, 7, 9, 12
# (raw class, instance, (x1, y1, x2, y2)); instance 1 of chair and of table are two objects.
PAINTED = [(CHAIR, 1, (5, 10, 20, 30)), (CHAIR, 2, (30, 40, 50, 60)), (TABLE, 1, (60, 20, 90, 50)),
           (CHAIR, 0, (60, 0, 70, 5)),   # a chair without an instance number
           (BOOKS, 0, (0, 60, 20, 72)), (WINDOW, 0, (20, 60, 30, 72)), (0, 0, (0, 0, 10, 5))]
CLASS_MAP = {"classes": ["structure", "furniture", "other"], "things": ["furniture"],
             "map": {"1": "structure", "2": "structure", "3": "structure", "4": "furniture",
                     "5": "furniture", "6": "furniture", "7": "furniture", "8": "structure",
                     "9": None, "10": "other", "11": "other", "12": "other"}}
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sat Nov 28 11:00:00 2026 " \
                b"HDF5 schema 1.00 ."


def frames() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, H, W, 3), depths, labels, instances) as MATLAB holds them, frame first."""
    frame = sim_frame()
    images = np.stack([np.roll(frame.rgb, i, axis=1) for i in range(N)])
    depths = np.stack([np.roll(frame.depth, i, axis=1) for i in range(N)]).astype(np.float64)
    labels = np.repeat((frame.seg % 3 + 1)[None].astype(np.uint16), N, axis=0)
    instances = np.zeros(labels.shape, np.uint8)
    for raw, instance, (x1, y1, x2, y2) in PAINTED:
        labels[:, y1:y2, x1:x2], instances[:, y1:y2, x1:x2] = raw, instance
    return images, depths, labels, instances


def write_mat(path: Path, names: list[str] | None = NAMES, labels: np.ndarray | None = None,
              skip: str = "") -> Path:
    """Write like MATLAB v7.3: a 512-byte user block with the MATLAB header, every array with
    its axes reversed (MATLAB's H x W x 3 x N becomes N x 3 x W x H), strings as references."""
    images, depths, raw_labels, instances = frames()
    labels = raw_labels if labels is None else labels
    with h5py.File(path, "w", userblock_size=512) as f:
        arrays = {"images": images.transpose(0, 3, 2, 1), "depths": depths.transpose(0, 2, 1),
                  "labels": labels.transpose(0, 2, 1), "instances": instances.transpose(0, 2, 1)}
        for key, array in arrays.items():
            if key != skip:
                f.create_dataset(key, data=array)
        if names is not None:
            refs = f.create_group("#refs#")
            handles = []
            for i, name in enumerate(names):
                chars = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name],
                                                                     np.uint16))
                chars.attrs["MATLAB_class"] = np.bytes_("char")
                handles.append(chars.ref)
            cell = f.create_dataset("names", (1, len(names)), dtype=h5py.ref_dtype)
            cell[0, :] = handles
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as raw:
        raw.write(MATLAB_HEADER.ljust(116) + bytes(8) + struct.pack("<H", 0x0200) + b"IM")
    return path


# --- MATLAB v5 (splits.mat) as MATLAB saves it (column vectors of doubles) ----------------------
def write_splits_v5(path: Path, train: list[int], test: list[int], compress: bool) -> Path:
    scipy.io.savemat(path, {"trainNdxs": np.array(train, float).reshape(-1, 1),
                            "testNdxs": np.array(test, float).reshape(-1, 1),
                            "n": np.array([[N]], float)}, do_compression=compress)
    return path



def load_or_empty(spec: str, split: str) -> list:
    """The split's samples; [] where the (hash) split has none, which the source refuses."""
    try:
        return load(spec, split)
    except SourceError as err:
        if f"no frames in split {split!r}" in str(err):
            return []
        raise


def all_samples(spec: str) -> dict:
    return {s.name: s for split in SPLITS for s in load_or_empty(spec, split)}


def test_axis_order_depth_and_intrinsics(tmp_path):
    path = write_mat(tmp_path / "nyu_depth_v2_labeled.mat")
    images, depths, _, _ = frames()
    samples = all_samples(f"nyuv2:{tmp_path}")  # a folder holding the file works too
    assert sorted(samples) == [f"nyuv2_{i:04d}" for i in range(1, N + 1)]
    for i in range(N):
        sample = samples[f"nyuv2_{i + 1:04d}"]
        assert sample.image.shape == (HEIGHT, WIDTH, 3)
        assert np.array_equal(sample.image, images[i])
        assert sample.depth.dtype == np.float32
        assert np.allclose(sample.depth, depths[i], atol=1e-6)
        assert np.allclose(sample.k, [[518.857901, 0, 325.582449], [0, 519.469611, 253.736166],
                                      [0, 0, 1]])
    for split in SPLITS:
        assert all(split_of(s.name) == split for s in load_or_empty(f"nyuv2:{path}", split))


def test_raw_classes_named_from_the_file(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    source = DataSpec.parse(f"nyuv2:{path}").open("train")
    assert source.segmentation_classes == tuple(NAMES) and source.detection_classes == ()
    sample = next(iter(source))
    _, _, labels, _ = frames()
    raw = labels[int(sample.name[-4:]) - 1]
    assert np.array_equal(sample.semantic, np.where(raw > 0, raw - 1, 255))
    assert sample.labelled == {"segmentation", "depth"}


def test_class_map_semantic_boxes_and_ignore(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    class_map = tmp_path / "map13.json"
    class_map.write_text(json.dumps(CLASS_MAP))
    source = DataSpec.parse(f"nyuv2:{path}?classes={class_map}").open("train")
    assert source.segmentation_classes == ("structure", "other", "furniture")  # stuff first
    assert source.detection_classes == ("furniture",)
    sample = next(iter(source))
    raw = frames()[2][int(sample.name[-4:]) - 1]
    expected = {0: 255, 1: 0, 2: 0, 3: 0, CHAIR: 2, TABLE: 2, WINDOW: 255, BOOKS: 1}
    for raw_id, semantic_id in expected.items():
        assert (raw == raw_id).any() and (sample.semantic[raw == raw_id] == semantic_id).all()
    assert sample.boxes.tolist() == [[5, 10, 20, 30], [30, 40, 50, 60], [60, 20, 90, 50]]
    assert sample.classes.tolist() == [0, 0, 0]
    assert sample.ignore_boxes.tolist() == [[60, 0, 70, 5]]
    assert sample.labelled == {"detection", "segmentation", "depth"}


def test_classes_none_is_depth_only(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    assert all(s.labelled == {"depth"} for s in all_samples(f"nyuv2:{path}?classes=none").values())


@pytest.mark.parametrize("compress", [False, True])
def test_official_splits_mat_v5(tmp_path, compress):
    path = write_mat(tmp_path / "nyu.mat")
    splits = write_splits_v5(tmp_path / "splits.mat", [1, 2, 4, 6], [3, 5], compress)
    spec = f"nyuv2:{path}?splits={splits}"
    assert [s.name for s in load(spec, "test")] == ["nyuv2_0003", "nyuv2_0005"]
    train, val = [[s.name for s in load_or_empty(spec, split)] for split in ("train", "val")]
    assert sorted(train + val) == ["nyuv2_0001", "nyuv2_0002", "nyuv2_0004", "nyuv2_0006"]
    assert all(split_of(n) == "val" for n in val) and all(split_of(n) != "val" for n in train)


def test_splits_mat_v73(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    with h5py.File(tmp_path / "splits.mat", "w") as f:  # MATLAB's n x 1 doubles -> (1, n)
        f["trainNdxs"] = np.array([[1.0, 2.0, 3.0, 4.0]])
        f["testNdxs"] = np.array([[5.0, 6.0]])
    spec = f"nyuv2:{path}?splits={tmp_path / 'splits.mat'}"
    assert [s.name for s in load(spec, "test")] == ["nyuv2_0005", "nyuv2_0006"]



def test_wrong_layout(tmp_path):
    not_hdf5 = tmp_path / "nyu.mat"
    not_hdf5.write_text("MATLAB 5.0 MAT-file")
    one_line_error(f"nyuv2:{not_hdf5}", str(not_hdf5), "v7.3")
    one_line_error(f"nyuv2:{write_mat(tmp_path / 'a.mat', skip='instances')}", "a.mat",
                   "instances")
    path = tmp_path / "b.mat"
    with h5py.File(path, "w") as f:  # frames stored H x W x 3 (not MATLAB's reversed order)
        f["images"] = frames()[0]
        for key in ("depths", "labels", "instances"):
            f[key] = np.zeros((N, HEIGHT, WIDTH))
    one_line_error(f"nyuv2:{path}", "b.mat", "(N, 3, W, H)")
    path = write_mat(tmp_path / "c.mat", names=None)
    with h5py.File(path, "r+") as f:
        f["names"] = np.zeros((1, 3))  # numbers, not references to char arrays
    one_line_error(f"nyuv2:{path}", "c.mat", "cell array of class names")
    one_line_error(f"nyuv2:{write_mat(tmp_path / 'd.mat')}?class=x", "unknown option")


def test_labels_out_of_range(tmp_path):
    labels = frames()[2].copy()
    labels[:, 0, 0] = len(NAMES) + 1
    one_line_error(f"nyuv2:{write_mat(tmp_path / 'a.mat', labels=labels)}", "a.mat",
                   f"0..{len(NAMES)}")
    labels[:, 0, 0] = 300  # no names: the raw classes are 1..max, too many for a uint8 mask
    path = write_mat(tmp_path / "b.mat", names=None, labels=labels)
    one_line_error(f"nyuv2:{path}", "b.mat", "300 raw classes", "?classes=")


def test_bad_class_maps(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    class_map = tmp_path / "map.json"
    for broken, expected in [
            ({**CLASS_MAP, "map": {"13": "other"}}, "raw id 13"),
            ({**CLASS_MAP, "map": {"1": "chairs"}}, "'chairs'"),
            ({**CLASS_MAP, "things": ["person"]}, "things"),
            ({"classes": ["a", "a"], "map": {}}, "distinct"),
            ({"map": {}}, "class-map JSON")]:
        class_map.write_text(json.dumps(broken))
        one_line_error(f"nyuv2:{path}?classes={class_map}", str(class_map), expected)


def test_bad_splits_and_empty_split(tmp_path):
    path = write_mat(tmp_path / "nyu.mat")
    splits = tmp_path / "splits.mat"
    write_splits_v5(splits, [0, 1], [2], compress=False)
    one_line_error(f"nyuv2:{path}?splits={splits}", str(splits), "1..6")
    write_splits_v5(splits, [1, 2], [2, 3], compress=True)
    one_line_error(f"nyuv2:{path}?splits={splits}", str(splits), "overlap")
    write_splits_v5(splits, [1, 2], [], compress=False)
    one_line_error(f"nyuv2:{path}?splits={splits}", str(path), "split 'test'", split="test")
    truncated = struct.pack("<II", 14, 0xFFFF)  # a matrix element longer than the file
    splits.write_bytes(b"MATLAB 5.0 MAT-file".ljust(126) + b"IM" + truncated)
    one_line_error(f"nyuv2:{path}?splits={splits}", str(splits), "MATLAB v5")
