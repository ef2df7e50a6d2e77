"""The envelope of a serialized SplitFeatures message, read from its CDR bytes without
deserializing it.

The server subscribes to features as raw bytes: a frame replaced in its newest-frame slot
before the worker takes it (overload) must cost as little as possible, so only what its
arrival needs is read here: the stamp and frame (logs, the DROPPED answer), the split and
codec (the answer; whether the stream's codec is temporal, which must decode every frame),
the data size (the answer), ``probe`` and ``send_fps`` (the pool's admission). The worker
deserializes the rest when it takes the frame (``features_msg.msg_to_packet``).

Layout (plain CDR, little endian, after a 4-byte encapsulation header; each primitive aligned
to its size, counted from after that header): Header, CameraInfo, then the fields of
mtl_split_msgs/msg/SplitFeatures.msg in order. Every length is checked against the bytes left
before it is used: anything else raises ``PacketRejected("cdr", ...)``, never another error
(test/ros/test_features_cdr.py compares with rclpy's deserialization, and truncates and
corrupts messages).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from mtl_split_core.runtime.packet import (
    MAX_TEXT_BYTES,
    PacketRejected,
    check_send_fps,
    check_stamp,
    check_text,
)

CDR_LE = b"\x00\x01"  # encapsulation kind: plain CDR, little endian
_U32, _STAMP = struct.Struct("<I"), struct.Struct("<iI")
_TAIL = struct.Struct("<fBxxxf")  # edge_ms, probe, (padding), send_fps
# CameraInfo's fixed part after d: k[9], r[9], p[12] (float64; aligned to 8), then binning_x,
# binning_y, roi x_offset, y_offset, height, width (uint32), roi do_rectify (bool).
_CAMERA_FIXED = 30 * 8 + 6 * 4 + 1


class Envelope(NamedTuple):
    """What a features message's arrival needs (module docstring)."""

    sec: int
    nanosec: int
    frame_id: str
    split_index: int
    codec: str
    nbytes: int        # len(data)
    probe: bool
    send_fps: float    # checked against the input bounds


def read_envelope(raw: bytes) -> Envelope:
    """The envelope of the serialized SplitFeatures ``raw``; PacketRejected("cdr") for bytes
    that are not one (``frame_id`` / ``codec`` / ``stamp`` / ``send_fps`` for those fields out
    of their bounds)."""
    size = len(raw)
    if size < 12 or raw[:2] != CDR_LE:
        raise PacketRejected("cdr", f"serialized features do not start with little-endian CDR "
                             f"({bytes(raw[:4])!r})")
    sec, nanosec = _STAMP.unpack_from(raw, 4)
    check_stamp(sec, nanosec)

    def length(at: int, item: int, what: str) -> tuple[int, int]:
        """(count, offset after the items) of the sequence or string whose count is at
        ``at`` (aligned to 4), each item ``item`` bytes (aligned to it, after the count)."""
        at += -at % 4  # offsets count from after the 4-byte encapsulation: 4-aligned alike
        if at + 4 > size:
            raise PacketRejected("cdr", f"serialized features end inside {what}")
        count = _U32.unpack_from(raw, at)[0]
        begin = at + 4
        if item == 8:
            begin += -(begin - 4) % 8
        end = begin + count * item
        if end > size:
            raise PacketRejected("cdr", f"serialized features end inside {what} ({count} "
                                 f"items at byte {begin} of {size})")
        return count, end

    def text(at: int, what: str, reason: str) -> tuple[str, int]:
        count, end = length(at, 1, what)
        if count < 1 or raw[end - 1] != 0:
            raise PacketRejected("cdr", f"{what} is not a terminated string")
        if count - 1 > MAX_TEXT_BYTES:  # before decoding it
            raise PacketRejected(reason, f"{what} has {count - 1} bytes; expected at most "
                                 f"{MAX_TEXT_BYTES}")
        try:
            value = raw[end - count:end - 1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise PacketRejected("cdr", f"{what} is not UTF-8") from err
        check_text(reason, what, value)
        return value, end

    frame_id, at = text(12, "header.frame_id", "frame_id")
    at += -at % 4 + 8                                         # camera_info.header.stamp
    at = length(at, 1, "camera_info.header.frame_id")[1] + 8  # then height, width
    at = length(at, 1, "camera_info.distortion_model")[1]
    at = length(at, 8, "camera_info.d")[1]
    at += -(at - 4) % 8 + _CAMERA_FIXED
    at = length(at, 1, "model_id")[1]
    at = length(at, 1, "model_fingerprint")[1]
    if at + 1 > size:
        raise PacketRejected("cdr", "serialized features end inside split_index")
    split_index = raw[at]
    at += 1
    at += -at % 4 + 8 + 16                                    # source size, transform
    codec, at = text(at, "codec", "codec")
    for what in ("shape", "scale", "offset"):
        at = length(at, 4, what)[1]
    nbytes, at = length(at, 1, "data")
    at += -at % 4
    if at + _TAIL.size > size:
        raise PacketRejected("cdr", "serialized features end inside edge_ms, probe, send_fps")
    _, probe, send_fps = _TAIL.unpack_from(raw, at)
    if probe > 1:
        raise PacketRejected("cdr", f"probe = {probe}; expected a bool (0 or 1)")
    return Envelope(int(sec), int(nanosec), frame_id, split_index, codec, nbytes, bool(probe),
                    check_send_fps(send_fps))
