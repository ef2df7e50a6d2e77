"""`mtl-split process` over bags written by the rosbags writer (MCAP and sqlite3)."""

import json
import shutil

import numpy as np
import pytest

from bag_factory import T, compressed, header, image, write_bag
from mtl_split_core.bags import BagError, open_bag
from mtl_split_core.geometry import median_depth_in_box, scale_boxes
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_ros.image_msg import image_to_array
from mtl_split_ros.outputs import DEFAULT_OUTPUT_TYPES, detection_arrays
from mtl_split_tools.process import output_prefixes, process_bag

IMG, CIMG = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small",
                                                   input_size=(64, 48),
                                                   bottlenecks={"s16": 4})).eval())
    return str(path)


def _run(bag, tmp_path, model):
    return process_bag(bag, tmp_path / "out", model=model, device="cpu", progress=False)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_every_encoding_and_unrelated_topics(tmp_path, tiny_model, storage):
    topics = {f"/cam_{e}/image": (IMG, [image(i, e) for i in range(2)])
              for e in ("rgb8", "bgr8", "mono8", "bgra8")}
    topics["/cam_jpeg/image/compressed"] = (CIMG, [compressed(i, "jpeg") for i in range(2)])
    topics["/cam_png/image/compressed"] = (CIMG, [compressed(i, "png") for i in range(2)])
    topics["/chatter"] = ("std_msgs/msg/String", [T["std_msgs/msg/String"](data="hi")] * 3)
    bag = write_bag(tmp_path / "in", topics, storage)
    summary = _run(bag, tmp_path, tiny_model)
    assert summary["frames"] == 12 and summary["skipped"] == 0
    assert len(summary["outputs"]) == 6 and "/chatter" not in summary["image_topics"]
    # The output bag is a real rosbag2 that rosbags reads back, stamps equal to the inputs.
    with open_bag(tmp_path / "out" / "outputs") as reader:
        topics_out = {c.topic: c for c in reader.connections}
        assert "/cam_rgb8/mtl_split/detections" in topics_out
        assert topics_out["/cam_rgb8/mtl_split/depth"].msgtype == IMG
        stamps = []
        for conn, _, raw in reader.messages([topics_out["/cam_rgb8/mtl_split/depth"]]):
            msg = reader.deserialize(raw, conn.msgtype)
            stamps.append(msg.header.stamp.sec)
            assert msg.encoding == "32FC1" and (msg.width, msg.height) == (64, 48)
            assert np.isfinite(np.frombuffer(msg.data.tobytes(), np.float32)).all()
    assert stamps == [100, 101]
    pngs = list((tmp_path / "out" / "annotated").rglob("*.png"))
    assert len(pngs) == 12
    # Numbered per topic, from 000000.
    for folder in (tmp_path / "out" / "annotated").iterdir():
        assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["frames"] == 12


def test_bad_frames_are_skipped_and_counted(tmp_path, tiny_model):
    bad = image(0)
    bad.encoding = "32FC1"
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [bad, image(1)])})
    summary = _run(bag, tmp_path, tiny_model)
    assert summary["frames"] == 1 and summary["skipped"] == 1
    assert any("32FC1' carries no colour" in k for k in summary["skip_reasons"])


def test_bag_without_images_or_empty(tmp_path, tiny_model):
    bag = write_bag(tmp_path / "in", {"/chatter": ("std_msgs/msg/String",
                                                   [T["std_msgs/msg/String"](data="x")])})
    with pytest.raises(BagError, match="no sensor_msgs/Image"):
        _run(bag, tmp_path, tiny_model)
    empty = write_bag(tmp_path / "empty", {"/cam/image": (IMG, [])})
    assert _run(empty, tmp_path / "e", tiny_model)["frames"] == 0


def test_corrupt_and_missing_bags_name_the_file(tmp_path, tiny_model):
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(i) for i in range(3)])})
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=str(tmp_path / "in")):
        _run(bag, tmp_path, tiny_model)
    with pytest.raises(BagError, match="no such bag"):
        _run(tmp_path / "nothing", tmp_path, tiny_model)
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


@pytest.mark.slow
def test_shipped_sample_bag_with_the_default_model(tmp_path):
    from pathlib import Path
    sample = Path(__file__).resolve().parents[2] / "samples" / "sim_camera"
    summary = process_bag(sample, tmp_path / "out", device="cpu", progress=False)
    assert summary["frames"] == 24 and summary["skipped"] == 0
    assert summary["feature_bytes_mean"] < 0.25 * summary["jpeg_q90_bytes_mean"]


def _camera_info(i, fy):
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(i), height=60, width=80, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([fy, 0, 40, 0, fy, 30, 0, 0, 1], float), r=np.eye(3).ravel(),
        p=np.array([fy, 0, 40, 0, 0, fy, 30, 0, 0, 0, 1, 0], float), binning_x=0, binning_y=0,
        roi=roi)


