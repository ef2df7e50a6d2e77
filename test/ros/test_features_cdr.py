"""features_cdr: the envelope and the whole message read from the serialized bytes are what
rclpy deserializes, for fields of every alignment; truncated, corrupted and out-of-bounds bytes
are refused with PacketRejected, never another error."""

import array
import dataclasses

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from mtl_split.msg import SplitFeatures
from mtl_split_core.auth import KeyRing, Signer, Verifier
from mtl_split_core.runtime.packet import MAX_TEXT_BYTES, PacketRejected
from mtl_split_ros import features_auth
from mtl_split_ros.features_cdr import Envelope, read_envelope, read_features
from mtl_split_ros.features_msg import msg_to_packet, packet_of_serialized


def _msg(frame_id="cam", distortion=5, codec="q4-zstd/1", data=37, shape=3, probe=False,
         send_fps=30.0, split_index=2, cam_frame="optical", model_id="m", key_id="k1",
         tag=32) -> SplitFeatures:
    msg = SplitFeatures()
    msg.header = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789), frame_id=frame_id)
    msg.camera_info = CameraInfo(
        header=Header(frame_id=cam_frame), width=640, height=480,
        distortion_model="plumb_bob", d=[0.1] * distortion,
        k=[500.0, 0, 320, 0, 500.0, 240, 0, 0, 1])
    msg.model_id, msg.model_fingerprint = model_id, "0123456789abcdef"
    msg.split_index, msg.source_width, msg.source_height = split_index, 640, 480
    msg.transform = np.array([0.5, 0.5, 0.0, 0.0], np.float32)
    msg.codec = codec
    msg.shape = array.array("I", range(1, shape + 1))
    msg.scale = array.array("f", [1.0] * 3)
    msg.offset = array.array("f", [0.5] * 5)
    msg.data = array.array("B", bytes(range(data % 256)) * (data // 256 + 1))[:data]
    msg.edge_ms, msg.probe, msg.send_fps = 4.5, probe, send_fps
    msg.camera_info.binning_x, msg.camera_info.roi.width = 2, 17
    msg.camera_info.roi.do_rectify = True
    msg.auth_key_id, msg.auth_sequence = key_id, 2**63 + 9
    msg.auth_tag = array.array("B", b"\x01" * tag)
    return msg


@pytest.mark.parametrize("kwargs", [
    {}, {"frame_id": ""}, {"frame_id": "a"}, {"frame_id": "abc", "distortion": 0},
    {"cam_frame": "xy", "distortion": 14, "model_id": "long model name"},
    {"codec": "t30-s20-q4-zstd/1", "data": 0, "shape": 0, "probe": True},
    {"data": 70_001, "split_index": 255, "send_fps": 0.0, "frame_id": "r7_camera"},
])
def test_the_envelope_is_the_deserialized_message(kwargs):
    msg = _msg(**kwargs)
    got = read_envelope(serialize_message(msg))
    assert got == Envelope(msg.header.stamp.sec, msg.header.stamp.nanosec,
                           msg.header.frame_id, msg.split_index, msg.codec, len(msg.data),
                           msg.probe, pytest.approx(msg.send_fps))


def _fields(value, path=""):
    """(path, value) of every leaf field of a message (rclpy's or read_features'), arrays as
    lists of Python numbers."""
    names = getattr(value, "get_fields_and_field_types", None)
    names = list(names()) if names else [n for n in getattr(value, "_fields", None) or ()
                                         if n != "camera_info_cdr"] or None
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
    if names is None:
        return [(path, np.asarray(value).tolist() if not isinstance(value, str) else value)]
    return [leaf for name in names for leaf in _fields(getattr(value, name), f"{path}.{name}")]


WHOLE_CASES = [
    {}, {"frame_id": "", "key_id": "", "tag": 0}, {"frame_id": "a", "key_id": "abc", "tag": 1},
    {"frame_id": "abc", "distortion": 0}, {"frame_id": "é🤖"},
    {"cam_frame": "xy", "distortion": 14, "model_id": "long model name"},
    {"codec": "t30-s20-q4-zstd/1", "data": 0, "shape": 0, "probe": True},
    {"data": 70_001, "split_index": 255, "send_fps": 0.0, "frame_id": "r7_camera"},
]


@pytest.mark.parametrize("kwargs", WHOLE_CASES)
def test_the_whole_message_is_the_deserialized_message(kwargs):
    raw = serialize_message(_msg(**kwargs))
    got, expected = _fields(read_features(raw)), _fields(deserialize_message(raw, SplitFeatures))
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (path, value), (_, want) in zip(got, expected):
        assert value == want and type(value) is type(want), path
    got, expected = (msg_to_packet(m) for m in (read_features(raw),
                                                 deserialize_message(raw, SplitFeatures)))
    assert _fields(got.tensor) == _fields(expected.tensor)
    assert dataclasses.replace(got, tensor=None) == dataclasses.replace(expected, tensor=None)


def test_the_signature_checks_the_read_message_as_the_deserialized_one():
    ring = KeyRing({"k": b"s" * 32})
    msg = _msg()
    features_auth.sign(msg, Signer(ring))
    raw = serialize_message(msg)
    assert features_auth.signed_bytes(read_features(raw)) == features_auth.signed_bytes(msg)
    features_auth.verify(read_features(raw), Verifier(ring, max_age_s=0.0), "t", 0)


def test_a_camera_info_checked_once_is_remembered_by_its_bytes_only():
    """A robot's camera_info is checked once (its stamp may change); one that differs in any
    checked byte is checked again: a bad one is refused every time."""
    good = _msg()
    packet_of_serialized(serialize_message(good))
    good.camera_info.header.stamp.sec = 77  # not a checked field: the same camera
    packet_of_serialized(serialize_message(good))
    for field, value in (("k", [500.0, 0, 320, 0, float("nan"), 240, 0, 0, 1]),
                         ("width", 16385), ("distortion_model", "d" * (MAX_TEXT_BYTES + 1))):
        bad = _msg()
        setattr(bad.camera_info, field, value)
        for _ in range(2):
            with pytest.raises(PacketRejected) as err:
                packet_of_serialized(serialize_message(bad))
            assert err.value.reason == "camera_info"
    # The same camera_info bytes at another alignment (a longer frame_id) mean other values.
    a, b = (read_features(serialize_message(_msg(frame_id=f))) for f in ("cam", "cam1"))
    assert a.camera_info_cdr[0] != b.camera_info_cdr[0]


@pytest.mark.parametrize("read", [read_envelope, read_features])
def test_every_truncation_is_refused_with_packet_rejected(read):
    raw = serialize_message(_msg(data=11))
    for end in range(len(raw)):
        try:
            read(raw[:end])
        except PacketRejected as err:
            assert err.reason == "cdr"
        else:  # only the auth fields after send_fps may be cut without the envelope noticing
            assert read is read_envelope and end >= len(raw) - 4 - 8 - 4 - 32 - 3 - 4, end


def test_corrupted_bytes_are_refused_or_read_never_raise_another_error():
    """What read_features reads of them, rclpy deserializes alike. It refuses more (text that
    is not UTF-8 or not terminated, which rclpy lets through), and rclpy a few it reads (e.g.
    the encapsulation's option bytes): every field is still checked by msg_to_packet."""
    rng = np.random.default_rng(0)
    raw = bytearray(serialize_message(_msg()))
    for _ in range(3000):
        bad = bytearray(raw)
        for at in rng.integers(0, len(bad), int(rng.integers(1, 4))):
            bad[at] = int(rng.integers(0, 256))
        try:
            read_envelope(bytes(bad))
        except PacketRejected:
            pass
        try:
            got = read_features(bytes(bad))
        except PacketRejected:
            continue
        try:
            expected = deserialize_message(bytes(bad), SplitFeatures)
        except Exception:  # noqa: BLE001 - rclpy raises several types for bad bytes
            continue
        for (path, value), (_, want) in zip(_fields(got), _fields(expected)):
            assert value == want or (value != value and want != want), path  # NaN: NaN


def test_fields_out_of_bounds_are_refused():
    with pytest.raises(PacketRejected, match="big|little"):
        read_envelope(b"\x00\x00\x00\x00" + serialize_message(_msg())[4:])
    with pytest.raises(PacketRejected) as err:
        read_envelope(serialize_message(_msg(send_fps=5000.0)))
    assert err.value.reason == "send_fps"
    with pytest.raises(PacketRejected, match="at most") as err:
        read_envelope(serialize_message(_msg(frame_id="x" * (MAX_TEXT_BYTES + 1))))
    assert err.value.reason == "frame_id"  # the reason the deserialized checks give it
    with pytest.raises(PacketRejected) as err:
        read_envelope(serialize_message(_msg(codec="c" * (MAX_TEXT_BYTES + 1))))
    assert err.value.reason == "codec"
    raw = bytearray(serialize_message(_msg()))
    raw[8:12] = (2_000_000_000).to_bytes(4, "little")  # nanosec beyond a second
    with pytest.raises(PacketRejected) as err:
        read_envelope(bytes(raw))
    assert err.value.reason == "stamp"
    # A sequence length far beyond the bytes left (data's count field).
    msg = _msg(data=8)
    raw = bytearray(serialize_message(msg))
    at = raw.index(bytes(range(8))) - 4
    raw[at:at + 4] = (2**31).to_bytes(4, "little")
    with pytest.raises(PacketRejected, match="data"):
        read_envelope(bytes(raw))
