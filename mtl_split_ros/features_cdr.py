"""A serialized SplitFeatures message read straight from its CDR bytes, without rclpy.

The server subscribes to features as raw bytes: a frame replaced in its newest-frame slot
before the worker takes it (overload) must cost as little as possible, so ``read_envelope``
reads only what its arrival needs: the stamp and frame (logs, the DROPPED answer), the split
and codec (the answer; whether the stream's codec is temporal, which must decode every frame),
the data size (the answer), ``probe`` and ``send_fps`` (the pool's admission). The worker reads
the whole message when it takes the frame (``read_features``: every field, the arrays as numpy
views of the bytes, in the shape of rclpy's message, so ``features_msg.msg_to_packet`` and the
signature check take it as they take a deserialized message): rclpy's deserialization built a
Python message of ~60 fields per frame, the largest single cost of a served frame's admission
on the GPU server (bench/results/fleet_gpu_speed/run2).

Layout (plain CDR, little endian, after a 4-byte encapsulation header; each primitive aligned
to its size, counted from after that header): Header, CameraInfo, then the fields of
mtl_split_msgs/msg/SplitFeatures.msg in order. Every length is checked against the bytes left
before it is used: anything else raises ``PacketRejected("cdr", ...)``, never another error
(test/ros/test_features_cdr.py compares with rclpy's deserialization, and truncates and
corrupts messages).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np

from mtl_split_core.runtime.packet import (
    MAX_TEXT_BYTES,
    PacketRejected,
    check_send_fps,
    check_stamp,
)

CDR_LE = b"\x00\x01"  # encapsulation kind: plain CDR, little endian
_U32, _STAMP = struct.Struct("<I"), struct.Struct("<iI")
_TAIL = struct.Struct("<fBxxxf")  # edge_ms, probe, (padding), send_fps
_U64 = struct.Struct("<Q")
# CameraInfo's fixed part after d: k[9], r[9], p[12] (float64; aligned to 8), then binning_x,
# binning_y, roi x_offset, y_offset, height, width (uint32), roi do_rectify (bool).
_CAMERA_FIXED = 30 * 8 + 6 * 4 + 1
_CAMERA_INTS = struct.Struct("<6IB")
_SOURCE = struct.Struct("<II")  # source_height, source_width
_F64, _F32, _U32_ARRAY = np.dtype("<f8"), np.dtype("<f4"), np.dtype("<u4")


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
    """Bounded reads of the CDR bytes ``raw`` (module docstring's layout); ``at`` is the
    offset of the next field, counted from the start of ``raw``."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.size = raw, len(raw)
        if self.size < 12 or raw[:2] != CDR_LE:
            raise PacketRejected("cdr", f"serialized features do not start with "
                                 f"little-endian CDR ({bytes(raw[:4])!r})")
        self.at = 4

    def need(self, nbytes: int, what: str) -> int:
        """The offset of ``nbytes`` bytes of ``what`` here (then after them)."""
        at, end = self.at, self.at + nbytes
        if end > self.size:
            raise PacketRejected("cdr", f"serialized features end inside {what}")
        self.at = end
        return at

    def align(self, size: int) -> None:
        """Offsets count from after the 4-byte encapsulation: 4-aligned alike."""
        self.at += -(self.at - 4) % size

    def sequence(self, item: int, what: str) -> tuple[int, int]:
        """(count, offset of the first item) of the sequence or string here, each item
        ``item`` bytes (aligned to it, after the 4-byte count); the reader moves past it.
        (Inlined alignment: this runs ~10 times per message, on the receiving thread too.)"""
        at = self.at + -self.at % 4  # 4-aligned from the start as from after the header
        if at + 4 > self.size:
            raise PacketRejected("cdr", f"serialized features end inside {what}")
        count = _U32.unpack_from(self.raw, at)[0]
        begin = at + 4
        if item == 8:
            begin += -(begin - 4) % 8
        end = begin + count * item
        if end > self.size:
            raise PacketRejected("cdr", f"serialized features end inside {what} ({count} "
                                 f"items at byte {begin} of {self.size})")
        self.at = end
        return count, begin

    def text(self, what: str, reason: str = "") -> str:
        """A string, decoded; with ``reason`` checked against the bounds now (its size before
        decoding it), else later (``msg_to_packet``)."""
        count, begin = self.sequence(1, what)
        if count < 1 or self.raw[begin + count - 1] != 0:
            raise PacketRejected("cdr", f"{what} is not a terminated string")
        if reason and count - 1 > MAX_TEXT_BYTES:  # check_text's bound, on the bytes
            raise PacketRejected(reason, f"{what} has {count - 1} bytes; expected at most "
                                 f"{MAX_TEXT_BYTES}")
        try:
            return str(self.raw[begin:begin + count - 1], "utf-8")
        except UnicodeDecodeError as err:
            raise PacketRejected("cdr", f"{what} is not UTF-8") from err

    def array(self, dtype: np.dtype, count: int | None, what: str) -> np.ndarray:
        """A read-only view of ``count`` items (None: a sequence, its count first)."""
        if count is None:
            count, begin = self.sequence(dtype.itemsize, what)
        else:
            self.align(dtype.itemsize)
            begin = self.need(count * dtype.itemsize, what)
        return np.frombuffer(self.raw, dtype, count, begin)

    def byte(self, what: str) -> int:
        return self.raw[self.need(1, what)]

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        """The 4-aligned ``layout`` (a stamp, uint32s and the like) here."""
        at = self.at + -self.at % 4
        end = at + layout.size
        if end > self.size:
            raise PacketRejected("cdr", f"serialized features end inside {what}")
        self.at = end
        return layout.unpack_from(self.raw, at)


def read_envelope(raw: bytes) -> Envelope:
    """The envelope of the serialized SplitFeatures ``raw``; PacketRejected("cdr") for bytes
    that are not one (``frame_id`` / ``codec`` / ``stamp`` / ``send_fps`` for those fields out
    of their bounds)."""
    r = _Reader(raw)
    sec, nanosec = r.unpack(_STAMP, "header.stamp")
    check_stamp(sec, nanosec)
    frame_id = r.text("header.frame_id", "frame_id")
    r.unpack(_STAMP, "camera_info.header.stamp")
    r.sequence(1, "camera_info.header.frame_id")
    r.unpack(_SOURCE, "camera_info height, width")
    r.sequence(1, "camera_info.distortion_model")
    r.sequence(8, "camera_info.d")
    r.align(8)
    r.need(_CAMERA_FIXED, "camera_info")
    r.sequence(1, "model_id")
    r.sequence(1, "model_fingerprint")
    split_index = r.byte("split_index")
    r.align(4)
    r.need(8 + 16, "source size, transform")
    codec = r.text("codec", "codec")
    for what in ("shape", "scale", "offset"):
        r.sequence(4, what)
    nbytes = r.sequence(1, "data")[0]
    _, probe, send_fps = r.unpack(_TAIL, "edge_ms, probe, send_fps")
    if probe > 1:
        raise PacketRejected("cdr", f"probe = {probe}; expected a bool (0 or 1)")
    return Envelope(sec, nanosec, frame_id, split_index, codec, nbytes, bool(probe),
                    check_send_fps(send_fps))


# The whole message, in the shape of rclpy's (attribute names and nesting); the arrays are
# read-only numpy views of the bytes, every number a Python int / float / bool.
class Stamp(NamedTuple):
    sec: int
    nanosec: int


class Header(NamedTuple):
    stamp: Stamp
    frame_id: str


class RegionOfInterest(NamedTuple):
    x_offset: int
    y_offset: int
    height: int
    width: int
    do_rectify: bool


class CameraInfo(NamedTuple):
    header: Header
    height: int
    width: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray
    r: np.ndarray
    p: np.ndarray
    binning_x: int
    binning_y: int
    roi: RegionOfInterest


class Features(NamedTuple):
    header: Header
    camera_info: CameraInfo
    model_id: str
    model_fingerprint: str
    split_index: int
    source_height: int
    source_width: int
    transform: np.ndarray
    codec: str
    shape: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    data: np.ndarray
    edge_ms: float
    probe: bool
    send_fps: float
    auth_key_id: str
    auth_sequence: int
    auth_tag: np.ndarray
    # Not a message field: camera_info's bytes after its stamp and where they start modulo 8
    # (their meaning depends on it), what ``msg_to_packet`` remembers a checked one by.
    camera_info_cdr: tuple[int, bytes] = (0, b"")


def read_features(raw: bytes) -> Features:
    """Every field of the serialized SplitFeatures ``raw``, as rclpy would deserialize them;
    PacketRejected("cdr") for bytes that are not one. Bytes past the last field are ignored
    (as rclpy does). No field is checked against the input bounds here: that is
    ``features_msg.msg_to_packet``, for this and for rclpy's messages alike."""
    r = _Reader(raw)
    header = Header(Stamp(*r.unpack(_STAMP, "header.stamp")), r.text("header.frame_id"))
    info_stamp = Stamp(*r.unpack(_STAMP, "camera_info.header.stamp"))
    info_at = r.at  # the rest of camera_info (its stamp, unchecked, differs per frame)
    info_header = Header(info_stamp, r.text("camera_info.header.frame_id"))
    height, width = r.unpack(_SOURCE, "camera_info height, width")
    model = r.text("camera_info.distortion_model")
    d = r.array(_F64, None, "camera_info.d")
    k, rr, p = (r.array(_F64, n, f"camera_info.{name}")
                for n, name in ((9, "k"), (9, "r"), (12, "p")))
    bin_x, bin_y, x_offset, y_offset, roi_h, roi_w, rectify = r.unpack(_CAMERA_INTS,
                                                                       "camera_info")
    if rectify > 1:
        raise PacketRejected("cdr", f"camera_info.roi.do_rectify = {rectify}; expected a "
                             f"bool (0 or 1)")
    info = CameraInfo(info_header, height, width, model, d, k, rr, p, bin_x, bin_y,
                      RegionOfInterest(x_offset, y_offset, roi_h, roi_w, bool(rectify)))
    info_cdr = ((info_at - 4) % 8, raw[info_at:r.at])
    model_id, fingerprint = r.text("model_id"), r.text("model_fingerprint")
    split_index = r.byte("split_index")
    source_height, source_width = r.unpack(_SOURCE, "source size")
    transform = r.array(_F32, 4, "transform")
    codec = r.text("codec")
    shape = r.array(_U32_ARRAY, None, "shape")
    scale = r.array(_F32, None, "scale")
    offset = r.array(_F32, None, "offset")
    data = r.array(np.dtype(np.uint8), None, "data")
    edge_ms, probe, send_fps = r.unpack(_TAIL, "edge_ms, probe, send_fps")
    if probe > 1:
        raise PacketRejected("cdr", f"probe = {probe}; expected a bool (0 or 1)")
    key_id = r.text("auth_key_id")
    r.align(8)
    sequence = _U64.unpack_from(raw, r.need(8, "auth_sequence"))[0]
    tag = r.array(np.dtype(np.uint8), None, "auth_tag")
    return Features(header, info, model_id, fingerprint, split_index, source_height,
                    source_width, transform, codec, shape, scale, offset, data, edge_ms,
                    bool(probe), send_fps, key_id, sequence, tag, info_cdr)