def _read(path, topic):
    with open_bag(path) as reader:
        conn = next(c for c in reader.connections if c.topic == topic)
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages([conn])]


@pytest.fixture(scope="module")
def focal_model(tmp_path_factory):
    model = tmp_path_factory.mktemp("m") / "focal"
    save_model(model, MultiTaskSplitNet(ModelConfig(
        backbone="mobilenetv3_small", input_size=(64, 48), bottlenecks={"s16": 4},
        codec="f16-zstd/1", depth_reference_focal=100.0)).eval())
    return str(model)


def test_depth_follows_the_bags_camera_info_focal_length(tmp_path, focal_model):
    frames = [image(i) for i in range(3)]
    # The camera_info of each frame is recorded just after its image, with the same stamp:
    # the first image must still get it (it is held until the camera_info arrives).
    with_info = write_bag(tmp_path / "with", {
        "/cam/image": (IMG, frames),
        "/cam/camera_info": ("sensor_msgs/msg/CameraInfo",
                             [_camera_info(i, 200.0) for i in range(3)])})
    without = write_bag(tmp_path / "without", {"/cam/image": (IMG, frames)})
    for bag, out in ((with_info, "out_with"), (without, "out_without")):
        process_bag(bag, tmp_path / out, model=focal_model, device="cpu", progress=False)
    a = _read(tmp_path / "out_with" / "outputs", "/cam/mtl_split/depth")
    b = _read(tmp_path / "out_without" / "outputs", "/cam/mtl_split/depth")
    assert len(a) == len(b) == 3
    # fy 200 px at 80x60 is 160 px in the 64x48 network input: 1.6x the reference focal.
    for da, db in zip(a, b):
        np.testing.assert_allclose(image_to_array(da), image_to_array(db) * 1.6, rtol=1e-4)
    info = _read(tmp_path / "out_with" / "outputs", "/cam/mtl_split/camera_info")[0]
    assert info.k[4] == pytest.approx(200.0 * 48 / 60)


def test_detection_depth_is_the_median_predicted_depth_in_the_box(tmp_path, focal_model):
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(i) for i in range(2)])})
    process_bag(bag, tmp_path / "out", model=focal_model, device="cpu", progress=False,
                score_threshold=0.0)
    dets = _read(tmp_path / "out" / "outputs", "/cam/mtl_split/detections")
    dets_3d = _read(tmp_path / "out" / "outputs", "/cam/mtl_split/detections_3d")
    depths = _read(tmp_path / "out" / "outputs", "/cam/mtl_split/depth")
    checked = 0
    for det, det_3d, dmsg in zip(dets, dets_3d, depths):
        depth = image_to_array(dmsg)
        boxes, _, _ = detection_arrays(det)
        scale = (depth.shape[1] / 80, depth.shape[0] / 60)  # source 80x60 -> depth map
        # Every box has a depth here, so each has its 3D box, centred at that depth.
        assert len(det_3d.detections) == len(boxes)
        for box, d in zip(scale_boxes(boxes, scale), det_3d.detections):
            z = d.bbox.center.position.z
            assert z == pytest.approx(median_depth_in_box(depth, box), rel=1e-5) and z > 0
            checked += 1
    assert checked > 0


