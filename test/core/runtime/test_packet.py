"""Input bounds of a FeaturePacket: each bound just inside passes, just outside is rejected with
its reason (docs/CONTRACTS.md, "Input bounds")."""

import dataclasses
import math

import numpy as np
import pytest

from mtl_split_core.codec import EncodedTensor
from mtl_split_core.runtime.packet import (
    EDGE_MS_RANGE,
    FOCAL_PX_RANGE,
    MAX_CAMERA_VALUE,
    MAX_DISTORTION_COEFFS,
    MAX_IMAGE_SIDE,
    MAX_TEXT_BYTES,
    NANOSEC_PER_SEC,
    TRANSFORM_SCALE_RANGE,
    FeaturePacket,
    PacketRejected,
    check_camera_info,
    check_packet,
    check_stamp,
    check_text,
    content_box,
)

INPUT = (128, 96)
K = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]


def _packet(**changes) -> FeaturePacket:
    """A packet as the edge sends it for a 640x480 source into a 128x96 input."""
    tensor = EncodedTensor("q8-zstd/1", (8, 6, 8), np.zeros(8, np.float32),
                           np.zeros(8, np.float32), b"")
    codec = changes.pop("codec", None)
    if codec is not None:
        tensor = dataclasses.replace(tensor, codec=codec)
    base = FeaturePacket(tensor=tensor, model_id="tiny", model_fingerprint="abc123",
                         split_index=2, source_size=(640, 480), transform=(0.2, 0.2, 0.0, 0.0),
                         edge_ms=12.5)
    return dataclasses.replace(base, **changes)


def _rejected(reason: str, call, *args, **kwargs) -> str:
    with pytest.raises(PacketRejected) as info:
        call(*args, **kwargs)
    assert info.value.reason == reason, (info.value.reason, str(info.value))
    assert "expected" in str(info.value), str(info.value)
    return str(info.value)


def test_a_packet_from_the_edge_passes():
    check_packet(_packet())
    assert content_box(_packet(), INPUT) == (0, 0, 128, 96)


# ------------------------------------------------------------------------------- strings
@pytest.mark.parametrize("field, reason", [("model_id", "model_id"),
                                           ("model_fingerprint", "fingerprint"),
                                           ("codec", "codec")])
def test_strings_up_to_the_byte_limit(field, reason):
    check_packet(_packet(**{field: "x" * MAX_TEXT_BYTES}))
    message = _rejected(reason, check_packet, _packet(**{field: "x" * (MAX_TEXT_BYTES + 1)}))
    assert f"{MAX_TEXT_BYTES + 1} bytes" in message and len(message) < 200


