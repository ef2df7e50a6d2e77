"""KITTI source: a tiny object data set in the exact KITTI layout, images and depth from a sim
render, label and calib files with known values."""

from pathlib import Path

import numpy as np
import pytest

from mtl_split_core.data.sources import kitti  # noqa: F401  (registers the format)
from mtl_split_core.data.sources.base import SPLITS, DataSpec, split_of
from support.sim_frame import HEIGHT, WIDTH, sim_frame, write_png
from support.source_checks import load, one_line_error

# Two frames per split, chosen by the hash split itself.
NAMES = {s: [n for n in (f"{i:06d}" for i in range(200)) if split_of(n) == s][:2] for s in SPLITS}
LABELS = """\
Car 0.00 0 -1.58 10.00 20.00 40.00 50.00 1.52 1.63 3.88 1.00 1.65 12.00 -1.57
Pedestrian 0.30 1 0.20 60.50 10.25 70.75 60.00 1.70 0.60 0.80 -2.00 1.60 8.00 0.10
Cyclist 0.50 2 0.00 0.00 30.00 95.00 71.00 1.70 0.60 1.80 -4.00 1.60 6.00 0.00

DontCare -1 -1 -10 80.00 5.00 90.00 15.00 -1 -1 -1 -1000 -1000 -1000 -10
"""
# Inclusive right/bottom pixels -> exclusive edges; the Cyclist is clipped at the border.
EXPECTED_BOXES = [[10, 20, 41, 51], [60.5, 10.25, 71.75, 61], [0, 30, 96, 72]]
EXPECTED_CLASSES = ["Car", "Pedestrian", "Cyclist"]
EXPECTED_IGNORE = [[80, 5, 91, 16]]
P2 = [60.0, 0.0, 47.5, 44.9, 0.0, 61.0, 35.5, 0.2, 0.0, 0.0, 1.0, 0.003]


def calib_text(p2: list) -> str:
    eye = "1 0 0 0 0 1 0 0 0 0 1 0"
    return (f"P0: {eye}\nP1: {eye}\nP2: {' '.join(map(str, p2))}\nP3: {eye}\n"
            "R0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n")


def write_kitti(root: Path, names: list[str] | None = None, depth_for: tuple[str, ...] = ()
                ) -> Path:
    names = names if names is not None else [n for s in SPLITS for n in NAMES[s]]
    training = root / "training"
    for i, name in enumerate(names):
        write_png(training / "image_2" / f"{name}.png", np.roll(sim_frame().rgb, i, axis=1))
        (training / "label_2").mkdir(parents=True, exist_ok=True)
        (training / "label_2" / f"{name}.txt").write_text(LABELS)
        (training / "calib").mkdir(parents=True, exist_ok=True)
        (training / "calib" / f"{name}.txt").write_text(calib_text(P2))
    for name in depth_for:
        write_png(root / "depth" / f"{name}.png", depth_png(sim_frame().depth))
    return root


def depth_png(depth: np.ndarray) -> np.ndarray:
    return np.clip(np.round(depth * 256), 0, 65535).astype(np.uint16)



def test_images_boxes_dont_care_and_intrinsics(tmp_path):
    root = write_kitti(tmp_path / "kitti")
    source = DataSpec.parse(f"kitti:{root}").open("train")
    assert source.detection_classes == ("Car", "Van", "Truck", "Pedestrian", "Person_sitting",
                                        "Cyclist", "Tram", "Misc")
    assert source.segmentation_classes == ()
    samples = list(source)
    assert [s.name for s in samples] == NAMES["train"] == sorted(NAMES["train"])
    first = samples[0]
    index = [n for s in SPLITS for n in NAMES[s]].index(first.name)
    assert np.array_equal(first.image, np.roll(sim_frame().rgb, index, axis=1))
    assert first.labelled == {"detection"}
    assert first.boxes.dtype == np.float32 and first.boxes.tolist() == EXPECTED_BOXES
    assert [source.detection_classes[c] for c in first.classes] == EXPECTED_CLASSES
    assert first.ignore_boxes.tolist() == EXPECTED_IGNORE
    assert np.allclose(first.k, [[60, 0, 47.5], [0, 61, 35.5], [0, 0, 1]])