def test_output_layout_is_one_rosbag2_folder_with_every_output_topic(tmp_path, tiny_model):
    bag = write_bag(tmp_path / "in", {"/cam/image_raw": (IMG, [image(0)])})
    summary = _run(bag, tmp_path, tiny_model)
    out = tmp_path / "out" / "outputs"
    assert summary["output_bag"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["metadata.yaml", "outputs.mcap"]
    assert not list(tmp_path.rglob("*.mcap.mcap"))
    with open_bag(out) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    assert topics == {f"/cam/mtl_split/{s}": t for s, t in DEFAULT_OUTPUT_TYPES.items()}


def test_output_topics_follow_the_live_namespace_rule(tmp_path, tiny_model):
    assert output_prefixes(["/cam/image_raw/compressed"]) == {
        "/cam/image_raw/compressed": "/cam/mtl_split/"}
    assert output_prefixes(["/image"]) == {"/image": "/mtl_split/"}
    # Two cameras in one namespace never share outputs.
    assert output_prefixes(["/cam/left", "/cam/right"]) == {
        "/cam/left": "/cam/mtl_split/", "/cam/right": "/cam/right/mtl_split/"}
    bag = write_bag(tmp_path / "in", {"/robot/cam/image/compressed": (CIMG, [compressed(0)])})
    summary = _run(bag, tmp_path, tiny_model)
    assert summary["outputs"] == ["/robot/cam/mtl_split/"]


def test_images_whose_camera_info_never_comes_are_still_processed(tmp_path, tiny_model):
    other = [_camera_info(i, 200.0) for i in range(20)]
    for info in other:
        info.header.frame_id = "another_camera"
    bag = write_bag(tmp_path / "in", {
        "/cam/image": (IMG, [image(i) for i in range(20)]),
        "/cam2/camera_info": ("sensor_msgs/msg/CameraInfo", other)})
    summary = _run(bag, tmp_path, tiny_model)
    assert summary["frames"] == 20
    stamps = [m.header.stamp.sec for m in _read(tmp_path / "out" / "outputs",
                                                 "/cam/mtl_split/depth")]
    assert stamps == list(range(100, 120))  # held, but in order and none lost


CLI = "from mtl_split_tools.cli import main; import sys; sys.exit(main())"


def _cli(*args, timeout=180):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", CLI, "process", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("bad", [
    ["--device", "cuda"],            # this machine has no CUDA (skipped where it has)
    ["--codec", "foo"],
    ["--precision", "fp8"],
    ["--model", "/no/such/model"],
    ["--score-threshold", "2"],
])
def test_bad_arguments_are_one_line_exit_2_and_leave_no_output_folder(tmp_path, tiny_model,
                                                                      bad, capsys):
    # In this process: the dispatcher's path is the installed command's (the next test runs
    # that one as a process), without a fresh interpreter's torch import per case.
    from mtl_split_tools.cli import main
    if bad[:2] == ["--device", "cuda"]:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(0)])})
    out = tmp_path / "new" / "out"
    model = [] if "--model" in bad else ["--model", tiny_model]
    assert main(["process", str(bag), "--out", str(out), *model, *bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mtl-split process: error:"), err
    assert not (tmp_path / "new").exists()


def test_the_installed_command_answers_a_bad_argument_in_one_line_without_traceback(
        tmp_path, tiny_model):
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(0)])})
    r = _cli(bag, "--out", tmp_path / "new" / "out", "--model", tiny_model, "--codec", "foo")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("mtl-split process: error:")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_unusable_bag_or_out_folder_is_one_line_exit_2(tmp_path, tiny_model):
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(0)])})
    (tmp_path / "file").write_text("x")
    taken = tmp_path / "taken"
    (taken / "annotated").mkdir(parents=True)
    cases = [(tmp_path / "missing", tmp_path / "o1", "no such bag"),
             (bag, tmp_path / "file" / "sub", "cannot write there"),
             (bag, tmp_path / "file", "not a folder"),
             (bag, taken, "already holds annotated")]
    for in_bag, out, reason in cases:
        r = _cli(in_bag, "--out", out, "--model", tiny_model, "--device", "cpu")
        assert r.returncode == 2 and reason in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o1").exists()
    assert [p.name for p in taken.iterdir()] == ["annotated"]  # what existed stays


def test_a_run_that_fails_midway_removes_what_it_created_and_nothing_else(tmp_path,
                                                                         tiny_model):
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(i) for i in range(40)])})
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())  # the index stays intact: opening works, reading fails
    data[len(data) // 4: len(data) * 3 // 4] = b"\xff" * (len(data) * 3 // 4 - len(data) // 4)
    mcap.write_bytes(bytes(data))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out, left in ((tmp_path / "a" / "b", None), (existing, ["notes.txt"])):
        with pytest.raises(BagError, match="reading messages failed"):
            process_bag(bag, out, model=tiny_model, device="cpu", progress=False)
        if left is None:
            assert not (tmp_path / "a").exists()
        else:
            assert sorted(p.name for p in out.iterdir()) == left


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_stops_with_a_complete_bag_and_a_summary(tmp_path, tiny_model, sig):
    """Stopped midway: exit 0, the summary, and a closed bag with every processed frame."""
    import signal
    import time

    from support.procs import python_process
    from support.ros_nodes import assert_clean_exit, signal_and_wait
    bag = write_bag(tmp_path / "in", {"/cam/image": (IMG, [image(i) for i in range(2000)])})
    out = tmp_path / "out"
    args = ["-c", CLI, "process", str(bag), "--out", str(out), "--model", tiny_model,
            "--device", "cpu"]
    with python_process(args) as proc:
        deadline = time.monotonic() + 120
        while len(list(out.glob("annotated/*/*.png"))) < 5:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        code, log = signal_and_wait(proc, getattr(signal, sig))
    assert_clean_exit(code, log, getattr(signal, sig))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and 5 <= summary["frames"] < 2000, summary
    assert f"interrupted after {summary['frames']} frames" in log
    stamps = [m.header.stamp.sec for m in _read(out / "outputs", "/cam/mtl_split/detections")]
    assert stamps == list(range(100, 100 + summary["frames"]))
    assert len(list(out.glob("annotated/*/*.png"))) == summary["frames"]
