"""`mtl-split dataset from-bag / add-labels` through the dispatcher: summaries, every input
error as one line and exit 2, Ctrl-C / SIGTERM as exit 0 with nothing left behind."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from mtl_split_core.cli.main import main
from support.rgbd_bag import (
    NS,
    STORE,
    T0,
    camera_info_msg,
    image_msg,
    rgbd_messages,
    sim_frames,
    write_bag,
)

IMAGE, DEPTH, INFO = "/camera/image_raw", "/camera/depth/image_raw", "/camera/camera_info"


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """A good RGB-D bag and one bag per kind of bad input."""
    root = tmp_path_factory.mktemp("bags")
    frames = sim_frames(4)
    f = frames[0]
    img = (IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8"))
    return {
        "good": write_bag(root / "good", rgbd_messages(frames)),
        "offset": write_bag(root / "offset", rgbd_messages(frames, depth_offset_ns=50_000_000)),
        "encoding": write_bag(root / "encoding", [
            img, ("/camera/ir", "sensor_msgs/msg/Image", T0,
             image_msg(T0, f.depth.astype(np.float32), "32FC1"))]),
        "size": write_bag(root / "size", [
            img, (DEPTH, "sensor_msgs/msg/Image", T0,
                  image_msg(T0, np.zeros((48, 48), np.uint16), "16UC1"))]),
        "info": write_bag(root / "info", [
            img, (INFO, "sensor_msgs/msg/CameraInfo", T0, camera_info_msg(T0, f.k, 320, 240))]),
    }


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_from_bag_then_add_labels(bags, tmp_path, capsys):
    out = tmp_path / "data"
    code, stdout, err = _run(["dataset", "from-bag", str(bags["good"]), "--image", IMAGE,
                              "--depth", DEPTH, "--camera-info", INFO, "--every", "2",
                              "--out", str(out)], capsys)
    assert code == 0, err
    assert stdout.startswith(f"from-bag: 2 frames -> {out}; 4 images, 4 depth maps")
    assert "2 pairs skipped by --every" in stdout and "intrinsics on 2" in stdout
    index = json.loads((out / "index.json").read_text())
    assert [r["labelled"] for r in index["images"]] == [["depth"], ["depth"]]
    name = index["images"][1]["file_name"].split("/")[1]
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({
        "images": [{"id": 5, "file_name": name}], "categories": [{"id": 1, "name": "box"}],
        "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]}]}))
    code, stdout, err = _run(["dataset", "add-labels", str(out), "--coco", str(coco)], capsys)
    assert code == 0, err
    assert stdout.startswith("add-labels: 1 of 1 COCO images matched") and "box" in stdout
    index = json.loads((out / "index.json").read_text())
    assert index["detection_classes"] == ["box"]
    assert [r["labelled"] for r in index["images"]] == [["depth"], ["detection", "depth"]]


@pytest.mark.parametrize("bag, args, message", [
    ("good", ["--image", "/nope"], "{bag}: no topic /nope (--image); image topics in the bag: "
     "/camera/depth/image_raw, /camera/image_raw"),
    ("good", ["--image", INFO], "{bag}: topic /camera/camera_info (--image) has type "
     "sensor_msgs/msg/CameraInfo; expected sensor_msgs/msg/Image or "
     "sensor_msgs/msg/CompressedImage"),
    ("good", ["--image", IMAGE, "--depth", INFO], "{bag}: topic /camera/camera_info (--depth) "
     "has type sensor_msgs/msg/CameraInfo; expected sensor_msgs/msg/Image"),
    ("encoding", ["--image", "/camera/ir"], "{bag}: /camera/ir: unsupported image: encoding "
     "'32FC1' carries no colour"),
    ("offset", ["--image", IMAGE, "--depth", DEPTH], "{bag}: no image on /camera/image_raw has a "
     "depth map on /camera/depth/image_raw within 0.02 s (nearest offset 0.050000 s; raise "
     "--tolerance or check the header stamps)"),
    ("size", ["--image", IMAGE, "--depth", DEPTH], "{bag}: depth on /camera/depth/image_raw is "
     "48x48 but images on /camera/image_raw are 64x48 (another aspect ratio"),
    ("info", ["--image", IMAGE, "--camera-info", INFO], "{bag}: camera_info on "
     "/camera/camera_info is 320x240 but images on /camera/image_raw are 64x48"),
    ("missing", ["--image", IMAGE], "{bag}: no such bag"),
])
def test_from_bag_input_errors_are_one_line_and_exit_2(bags, tmp_path, capsys, bag, args,
                                                       message):
    path = bags.get(bag, tmp_path / "missing")
    out = tmp_path / "out"
    code, stdout, err = _run(["dataset", "from-bag", str(path), *args, "--out", str(out)],
                             capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("mtl-split dataset: error: "), err
    assert message.format(bag=path) in err, err
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written, no temp folder


@pytest.mark.parametrize("args, message", [
    (["from-bag", "b", "--image", IMAGE, "--every", "0", "--out", "o"],
     "argument --every: 0: expected an integer >= 1"),
    (["from-bag", "b", "--image", IMAGE, "--tolerance", "-1", "--out", "o"],
     "argument --tolerance: -1: expected a number >= 0"),
    (["from-bag", "b", "--image", IMAGE, "--split-by", "random", "--out", "o"],
     "argument --split-by: invalid choice: 'random'"),
    (["from-bag", "b", "--out", "o"], "the following arguments are required: --image"),
    (["add-labels", "d"], "the following arguments are required: --coco"),
    (["convert"], "invalid choice: 'convert'"),
    ([], "the following arguments are required: ACTION"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_add_labels_errors_are_one_line_and_exit_2(bags, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["dataset", "from-bag", str(bags["good"]), "--image", IMAGE, "--out",
                 str(out)]) == 0
    coco = tmp_path / "coco.json"
    for content, message in (
            (None, f"{coco}: no such file; expected a COCO instances JSON"),
            ("[]", f"{coco}: expected a COCO instances file"),
            (json.dumps({"images": [{"id": 1, "file_name": "x.png"}], "annotations": [],
                         "categories": []}),
             f"{coco}: none of its 1 images is in {out} (matched by file name")):
        if content is not None:
            coco.write_text(content)
        before = (out / "index.json").read_text()
        code, stdout, err = _run(["dataset", "add-labels", str(out), "--coco", str(coco)],
                                 capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, err
        assert (out / "index.json").read_text() == before
    code, _, err = _run(["dataset", "add-labels", str(tmp_path), "--coco", str(coco)], capsys)
    assert code == 2 and "index.json: no such file; expected a folder data set" in err


def _long_bag(path, frames=300, size=(320, 240)):
    """Many noisy frames (slow to encode as PNG), written fast: one message serialised once,
    its header stamp patched per copy."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    rng = np.random.default_rng(0)
    w, h = size
    rgb = image_msg(T0, rng.integers(0, 256, (h, w, 3), np.uint8), "rgb8")
    depth = image_msg(T0, rng.integers(0, 9000, (h, w), np.uint16), "16UC1")
    raws = {IMAGE: STORE.serialize_cdr(rgb, "sensor_msgs/msg/Image"),
            DEPTH: STORE.serialize_cdr(depth, "sensor_msgs/msg/Image")}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {t: writer.add_connection(t, "sensor_msgs/msg/Image", typestore=STORE)
                 for t in raws}
        for i in range(frames):
            t = T0 + i * 50_000_000
            for topic, raw in raws.items():
                data = bytearray(raw)
                struct.pack_into("<iI", data, 4, t // NS, t % NS)
                writer.write(conns[topic], t, bytes(data))
    return path


def _partial_frames_in(folder):
    """Whether from-bag writes frames into a hidden temporary folder in ``folder``."""
    return any(p.is_dir() and any((p / "images").glob("*.png"))
               for p in folder.glob(".data.partial-*"))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """from-bag on a long bag, signalled (SIGINT in one run, SIGTERM in another) once frames
    are being written into the hidden temporary folder. The two runs go at once (most of each
    is its interpreter starting), each writing next to a folder of its own; per signal: that
    folder, whether the run was still going when signalled, its exit code, stdout, stderr."""
    bag = _long_bag(tmp_path_factory.mktemp("long") / "bag")
    runs = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            root = tmp_path_factory.mktemp(sig.name)
            runs[sig] = root, subprocess.Popen(
                [sys.executable, "-m", "mtl_split_core.cli", "dataset", "from-bag", str(bag),
                 "--image", IMAGE, "--depth", DEPTH, "--out", str(root / "data")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True)
        signalled = {}
        deadline = time.monotonic() + 120
        while len(signalled) < len(runs) and time.monotonic() < deadline:
            for sig, (root, proc) in runs.items():
                if sig in signalled:
                    continue
                if proc.poll() is not None:  # ended before it could be signalled
                    signalled[sig] = False
                elif _partial_frames_in(root):
                    os.killpg(proc.pid, sig)
                    signalled[sig] = True
            time.sleep(0.01)
        results = {}
        for sig, (root, proc) in runs.items():
            if sig not in signalled:
                signalled[sig] = proc.poll() is None
                os.killpg(proc.pid, sig)  # out of time waiting for frames: signal it anyway
            stdout, stderr = proc.communicate(timeout=60)
            results[sig] = root, signalled[sig], proc.returncode, stdout, stderr
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return results


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_from_bag_with_a_summary_exit_0_and_nothing_left(interrupted, sig):
    root, running, code, stdout, stderr = interrupted[sig]
    out = root / "data"
    assert running, (code, stdout, stderr)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert stdout.startswith("from-bag: interrupted after ") and "of 300 frames; nothing " \
        f"written to {out}" in stdout, stdout
    assert [p.name for p in root.iterdir()] == []  # no output, no temporary folder
