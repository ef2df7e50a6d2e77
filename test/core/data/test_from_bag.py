"""`from_bag`: real rosbag2 files of a simulated RGB-D camera -> the folder format, values
checked against the renders (depth to 1 mm, K, pairing by stamp, --every, splits)."""

import json

import cv2
import numpy as np
import pytest

from mtl_split_core.bags import BagError
from mtl_split_core.data.from_bag import bag_to_folder, frame_name, pair_stamps
from mtl_split_core.errors import InputError
from support.rgbd_bag import (
    PERIOD,
    T0,
    camera_info_msg,
    compressed_msg,
    depth_16uc1,
    depth_32fc1,
    image_msg,
    rgbd_messages,
    sim_frames,
    write_bag,
)

IMAGE, DEPTH, INFO = "/camera/image_raw", "/camera/depth/image_raw", "/camera/camera_info"


@pytest.fixture(scope="module")
def frames():
    return sim_frames(10)


def _read(out):
    index = json.loads((out / "index.json").read_text())
    images = [cv2.imread(str(out / r["file_name"]), cv2.IMREAD_COLOR)[..., ::-1]
              for r in index["images"]]
    depths = [cv2.imread(str(out / r["depth_file"]), cv2.IMREAD_UNCHANGED)
              if "depth_file" in r else None for r in index["images"]]
    return index, images, depths


def _assert_depth_mm(written, metres):
    """uint16 mm, 0 where the render hit nothing, else within 0.5 mm of the truth."""
    assert written.dtype == np.uint16 and written.shape == metres.shape
    valid = metres > 0
    assert np.all(written[~valid] == 0)
    assert valid.any() and np.abs(written[valid] / 1000.0 - metres[valid]).max() <= 0.0005 + 1e-6


def test_rgb8_and_32fc1_with_camera_info(tmp_path, frames):
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames))
    report = bag_to_folder(bag, tmp_path / "out", IMAGE, DEPTH, INFO)
    index, images, depths = _read(tmp_path / "out")
    assert index["format"] == "mtl-split-folder" and index["version"] == 1
    assert index["detection_classes"] == [] and index["annotations"] == []
    assert report.frames == len(index["images"]) == len(frames) and report.with_k == 10
    for i, (record, f) in enumerate(zip(index["images"], frames)):
        t = T0 + i * PERIOD
        assert record["id"] == i
        assert record["file_name"] == f"images/{frame_name(t)}.png"
        assert record["stamp"] == {"sec": t // 10**9, "nanosec": t % 10**9}
        assert (record["width"], record["height"]) == (64, 48)
        assert record["labelled"] == ["depth"]
        assert record["k"] == pytest.approx(f.k)
        assert np.array_equal(images[i], f.rgb)
        _assert_depth_mm(depths[i], f.depth)
    assert sum((f.depth == 0).sum() for f in frames) > 0  # the invalid case was exercised
    # time split: contiguous 80/10/10 in stamp order
    assert [r["split"] for r in index["images"]] == ["train"] * 8 + ["val", "test"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "out"]  # no temp left


def test_32fc1_invalid_values_and_range_become_0(tmp_path, frames):
    f = frames[0]
    depth = depth_32fc1(f.depth)
    depth[0, :4] = [np.inf, -np.inf, -1.0, 70.0]  # too far, too close, negative, > 65.535 m
    depth[1, 0] = 0.0
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8")),
            (DEPTH, "sensor_msgs/msg/Image", T0 + 1, image_msg(T0, depth, "32FC1"))]
    bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", IMAGE, DEPTH)
    _, _, depths = _read(tmp_path / "out")
    assert list(depths[0][0, :4]) == [0, 0, 0, 0] and depths[0][1, 0] == 0
    assert depths[0][2, 5] == (round(f.depth[2, 5] * 1000) if f.depth[2, 5] > 0 else 0)