def test_hash_split_covers_every_frame_once(tmp_path):
    root = write_kitti(tmp_path / "kitti")
    seen = [s.name for split in SPLITS for s in load(f"kitti:{root}", split)]
    assert sorted(seen) == sorted(n for s in SPLITS for n in NAMES[s])


def test_optional_depth_maps(tmp_path):
    with_depth = NAMES["train"][0]
    root = write_kitti(tmp_path / "kitti", depth_for=(with_depth,))
    samples = {s.name: s for s in load(f"kitti:{root}?depth={root / 'depth'}")}
    truth = sim_frame().depth
    depth = samples[with_depth].depth
    assert depth.dtype == np.float32 and depth.shape == (HEIGHT, WIDTH)
    assert np.array_equal(depth, depth_png(truth) / np.float32(256))
    assert np.abs(depth - truth).max() <= 1 / 512 + 1e-6 and (depth[truth == 0] == 0).all()
    assert samples[with_depth].labelled == {"detection", "depth"}
    assert samples[NAMES["train"][1]].depth is None  # no map for this frame: not labelled


def test_without_calib_k_is_unknown(tmp_path):
    root = write_kitti(tmp_path / "kitti")
    for path in (root / "training" / "calib").iterdir():
        path.unlink()
    (root / "training" / "calib").rmdir()
    assert all(s.k is None for s in load(f"kitti:{root}"))



@pytest.mark.parametrize("line, expected", [
    ("Car 0 0 0 10 20 40 50 1 1 1 0 0 5", "14 fields"),
    ("Bus 0 0 0 10 20 40 50 1 1 1 0 0 5 0", "'Bus'"),
    ("Car 0 0 0 40 20 10 50 1 1 1 0 0 5 0", "left <= right"),
    ("Car 0 0 0 10 20 140 50 1 1 1 0 0 5 0", "96x72"),
    ("Car 0 0 0 10 x 40 50 1 1 1 0 0 5 0", "4 numbers"),
])
def test_bad_label_lines(tmp_path, line, expected):
    root = write_kitti(tmp_path / "kitti")
    path = root / "training" / "label_2" / f"{NAMES['train'][0]}.txt"
    path.write_text(LABELS + line + "\n")
    one_line_error(f"kitti:{root}", f"{path}:6", expected)


def test_bad_calib(tmp_path):
    root = write_kitti(tmp_path / "kitti")
    path = root / "training" / "calib" / f"{NAMES['train'][0]}.txt"
    path.write_text(calib_text(P2[:11]))
    one_line_error(f"kitti:{root}", str(path), "12 finite numbers")
    path.write_text("P0: 1 2 3\n")
    one_line_error(f"kitti:{root}", str(path), "P2")


def test_wrong_layout_missing_files_and_empty_split(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(f"kitti:{tmp_path / 'empty'}", "training/image_2", "expected")
    root = write_kitti(tmp_path / "train_only", names=NAMES["train"])
    one_line_error(f"kitti:{root}", "image_2", "split 'val'", split="val")
    one_line_error(f"kitti:{root}?depth={tmp_path / 'nowhere'}", "nowhere", "depth maps")
    one_line_error(f"kitti:{root}?calib=x", "unknown option")
    missing = root / "training" / "calib" / f"{NAMES['train'][1]}.txt"
    missing.unlink()
    one_line_error(f"kitti:{root}", str(missing), "missing")
    missing.write_text(calib_text(P2))
    missing = root / "training" / "label_2" / f"{NAMES['train'][1]}.txt"
    missing.unlink()
    one_line_error(f"kitti:{root}", str(missing), "missing")
    for path in (root / "training" / "label_2").iterdir():
        path.unlink()
    (root / "training" / "label_2").rmdir()
    one_line_error(f"kitti:{root}", "label_2", "?depth=DIR")


def test_bad_depth_map(tmp_path):
    name = NAMES["train"][0]
    root = write_kitti(tmp_path / "kitti", depth_for=(name,))
    path = write_png(root / "depth" / f"{name}.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    one_line_error(f"kitti:{root}?depth={root / 'depth'}", str(path), "uint16")
    write_png(path, np.zeros((10, 10), np.uint16))
    one_line_error(f"kitti:{root}?depth={root / 'depth'}", str(path), "96x72")