def test_the_string_limit_counts_utf8_bytes():
    check_text("frame_id", "header.frame_id", "é" * (MAX_TEXT_BYTES // 2))
    _rejected("frame_id", check_text, "frame_id", "header.frame_id",
              "é" * (MAX_TEXT_BYTES // 2) + "x")
    _rejected("frame_id", check_text, "frame_id", "header.frame_id", b"cam")


# ------------------------------------------------------------------------------- source size
@pytest.mark.parametrize("size", [(1, 1), (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)])
def test_source_size_inside(size):
    check_packet(_packet(source_size=size))


@pytest.mark.parametrize("size", [(0, 480), (640, 0), (MAX_IMAGE_SIDE + 1, 480),
                                  (640, MAX_IMAGE_SIDE + 1), (4294967295, 480), (-1, 480)])
def test_source_size_outside(size):
    _rejected("source_size", check_packet, _packet(source_size=size))


# ------------------------------------------------------------------------------- transform
def test_transform_scales_at_their_limits_pass():
    lo, hi = TRANSFORM_SCALE_RANGE
    check_packet(_packet(transform=(lo, hi, 0.0, 0.0)))
    check_packet(_packet(transform=(hi, lo, 0.0, 0.0)))


@pytest.mark.parametrize("transform", [
    (TRANSFORM_SCALE_RANGE[0] * 0.999, 0.2, 0.0, 0.0),
    (0.2, TRANSFORM_SCALE_RANGE[1] * 1.001, 0.0, 0.0),
    (0.0, 0.2, 0.0, 0.0), (-0.2, 0.2, 0.0, 0.0), (1e30, 1e30, 0.0, 0.0),
    (math.nan, 0.2, 0.0, 0.0), (0.2, 0.2, math.inf, 0.0), (0.2, 0.2, 0.0, -math.inf),
    (0.2, 0.2, 0.0), (0.2, 0.2, 0.0, 0.0, 0.0), (), ("0.2", 0.2, 0.0, 0.0),
])
def test_transform_outside(transform):
    _rejected("transform", check_packet, _packet(transform=transform))


@pytest.mark.parametrize("offset", [(1000.0, 1000.0), (1e30, 1e30), (-1e6, -1e6),
                                    (128.0, 0.0), (0.0, 96.0), (-128.0, 0.0), (0.0, -96.0)])
def test_a_source_rectangle_outside_the_network_input_is_rejected(offset):
    packet = _packet(transform=(0.2, 0.2, *offset))
    check_packet(packet)  # finite, positive scales: only the input size tells
    message = _rejected("transform", content_box, packet, INPUT)
    assert "outside the 128x96 network input" in message


@pytest.mark.parametrize("offset, box", [
    ((127.4, 0.0), (127, 0, 128, 96)),    # one column left inside on the right
    ((0.0, 95.4), (0, 95, 128, 96)),      # one row at the bottom
    ((-127.4, 0.0), (0, 0, 1, 96)),       # one column on the left
    ((10.0, 12.0), (10, 12, 128, 96)),    # a letterbox pad: the usual case
])
def test_a_source_rectangle_overlapping_the_input_is_clipped_to_it(offset, box):
    assert content_box(_packet(transform=(0.2, 0.2, *offset)), INPUT) == box


def test_the_content_box_of_a_letterbox_is_its_resized_image():
    from mtl_split_core.preprocess import letterbox_params
    for source in [(640, 480), (1920, 1080), (480, 640), (1, 1), (MAX_IMAGE_SIDE, 3)]:
        transform, (rw, rh) = letterbox_params(source, INPUT)
        packet = _packet(source_size=source, transform=transform)
        check_packet(packet)
        x0, y0 = int(transform[2]), int(transform[3])
        assert content_box(packet, INPUT) == (x0, y0, x0 + rw, y0 + rh)


# ------------------------------------------------------------------------------- edge_ms
@pytest.mark.parametrize("value", [0.0, EDGE_MS_RANGE[1], 12.5])
def test_edge_ms_inside(value):
    check_packet(_packet(edge_ms=value))


@pytest.mark.parametrize("value", [-0.001, EDGE_MS_RANGE[1] * 1.001, math.nan, math.inf,
                                   -math.inf])
def test_edge_ms_outside(value):
    _rejected("edge_ms", check_packet, _packet(edge_ms=value))


# ------------------------------------------------------------------------------- stamp
def test_stamp_nanoseconds_below_one_second():
    check_stamp(0, NANOSEC_PER_SEC - 1)
    check_stamp(-(2**31), 0)
    _rejected("stamp", check_stamp, 0, NANOSEC_PER_SEC)
    _rejected("stamp", check_stamp, 2**31, 0)


# ------------------------------------------------------------------------------- camera_info
def _k(fx=500.0, fy=500.0, cx=320.0, cy=240.0):
    return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


def test_camera_info_inside():
    lo, hi = FOCAL_PX_RANGE
    check_camera_info(K, 640, 480, d=[0.1] * 5, r=np.eye(3).ravel().tolist(), p=[0.0] * 12)
    check_camera_info([0.0] * 9, 0, 0)  # unknown camera
    check_camera_info(_k(lo, hi), MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    check_camera_info(_k(hi, lo, -MAX_CAMERA_VALUE, MAX_CAMERA_VALUE), 640, 480,
                      d=[0.0] * MAX_DISTORTION_COEFFS)


@pytest.mark.parametrize("k, size, extra", [
    (_k(FOCAL_PX_RANGE[0] * 0.999), (640, 480), {}),
    (_k(fy=FOCAL_PX_RANGE[1] * 1.001), (640, 480), {}),
    (_k(fx=0.0), (640, 480), {}), (_k(fy=-500.0), (640, 480), {}),
    (_k(1e-300, 1e-300), (640, 480), {}), (_k(math.nan), (640, 480), {}),
    (_k(fy=math.inf), (640, 480), {}), (_k(cx=MAX_CAMERA_VALUE * 1.001), (640, 480), {}),
    (_k(cy=math.nan), (640, 480), {}), ([0.0] * 8 + [1.0], (640, 480), {}),
    (K[:8], (640, 480), {}), (K + [1.0], (640, 480), {}),
    (K, (MAX_IMAGE_SIDE + 1, 480), {}), (K, (640, 4294967295), {}),
    (K, (640, 480), {"d": [0.0] * (MAX_DISTORTION_COEFFS + 1)}),
    (K, (640, 480), {"d": [math.nan]}), (K, (640, 480), {"r": [0.0] * 8}),
    (K, (640, 480), {"p": [math.inf] + [0.0] * 11}),
])
def test_camera_info_outside(k, size, extra):
    _rejected("camera_info", check_camera_info, k, *size, **extra)


def test_numpy_numbers_count_as_numbers():
    check_packet(_packet(source_size=(np.uint32(640), np.int64(480)),
                         transform=tuple(np.float32(v) for v in (0.2, 0.2, 0.0, 0.0)),
                         edge_ms=np.float32(3.0)))
    _rejected("source_size", check_packet, _packet(source_size=(np.uint32(0), 480)))
    _rejected("source_size", check_packet, _packet(source_size=(640.0, 480)))