def test_16uc1_bgr8_sqlite3_bag(tmp_path, frames):
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames[:4], depth_encoding="16UC1",
                                                    image_encoding="bgr8"), storage="sqlite3")
    assert list(bag.glob("*.db3"))
    bag_to_folder(bag, tmp_path / "out", IMAGE, DEPTH, INFO)
    index, images, depths = _read(tmp_path / "out")
    assert len(index["images"]) == 4
    for i, f in enumerate(frames[:4]):
        assert np.array_equal(images[i], f.rgb)
        assert np.array_equal(depths[i], depth_16uc1(f.depth))  # millimetres kept exactly


def test_pairing_by_header_stamp_with_offset_gaps_and_extra_depth(tmp_path, frames):
    """Depth stamped 7 ms after its image, received out of order; image 3 has no depth, an
    extra depth map sits between images 5 and 6: every image gets its own depth map."""
    msgs = [m for m in rgbd_messages(frames[:8], depth_offset_ns=7_000_000)
            if not (m[0] == DEPTH and m[2] == T0 + 3 * PERIOD + 7_000_000 + 1000)]
    extra = T0 + 5 * PERIOD + PERIOD // 2
    msgs.append((DEPTH, "sensor_msgs/msg/Image", extra - 30_000_000,  # received early
                 image_msg(extra, depth_16uc1(frames[9].depth), "16UC1")))
    report = bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", IMAGE, DEPTH,
                           tolerance=0.01)
    index, images, depths = _read(tmp_path / "out")
    kept = [0, 1, 2, 4, 5, 6, 7]
    assert report.unpaired_images == 1 and report.unpaired_depths == 1
    assert [r["stamp"]["nanosec"] for r in index["images"]] == [i * PERIOD for i in kept]
    for j, i in enumerate(kept):
        assert np.array_equal(images[j], frames[i].rgb)
        _assert_depth_mm(depths[j], frames[i].depth)


def test_pair_stamps_is_mutual_nearest_within_tolerance():
    images = np.array([0, 100, 200, 300])
    depths = np.array([4, 96, 160, 390])
    pairs, nearest = pair_stamps(images, depths, tolerance_ns=10)
    assert pairs == [(0, 4), (100, 96)] and nearest == 4
    assert pair_stamps(images, depths, tolerance_ns=100)[0] == [(0, 4), (100, 96), (200, 160),
                                                                (300, 390)]
    # One depth map between two images labels only the nearer one.
    assert pair_stamps(np.array([0, 10]), np.array([6]), tolerance_ns=100)[0] == [(10, 6)]


def test_every_keeps_every_nth_pair_and_hash_split_leaves_split_out(tmp_path, frames):
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames))
    report = bag_to_folder(bag, tmp_path / "out", IMAGE, DEPTH, every=3, split_by="hash")
    index, images, _ = _read(tmp_path / "out")
    assert [r["stamp"]["nanosec"] for r in index["images"]] == [i * PERIOD for i in (0, 3, 6, 9)]
    assert all(np.array_equal(images[j], frames[i].rgb) for j, i in enumerate((0, 3, 6, 9)))
    assert report.skipped_by_every == 6
    assert all("split" not in r and "k" not in r for r in index["images"])


def test_image_only_compressed_png_and_padded_rows(tmp_path, frames):
    f = frames[0]
    msgs = [("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", T0 + i,
             compressed_msg(T0 + i * PERIOD, frames[i].rgb)) for i in range(3)]
    bag_to_folder(write_bag(tmp_path / "c", msgs), tmp_path / "out_c", "/cam/image/compressed")
    index, images, depths = _read(tmp_path / "out_c")
    assert all(r["labelled"] == [] and "depth_file" not in r for r in index["images"])
    assert all(np.array_equal(images[i], frames[i].rgb) for i in range(3))
    # Row padding (step > width * 3) and a big-endian 16-bit depth map.
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8", step_padding=5)),
            (DEPTH, "sensor_msgs/msg/Image", T0, image_msg(T0, depth_16uc1(f.depth), "16UC1",
                                                           step_padding=2, bigendian=True))]
    bag_to_folder(write_bag(tmp_path / "p", msgs), tmp_path / "out_p", IMAGE, DEPTH)
    _, images, depths = _read(tmp_path / "out_p")
    assert np.array_equal(images[0], f.rgb) and np.array_equal(depths[0], depth_16uc1(f.depth))


