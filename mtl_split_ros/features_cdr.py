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
_U32, _F32, _STAMP = struct.Struct("<I"), struct.Struct("<f"), struct.Struct("<iI")
# CameraInfo's fixed part after distortion_model and d: k[9], r[9], p[12] (float64), then
# binning_x, binning_y, roi x_offset, y_offset, height, width (uint32), roi do_rectify (bool).
_CAMERA_DOUBLES, _CAMERA_TAIL = 30 * 8, 6 * 4 + 1


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


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 4

    def _need(self, size: int, what: str) -> int:
        at = self.pos
        if size < 0 or at + size > len(self.raw):
            raise PacketRejected("cdr", f"serialized features end inside {what} (byte {at} "
                                 f"+ {size} of {len(self.raw)})")
        self.pos = at + size
        return at

    def align(self, size: int) -> None:
        self.pos += -(self.pos - 4) % size

    def u32(self, what: str) -> int:
        self.align(4)
        return int(_U32.unpack_from(self.raw, self._need(4, what))[0])

    def f32(self, what: str) -> float:
        self.align(4)
        return float(_F32.unpack_from(self.raw, self._need(4, what))[0])

    def u8(self, what: str) -> int:
        return self.raw[self._need(1, what)]

    def skip(self, size: int, what: str, align: int = 1) -> None:
        self.align(align)
        self._need(size, what)

    def sequence(self, item: int, what: str) -> int:
        """Skip a sequence of ``item``-byte primitives; its length."""
        count = self.u32(what)
        self.skip(count * item, what, item)
        return count

    def string(self, what: str, keep: str = "") -> str:
        """A string; kept (``keep``: the reason its bounds are checked under, as
        ``check_text``) or skipped ('')."""
        size = self.u32(what)
        at = self._need(size, what)
        if not keep:
            return ""
        if size < 1 or self.raw[at + size - 1] != 0:
            raise PacketRejected("cdr", f"{what} is not a terminated string")
        if size - 1 > MAX_TEXT_BYTES:  # before decoding it
            raise PacketRejected(keep, f"{what} has {size - 1} bytes; expected at most "
                                 f"{MAX_TEXT_BYTES}")
        try:
            text = self.raw[at:at + size - 1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise PacketRejected("cdr", f"{what} is not UTF-8") from err
        check_text(keep, what, text)
        return text


def read_envelope(raw: bytes) -> Envelope:
    """The envelope of the serialized SplitFeatures ``raw``; PacketRejected("cdr") for bytes
    that are not one (PacketRejected("stamp" / "send_fps") for those fields out of bounds)."""
    if len(raw) < 4 or raw[:2] != CDR_LE:
        raise PacketRejected("cdr", f"serialized features do not start with little-endian CDR "
                             f"({bytes(raw[:4])!r})")
    r = _Reader(raw)
    sec, nanosec = _STAMP.unpack_from(raw, r._need(8, "header.stamp"))
    check_stamp(sec, nanosec)
    frame_id = r.string("header.frame_id", keep="frame_id")
    r.skip(8, "camera_info.header.stamp", 4)
    r.string("camera_info.header.frame_id")
    r.skip(8, "camera_info.height, width", 4)
    r.string("camera_info.distortion_model")
    r.sequence(8, "camera_info.d")
    r.skip(_CAMERA_DOUBLES, "camera_info.k, r, p", 8)
    r.skip(_CAMERA_TAIL, "camera_info.binning, roi", 4)
    r.string("model_id")
    r.string("model_fingerprint")
    split_index = r.u8("split_index")
    r.skip(8 + 16, "source size, transform", 4)
    codec = r.string("codec", keep="codec")
    r.sequence(4, "shape")
    r.sequence(4, "scale")
    r.sequence(4, "offset")
    nbytes = r.sequence(1, "data")
    r.f32("edge_ms")
    probe = r.u8("probe")
    if probe > 1:
        raise PacketRejected("cdr", f"probe = {probe}; expected a bool (0 or 1)")
    send_fps = check_send_fps(r.f32("send_fps"))
    return Envelope(int(sec), int(nanosec), frame_id, split_index, codec, nbytes, bool(probe),
                    send_fps)
