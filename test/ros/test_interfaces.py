"""Our interface definitions round-trip through rclpy's CDR serialization; msg_to_packet
checks every field against the input bounds."""

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from mtl_split.msg import Detection2D, Detection2DArray, SplitFeatures
from mtl_split_core.runtime.packet import (
    MAX_DISTORTION_COEFFS,
    MAX_IMAGE_SIDE,
    MAX_SHAPE_DIMS,
    MAX_TEXT_BYTES,
    NANOSEC_PER_SEC,
    SEND_FPS_RANGE,
    PacketRejected,
    check_packet,
)
from mtl_split_ros.features_msg import msg_to_packet, packet_to_msg, send_fps_of

pytestmark = pytest.mark.ros


def _split_features() -> SplitFeatures:
    msg = SplitFeatures()
    msg.header.frame_id = "cam"
    msg.header.stamp.sec = 42
    msg.header.stamp.nanosec = 7
    msg.camera_info.width = 640
    msg.camera_info.height = 480
    msg.camera_info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    msg.model_id = "m"
    msg.model_fingerprint = "deadbeef"
    msg.split_index = 2
    msg.source_height = 480
    msg.source_width = 640
    msg.transform = [0.5, 0.5, 0.0, 0.0]
    msg.codec = "q4-zstd/1"
    msg.shape = array.array("I", [16, 15, 20])
    msg.scale = array.array("f", np.linspace(0.1, 1.6, 16, dtype=np.float32))
    msg.offset = array.array("f", -np.arange(16, dtype=np.float32))
    msg.data = array.array("B", bytes(range(256)) * 10)
    msg.edge_ms = 12.5
    return msg


def test_split_features_round_trip():
    msg = _split_features()
    back = deserialize_message(serialize_message(msg), SplitFeatures)
    assert back == msg
    assert back.camera_info.k[4] == 500.0
    assert np.frombuffer(back.data, np.uint8).tobytes() == bytes(range(256)) * 10


def test_detection_array_round_trip():
    arr = Detection2DArray()
    arr.header.frame_id = "cam"
    for i in range(3):
        det = Detection2D(class_id=i, class_name=f"c{i}", score=0.5 + i / 8,
                          center_x=10.0 * i, center_y=5.0, size_x=4.0, size_y=3.0, depth=2.5)
        arr.detections.append(det)
    back = deserialize_message(serialize_message(arr), Detection2DArray)
    assert back == arr
    assert [d.class_name for d in back.detections] == ["c0", "c1", "c2"]


def test_transform_is_fixed_size_float32():
    msg = SplitFeatures()
    assert msg.transform.dtype == np.float32 and msg.transform.shape == (4,)


def test_msg_to_packet_keeps_every_field():
    msg = _split_features()
    packet = msg_to_packet(msg)
    assert packet.transform == (0.5, 0.5, 0.0, 0.0) and packet.source_size == (640, 480)
    assert packet.tensor.shape == (16, 15, 20) and packet.edge_ms == 12.5
    assert packet_to_msg(packet, msg.header, msg.camera_info) == msg


def test_send_fps_is_carried_clipped_to_its_bound_and_unknown_as_zero():
    packet = msg_to_packet(_split_features())
    assert send_fps_of(packet_to_msg(packet, send_fps=29.97)) == pytest.approx(29.97)
    assert send_fps_of(packet_to_msg(packet, send_fps=1e9)) == SEND_FPS_RANGE[1]
    assert send_fps_of(packet_to_msg(packet, send_fps=float("nan"))) == 0.0
    assert send_fps_of(packet_to_msg(packet)) == 0.0