@pytest.mark.parametrize("encoding", ["mono8", "bgra8"])
def test_other_colour_encodings(tmp_path, frames, encoding):
    rgb = frames[0].rgb
    pixels = rgb[..., 0] if encoding == "mono8" else \
        np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, pixels, encoding))]
    bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", IMAGE)
    _, images, _ = _read(tmp_path / "out")
    want = np.repeat(rgb[..., :1], 3, axis=2) if encoding == "mono8" else rgb
    assert np.array_equal(images[0], want)


def test_depth_of_half_size_is_resized_nearest_other_aspect_is_rejected(tmp_path, frames):
    f = frames[0]
    half = depth_16uc1(f.depth)[::2, ::2]
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8")),
            (DEPTH, "sensor_msgs/msg/Image", T0, image_msg(T0, half, "16UC1"))]
    report = bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", IMAGE, DEPTH)
    _, _, depths = _read(tmp_path / "out")
    assert report.depth_resized == 1
    assert np.array_equal(depths[0], np.repeat(np.repeat(half, 2, axis=0), 2, axis=1))
    msgs[1] = (DEPTH, "sensor_msgs/msg/Image", T0, image_msg(T0, half[:, :20], "16UC1"))
    with pytest.raises(BagError, match=r"depth on /camera/depth/image_raw is 20x24 but images "
                       r"on /camera/image_raw are 64x48 \(another aspect ratio"):
        bag_to_folder(write_bag(tmp_path / "bag2", msgs), tmp_path / "new" / "out2", IMAGE,
                      DEPTH)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "bag2", "out"]


def test_a_corrupt_frame_is_skipped_and_counted(tmp_path, frames):
    msgs = [("/cam/c", "sensor_msgs/msg/CompressedImage", T0 + i,
             compressed_msg(T0 + i * PERIOD, frames[i].rgb)) for i in range(3)]
    msgs[1][3].data = msgs[1][3].data[:40]  # truncated PNG
    report = bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", "/cam/c")
    assert report.frames == 2 and report.bad_frames == 1 and "cannot decode" in report.first_bad
    assert "1 undecodable frames skipped" in report.summary()


