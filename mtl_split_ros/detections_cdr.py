"""vision_msgs/Detection2DArray as serialized CDR bytes, written straight from the arrays.

Building the message object costs one nested Python message per field of every detection
(seven per detection), and publishing it walks them all again to convert them to C: ~0.4 ms
for 15 detections on the 2-core CPU, most of a frame's output work in the fleet bench. The
bytes here are what ``rclpy.serialization.serialize_message`` makes of
``outputs.detection_array``'s message (checked byte for byte in
test/ros/test_detections_cdr.py); ``Publisher.publish`` sends bytes as they are.

Layout: CDR little endian (rmw_fastrtps' encapsulation 00 01 00 00), each primitive aligned
to its size counted from after the 4-byte encapsulation header.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

ENCAPSULATION = b"\x00\x01\x00\x00"
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
# The shared zero pose of a 2D detection: position 0, orientation w = 1, covariance 0.
_UNPLACED_DOUBLES = np.array([0.0] * 6 + [1.0] + [0.0] * 36)
_DOUBLES = 1 + 43 + 5  # per detection: score, pose, bbox (centre x, y, theta, size x, y)
_EMPTY_ID = _U32.pack(1) + b"\x00"


class CdrWriter:
    """CDR little-endian bytes, written in order (the module docstring's layout)."""

    def __init__(self) -> None:
        self.buf = bytearray(ENCAPSULATION)

    def align(self, size: int) -> None:
        self.buf += b"\x00" * (-(len(self.buf) - len(ENCAPSULATION)) % size)

    def u32(self, value: int) -> None:
        self.align(4)
        self.buf += _U32.pack(value)

    def string(self, data: bytes) -> None:
        self.u32(len(data) + 1)
        self.buf += data
        self.buf += b"\x00"

    def header(self, sec: int, nanosec: int, frame_id: bytes) -> None:
        self.align(4)
        self.buf += _STAMP.pack(sec, nanosec)
        self.string(frame_id)


def detection_array_cdr(header: Any, boxes: ArrayLike, class_ids: ArrayLike,
                        scores: ArrayLike) -> bytes:
    """The serialized vision_msgs/Detection2DArray of ``outputs.detection_array(factory,
    header, boxes, class_ids, scores)``: x1, y1, x2, y2 boxes in source pixels, one hypothesis
    per detection (class id as text), a zero pose, an empty id.

    A detection is its prefix (header, hypothesis count, class id, padding to the score: the
    same bytes for every detection of one class that starts at the same offset modulo 8, made
    once per frame), its 49 doubles (score, pose, box: one numpy block for all detections)
    and the empty id."""
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4)
    ids = np.asarray(class_ids, np.int64).reshape(-1).tolist()
    confidences = np.asarray(scores, np.float64).reshape(-1)
    n = min(len(xyxy), len(ids), len(confidences))  # as detection_array's zip
    xyxy, ids = xyxy[:n], ids[:n]
    doubles = np.empty((n, _DOUBLES), "<f8")
    doubles[:, 0] = confidences[:n]
    doubles[:, 1:44] = _UNPLACED_DOUBLES
    doubles[:, 44:46] = (xyxy[:, :2] + xyxy[:, 2:]) / 2        # centre x, y
    doubles[:, 46] = 0.0                                      # theta
    doubles[:, 47:49] = xyxy[:, 2:] - xyxy[:, :2]             # size x, y
    block = doubles.tobytes()
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    frame_id = str(header.frame_id).encode()
    w = CdrWriter()
    w.header(sec, nanosec, frame_id)
    w.u32(n)
    parts = [bytes(w.buf)]
    at = len(w.buf) - len(ENCAPSULATION)  # where the next detection starts
    prefixes: dict[tuple[int, int], bytes] = {}
    step = _DOUBLES * 8
    for i, cid in enumerate(ids):
        key = (at % 8, cid)
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = prefixes[key] = _prefix(at % 8, sec, nanosec, frame_id, cid)
        parts += (prefix, block[i * step:(i + 1) * step], _EMPTY_ID)
        at += len(prefix) + step + len(_EMPTY_ID)
    return b"".join(parts)


def _prefix(phase: int, sec: int, nanosec: int, frame_id: bytes, class_id: int) -> bytes:
    """A detection's bytes before its score when it starts at offset ``phase`` modulo 8: its
    header, one hypothesis, the class id as text, the padding that aligns the score."""
    w = CdrWriter()
    w.buf += b"\x00" * phase
    w.header(sec, nanosec, frame_id)
    w.u32(1)                              # results: one hypothesis
    w.string(str(int(class_id)).encode())  # hypothesis.class_id
    w.align(8)                            # hypothesis.score is a double
    return bytes(w.buf[len(ENCAPSULATION) + phase:])