def test_features_recorded_before_send_fps_still_read(tmp_path):
    """A bag recorded with the message as it was before ``send_fps`` (definition embedded,
    as ros2 bag record writes it) reads through the core's bag reader, and its features
    convert with send_fps 0 (unknown)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from mtl_split_core.bags import messages, msg_definition_dirs, open_bag, typestore

    text = (msg_definition_dirs()[0] / "SplitFeatures.msg").read_text()
    old_text = "\n".join(line for line in text.splitlines() if "send_fps" not in line)
    assert old_text != text and "float32 send_fps" not in old_text
    name = "mtl_split/msg/SplitFeatures"
    now = typestore()  # the current definition, as the core reads and writes bags
    current = now.deserialize_cdr(serialize_message(_split_features()), name)
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(old_text, name))
    cls = store.types[name]
    assert "send_fps" not in cls.__dataclass_fields__
    old = cls(**{f: getattr(current, f) for f in cls.__dataclass_fields__})
    bag = tmp_path / "old_bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/r1/mtl_split/features", name, typestore=store)
        writer.write(conn, 42, store.serialize_cdr(old, name))
    with open_bag(bag) as reader:
        (conn, _, raw), = list(messages(reader, bag))
        msg = reader.deserialize(raw, conn.msgtype)
    assert not hasattr(msg, "send_fps")
    packet = msg_to_packet(msg)
    assert send_fps_of(msg) == 0.0 and packet.edge_ms == 12.5 and packet.source_size == (640, 480)


def _with(path: str, value):
    msg = _split_features()
    *parents, name = path.split(".")
    target = msg
    for p in parents:
        target = getattr(target, p)
    setattr(target, name, value)
    return msg


@pytest.mark.parametrize("path, inside, outside, reason", [
    ("header.frame_id", "c" * MAX_TEXT_BYTES, "c" * (MAX_TEXT_BYTES + 1), "frame_id"),
    ("header.stamp.nanosec", NANOSEC_PER_SEC - 1, NANOSEC_PER_SEC, "stamp"),
    ("camera_info.header.frame_id", "c" * MAX_TEXT_BYTES, "c" * (MAX_TEXT_BYTES + 1),
     "camera_info"),
    ("camera_info.distortion_model", "plumb_bob", "d" * (MAX_TEXT_BYTES + 1), "camera_info"),
    ("camera_info.width", MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, "camera_info"),
    ("camera_info.binning_x", MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, "camera_info"),
    ("camera_info.roi.height", MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, "camera_info"),
    ("camera_info.d", [0.0] * MAX_DISTORTION_COEFFS, [0.0] * (MAX_DISTORTION_COEFFS + 1),
     "camera_info"),
    ("camera_info.k", [0.0] * 9, [500.0, 0, 320, 0, float("nan"), 240, 0, 0, 1],
     "camera_info"),
    ("camera_info.p", [0.0] * 12, [float("inf")] + [0.0] * 11, "camera_info"),
    ("model_id", "m" * MAX_TEXT_BYTES, "m" * (MAX_TEXT_BYTES + 1), "model_id"),
    ("source_width", MAX_IMAGE_SIDE, MAX_IMAGE_SIDE + 1, "source_size"),
    ("source_height", 1, 0, "source_size"),
    ("transform", [0.5, 0.5, 1e30, 0.0], [0.5, 0.5, float("inf"), 0.0], "transform"),
    ("edge_ms", 0.0, -1.0, "edge_ms"),
    ("send_fps", 1000.0, 1000.5, "send_fps"),
    ("send_fps", 0.0, float("nan"), "send_fps"),
    ("shape", array.array("I", [1] * MAX_SHAPE_DIMS), array.array("I", [1] * (MAX_SHAPE_DIMS + 1)),
     "shape"),
])
def test_msg_to_packet_and_the_packet_check_cover_every_bound(path, inside, outside, reason):
    """msg_to_packet checks the message-only fields, check_packet (ServerRunner.admit's first
    step) the packet's own: together every field of the message."""
    check_packet(msg_to_packet(_with(path, inside)))
    with pytest.raises(PacketRejected) as info:
        check_packet(msg_to_packet(_with(path, outside)))
    assert info.value.reason == reason and "expected" in str(info.value), str(info.value)