def test_a_stop_request_leaves_nothing_behind(tmp_path, frames):
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames))
    calls = []

    def stop_after_some():
        calls.append(1)
        return len(calls) > 40  # 30 messages in the first pass, then some frames

    report = bag_to_folder(bag, tmp_path / "out", IMAGE, DEPTH, INFO,
                           should_stop=stop_after_some)
    assert report.interrupted and 0 < report.frames < 10
    assert "interrupted" in report.summary() and "nothing written" in report.summary()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_errors_name_the_bag_and_topic(tmp_path, frames):
    f = frames[0]
    bag = write_bag(tmp_path / "bag", rgbd_messages(frames[:2]))
    with pytest.raises(BagError, match=r"no topic /nope \(--image\); image topics in the bag: "
                       "/camera/depth/image_raw, /camera/image_raw"):
        bag_to_folder(bag, tmp_path / "o", "/nope")
    with pytest.raises(BagError, match=r"topic /camera/camera_info \(--image\) has type "
                       "sensor_msgs/msg/CameraInfo; expected"):
        bag_to_folder(bag, tmp_path / "o", INFO)
    with pytest.raises(BagError, match=r"no image on /camera/image_raw has a depth map on "
                       r"/camera/depth/image_raw within 0 s \(nearest offset 0.000001 s"):
        msgs = [m for m in rgbd_messages(frames[:2], depth_offset_ns=1000)]
        bag_to_folder(write_bag(tmp_path / "off", msgs), tmp_path / "o", IMAGE, DEPTH,
                      tolerance=0.0)
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.depth, "32FC1"))]
    with pytest.raises(BagError, match="/camera/image_raw: unsupported image: encoding '32FC1' "
                       "carries no colour"):
        bag_to_folder(write_bag(tmp_path / "enc", msgs), tmp_path / "o", IMAGE)
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8")),
            (DEPTH, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb[..., 0], "mono8"))]
    with pytest.raises(BagError, match="unsupported depth encoding 'mono8'"):
        bag_to_folder(write_bag(tmp_path / "denc", msgs), tmp_path / "o", IMAGE, DEPTH)
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8")),
            (INFO, "sensor_msgs/msg/CameraInfo", T0, camera_info_msg(T0, f.k, 640, 480))]
    with pytest.raises(BagError, match="camera_info on /camera/camera_info is 640x480 but "
                       "images on /camera/image_raw are 64x48"):
        bag_to_folder(write_bag(tmp_path / "info", msgs), tmp_path / "o", IMAGE,
                      camera_info_topic=INFO)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="full: exists and is not an empty folder"):
        bag_to_folder(bag, tmp_path / "full", IMAGE)
    with pytest.raises(BagError, match="no such bag"):
        bag_to_folder(tmp_path / "missing", tmp_path / "o", IMAGE)
    assert not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_depth_in_another_frame_is_written_with_a_warning(tmp_path, frames):
    f = frames[0]
    msgs = [(IMAGE, "sensor_msgs/msg/Image", T0, image_msg(T0, f.rgb, "rgb8")),
            (DEPTH, "sensor_msgs/msg/Image", T0, image_msg(T0, depth_16uc1(f.depth), "16UC1",
                                                           frame_id="depth_optical_frame"))]
    report = bag_to_folder(write_bag(tmp_path / "bag", msgs), tmp_path / "out", IMAGE, DEPTH)
    assert report.frames == 1 and report.other_frame_id == 1
    assert "WARNING 1 frames with depth or camera_info in another frame than the image " \
        "(/camera/depth/image_raw in 'depth_optical_frame' but /camera/image_raw in " \
        "'camera_optical_frame')" in report.summary()
    with pytest.raises(InputError, match="--depth /camera/image_raw: the same topic as --image"):
        bag_to_folder(tmp_path / "bag", tmp_path / "out2", IMAGE, IMAGE)


def test_what_from_bag_writes_the_folder_source_reads(tmp_path, frames):
    """The writer (this module) and the reader (data/sources/folder.py) agree on the format:
    depth-only labels, K and the time split survive the round trip."""
    from mtl_split_core.data.sources import DataSpec

    bag = write_bag(tmp_path / "bag", rgbd_messages(frames))
    bag_to_folder(bag, tmp_path / "out", IMAGE, DEPTH, INFO)
    source = DataSpec.parse(f"folder:{tmp_path / 'out'}").open("train")
    samples = list(source)
    assert len(samples) == len(source) == 8
    for sample, f in zip(samples, frames):
        assert sample.labelled == frozenset({"depth"})
        assert np.array_equal(sample.image, f.rgb)
        np.testing.assert_allclose(sample.depth, np.round(f.depth * 1000) / 1000, atol=1e-3)
        np.testing.assert_allclose(sample.k, np.asarray(f.k).reshape(3, 3))


# realsense2_camera's topic layout (namespace /camera, camera name camera) with the
# image_transport variants a recorder stores beside the raw topics.
RS = "/camera/camera"
RS_COLOR, RS_DEPTH = f"{RS}/color/image_raw", f"{RS}/aligned_depth_to_color/image_raw"
RS_INFO = f"{RS}/color/camera_info"
IMG, CIMG = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


def _compressed_depth_msg(ns, depth, codec, data=None):
    from support.depth_transport import compressed_depth_data
    from support.rgbd_bag import T, header

    fmt, payload = compressed_depth_data(depth, codec)
    return T["sensor_msgs/msg/CompressedImage"](
        header=header(ns), format=fmt, data=np.frombuffer(data or payload, np.uint8))


