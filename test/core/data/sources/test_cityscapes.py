"""Cityscapes source: a tiny data set in the exact Cityscapes layout, built from a sim render
(image, metric depth) with painted instances whose boxes are known."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtl_split_core.data.sources import cityscapes  # noqa: F401  (registers the format)
from mtl_split_core.data.sources.base import DataSpec, SourceError
from support.sim_frame import sim_frame, write_png
from support.source_checks import load, one_line_error

CITY, STEM = "aachen", "aachen_000000_000019"
# Sim semantic id -> Cityscapes label id: background -> sky, ground -> road, building,
# clutter -> pole, the sim objects -> vegetation.
SIM_TO_LABEL = {0: 23, 1: 7, 2: 11, 3: 17}
VEGETATION = 21
# label id -> train id, spot checks written independently of the module's table.
TRAIN_IDS = {0: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 21: 8, 23: 10, 24: 11, 26: 13, 29: 255}
PERSON, CAR, CARAVAN = 24, 26, 29
# (instance id, label id, [(x1, y1, x2, y2) painted rectangles]); 24000 is person number 0.
INSTANCES = [
    (24000, PERSON, [(50, 10, 58, 40)]),
    (26001, CAR, [(5, 40, 20, 50)]),
    (26002, CAR, [(30, 40, 45, 55)]),
    (26003, CAR, [(60, 20, 70, 30), (75, 20, 80, 30)]),  # split by an occluder: one box
    (CAR, CAR, [(5, 5, 10, 10), (20, 5, 25, 12)]),       # crowd: car group, two blobs
    (29001, CARAVAN, [(85, 50, 95, 60)]),                # instance of an ignored class
]
EXPECTED_BOXES = [[50, 10, 58, 40], [5, 40, 20, 50], [30, 40, 45, 55], [60, 20, 80, 30]]
EXPECTED_CLASSES = ["person", "car", "car", "car"]
EXPECTED_IGNORE = [[5, 5, 10, 10], [20, 5, 25, 12], [85, 50, 95, 60]]
BASELINE_FX = 200.0  # baseline * fx (m px): depths 0.78..10 m fit uint16 at 1e-3 m


def label_images() -> tuple[np.ndarray, np.ndarray]:
    """(label ids uint8, instance ids uint16) for the sim frame plus the painted instances."""
    seg = sim_frame().seg
    labels = np.full(seg.shape, VEGETATION, np.uint8)
    for sim_id, label in SIM_TO_LABEL.items():
        labels[seg == sim_id] = label
    # A strip of parking, void, sidewalk, pole, vegetation, whatever the render shows.
    for i, label in enumerate((9, 0, 8, 17, VEGETATION)):
        labels[68:, 10 * i:10 * i + 10] = label
    instances = labels.astype(np.uint16)
    for instance, label, rects in INSTANCES:
        for x1, y1, x2, y2 in rects:
            labels[y1:y2, x1:x2], instances[y1:y2, x1:x2] = label, instance
    return labels, instances


def camera(frame_k: list) -> dict:
    fx = frame_k[0]
    return {"extrinsic": {"baseline": BASELINE_FX / fx, "pitch": 0.05, "roll": 0.0, "yaw": 0.0,
                          "x": 1.7, "y": 0.1, "z": 1.2},
            "intrinsic": {"fx": fx, "fy": fx * 1.01, "u0": 48.5, "v0": 35.25}}


def disparity_png(depth: np.ndarray) -> np.ndarray:
    """Cityscapes encoding of a depth map: p = d * 256 + 1, 0 = invalid; p = 1 at one pixel."""
    p = np.zeros(depth.shape, np.float64)
    hit = depth > 0
    p[hit] = np.clip(np.round(BASELINE_FX / depth[hit] * 256 + 1), 2, 65535)
    p[-1, -1] = 1  # disparity 0: infinitely far, no depth
    return p.astype(np.uint16)


def write_cityscapes(root: Path, folder: str = "train", labels: bool = True, depth: bool = True
                     ) -> Path:
    frame = sim_frame()
    write_png(root / "leftImg8bit" / folder / CITY / f"{STEM}_leftImg8bit.png", frame.rgb)
    if labels:
        label_ids, instance_ids = label_images()
        base = root / "gtFine" / folder / CITY / STEM
        write_png(Path(f"{base}_gtFine_labelIds.png"), label_ids)
        write_png(Path(f"{base}_gtFine_instanceIds.png"), instance_ids)
    if depth:
        write_png(root / "disparity" / folder / CITY / f"{STEM}_disparity.png",
                  disparity_png(frame.depth))
        path = root / "camera" / folder / CITY / f"{STEM}_camera.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(camera(frame.camera.k)))
    return root



def sorted_rows(boxes: np.ndarray) -> list:
    return sorted(boxes.tolist())


def test_image_labels_boxes_and_ignore_regions(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    source = DataSpec.parse(f"cityscapes:{root}").open("train")
    assert len(source) == 1
    (sample,) = list(source)
    assert sample.name == STEM and sample.labelled == {"detection", "segmentation", "depth"}
    assert np.array_equal(sample.image, sim_frame().rgb)
    label_ids, _ = label_images()
    for label, train_id in TRAIN_IDS.items():
        assert (label_ids == label).any(), label
        assert (sample.semantic[label_ids == label] == train_id).all(), label
    assert sample.boxes.dtype == np.float32 and sample.classes.dtype == np.int64
    assert sample.boxes.tolist() == EXPECTED_BOXES
    assert [source.detection_classes[c] for c in sample.classes] == EXPECTED_CLASSES
    assert sorted_rows(sample.ignore_boxes) == EXPECTED_IGNORE


def test_class_lists_are_the_19_train_classes_stuff_then_things():
    classes = cityscapes.CityscapesSource.segmentation_classes
    assert len(classes) == 19 and classes[:3] == ("road", "sidewalk", "building")
    assert classes[10] == "sky" and classes[11:] == cityscapes.CityscapesSource.detection_classes
    assert cityscapes.CityscapesSource.detection_classes == (
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def test_depth_from_disparity_and_intrinsics(tmp_path):
    frame = sim_frame()
    (sample,) = load(f"cityscapes:{write_cityscapes(tmp_path / 'cs')}")
    cam = camera(frame.camera.k)
    fx, fy = cam["intrinsic"]["fx"], cam["intrinsic"]["fy"]
    assert np.allclose(sample.k, [[fx, 0, 48.5], [0, fy, 35.25], [0, 0, 1]])
    depth, truth = sample.depth, frame.depth
    assert depth.dtype == np.float32 and depth.shape == truth.shape
    assert depth[-1, -1] == 0  # p = 1: disparity 0
    assert (depth[truth == 0] == 0).all()  # p = 0: invalid
    # Where uint16 disparity resolves 1 mm (and does not saturate), depth is the sim's to 1e-3.
    fine = (truth > BASELINE_FX / 255) & (truth < 9.0)
    fine[-1, -1] = False
    assert fine.mean() > 0.3
    assert np.abs(depth[fine] - truth[fine]).max() < 1e-3
    p = disparity_png(truth).astype(np.float64)
    exact = p > 1
    assert np.allclose(depth[exact], BASELINE_FX / fx * fx / ((p[exact] - 1) / 256), rtol=1e-6)


def test_labels_or_depth_alone_are_partial_labels(tmp_path):
    (depth_only,) = load(f"cityscapes:{write_cityscapes(tmp_path / 'a', labels=False)}")
    assert depth_only.labelled == {"depth"} and depth_only.k is not None
    (labels_only,) = load(f"cityscapes:{write_cityscapes(tmp_path / 'b', depth=False)}")
    assert labels_only.labelled == {"detection", "segmentation"} and labels_only.k is None
    root = write_cityscapes(tmp_path / "c")
    shutil.rmtree(root / "disparity")  # camera files alone: K known, no depth
    (with_k,) = load(f"cityscapes:{root}")
    assert with_k.labelled == {"detection", "segmentation"} and with_k.k[0, 0] > 0


def test_disparity_needs_the_camera_files(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    shutil.rmtree(root / "camera")
    one_line_error(f"cityscapes:{root}", "disparity/train without camera/train", "expected")


def test_test_split_can_be_served_from_val(tmp_path):
    root = write_cityscapes(tmp_path / "cs", folder="val")
    assert len(load(f"cityscapes:{root}?test=val", "test")) == 1
    assert len(load(f"cityscapes:{root}", "val")) == 1
    with pytest.raises(SourceError, match="leftImg8bit/test"):
        load(f"cityscapes:{root}", "test")



def test_wrong_layout_missing_files_and_empty_split(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(f"cityscapes:{tmp_path / 'empty'}", "leftImg8bit/train", "expected")
    root = write_cityscapes(tmp_path / "cs")
    one_line_error(f"cityscapes:{root}", "leftImg8bit/val", split="val")
    (root / "camera" / "train" / CITY / f"{STEM}_camera.json").unlink()
    one_line_error(f"cityscapes:{root}", f"{STEM}_camera.json", "missing")
    (root / "gtFine" / "train" / CITY / f"{STEM}_gtFine_instanceIds.png").unlink()
    one_line_error(f"cityscapes:{root}", f"{STEM}_gtFine_instanceIds.png", "missing")
    one_line_error(f"cityscapes:{root}?split=val", "unknown option")


def test_no_labels_at_all(tmp_path):
    root = write_cityscapes(tmp_path / "cs", labels=False, depth=False)
    one_line_error(f"cityscapes:{root}", "gtFine/train", "disparity/train")


@pytest.mark.parametrize("which, value, expected", [
    ("labelIds", 40, "label id 40"),
    ("instanceIds", 7001, "instance id 7001"),   # road has no instances
    ("instanceIds", 40001, "instance id 40001"),  # label id 40 does not exist
])
def test_labels_out_of_range(tmp_path, which, value, expected):
    root = write_cityscapes(tmp_path / "cs", depth=False)
    label_ids, instance_ids = label_images()
    image = label_ids if which == "labelIds" else instance_ids
    image[0, 0] = value
    path = write_png(root / "gtFine" / "train" / CITY / f"{STEM}_gtFine_{which}.png", image)
    one_line_error(f"cityscapes:{root}", str(path), expected)


def test_bad_files(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    disparity = root / "disparity" / "train" / CITY / f"{STEM}_disparity.png"
    write_png(disparity, np.zeros((72, 96), np.uint8))
    one_line_error(f"cityscapes:{root}", str(disparity), "uint16")
    write_png(disparity, np.zeros((36, 48), np.uint16))
    one_line_error(f"cityscapes:{root}", str(disparity), "96x72")
    write_png(disparity, disparity_png(sim_frame().depth))
    cam = root / "camera" / "train" / CITY / f"{STEM}_camera.json"
    cam.write_text(json.dumps({"intrinsic": {"fx": 1.0}}))
    one_line_error(f"cityscapes:{root}", str(cam), "baseline")
    cam.write_text(json.dumps({"extrinsic": {"baseline": -0.2},
                               "intrinsic": {"fx": 1.0, "fy": 1.0, "u0": 0, "v0": 0}}))
    one_line_error(f"cityscapes:{root}", str(cam), "baseline")
    image = root / "leftImg8bit" / "train" / CITY / f"{STEM}_leftImg8bit.png"
    image.write_bytes(b"not a png")
    one_line_error(f"cityscapes:{root}", str(image), "colour image")