def _realsense_bag(path, frames, depth_codec="png", metres=False, bad_header=False):
    """Every topic of a realsense2_camera recording with compressed transports: colour raw
    and /compressed (png), aligned depth raw and /compressedDepth (``depth_codec``)."""
    msgs = []
    for i, f in enumerate(frames):
        t = T0 + i * PERIOD
        h, w = f.depth.shape
        depth = depth_32fc1(f.depth) if metres else depth_16uc1(f.depth)
        msgs += [(RS_COLOR, IMG, t, image_msg(t, f.rgb, "rgb8")),
                 (f"{RS_COLOR}/compressed", CIMG, t + 10, compressed_msg(t, f.rgb, "png")),
                 (RS_DEPTH, IMG, t + 1000, image_msg(t, depth, "32FC1" if metres else "16UC1")),
                 (f"{RS_DEPTH}/compressedDepth", CIMG, t + 1010,
                  _compressed_depth_msg(t, depth, depth_codec)),
                 (RS_INFO, "sensor_msgs/msg/CameraInfo", t + 2000, camera_info_msg(t, f.k, w,
                                                                                  h))]
        if bad_header:
            import struct
            msg = msgs[-2][3]
            msg.data = np.frombuffer(struct.pack("<iff", 3, 0, 0) + bytes(msg.data[12:]),
                                     np.uint8)
    return write_bag(path, msgs)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_realsense_compressed_transports_give_the_raw_topics_values(tmp_path, frames, codec):
    """Colour as CompressedImage and 16UC1 depth as compressedDepth (PNG or RVL, with the
    transport's ConfigHeader): the folder written is identical to the raw topics' one."""
    bag = _realsense_bag(tmp_path / "bag", frames[:4], codec)
    raw = bag_to_folder(bag, tmp_path / "raw", RS_COLOR, RS_DEPTH, RS_INFO)
    packed = bag_to_folder(bag, tmp_path / "packed", f"{RS_COLOR}/compressed",
                           f"{RS_DEPTH}/compressedDepth", RS_INFO)
    assert raw.frames == packed.frames == 4 and packed.bad_frames == 0
    index_raw, images_raw, depths_raw = _read(tmp_path / "raw")
    index, images, depths = _read(tmp_path / "packed")
    for a, b in zip(depths_raw, depths):
        assert a.dtype == np.uint16
        np.testing.assert_array_equal(a, b)
    for a, b in zip(images_raw, images):
        np.testing.assert_array_equal(a, b)
    assert [r["k"] for r in index["images"]] == [r["k"] for r in index_raw["images"]]
    for f, written in zip(frames, depths):
        _assert_depth_mm(written, f.depth)


def test_realsense_32fc1_compressed_depth_is_within_its_quantisation(tmp_path, frames):
    bag = _realsense_bag(tmp_path / "bag", frames[:2], "rvl", metres=True)
    bag_to_folder(bag, tmp_path / "raw", RS_COLOR, RS_DEPTH)
    bag_to_folder(bag, tmp_path / "packed", RS_COLOR, f"{RS_DEPTH}/compressedDepth")
    for a, b in zip(_read(tmp_path / "raw")[2], _read(tmp_path / "packed")[2]):
        near = (a > 0) & (a < 10000)  # the transport's default maximum: 10 m
        np.testing.assert_array_equal(b > 0, near)
        # Inverse depth in steps of z^2 / A (A = 10100 at the transport's defaults).
        z = a[near] / 1000.0
        assert near.any() and (np.abs(a[near].astype(int) - b[near])
                               <= 1 + 1000 * z * z / 10100).all()


def test_bags_that_never_pair_or_carry_a_bad_header_are_one_line_and_exit_2(tmp_path, frames,
                                                                         capsys):
    from mtl_split_core.cli.main import main

    far = [m for m in rgbd_messages(frames[:3], depth_offset_ns=PERIOD // 2)]
    cases = [
        (write_bag(tmp_path / "apart", far), IMAGE, DEPTH,
         "no image on /camera/image_raw has a depth map on /camera/depth/image_raw within"),
        (_realsense_bag(tmp_path / "bad", frames[:2], bad_header=True), RS_COLOR,
         f"{RS_DEPTH}/compressedDepth", "compressedDepth ConfigHeader format 3: expected 0"),
    ]
    for bag, image, depth, message in cases:
        out = tmp_path / f"out_{bag.name}"
        assert main(["dataset", "from-bag", str(bag), "--image", image, "--depth", depth,
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
