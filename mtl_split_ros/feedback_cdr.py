"""mtl_split/msg/LinkFeedback as serialized CDR bytes.

The server answers every features message it served or dropped; under overload most are
dropped, so the answer is part of the cost of a frame beyond the capacity. Building the rclpy
message (with its Header and Time) and converting it to C cost ~3x these bytes on the 2-core
CPU; ``Publisher.publish`` sends bytes as they are. They deserialize to the message with the
same fields (test/ros/test_feedback_cdr.py). Layout: as detections_cdr.py.
"""

from __future__ import annotations

import struct

from mtl_split_ros.detections_cdr import CdrWriter

_MS_NBYTES_SPLIT = struct.Struct("<fIB")  # server_ms, nbytes, split_index


def link_feedback_cdr(sec: int, nanosec: int, frame_id: str, status: int, server_ms: float,
                      nbytes: int, split_index: int, codec: str) -> bytes:
    """The serialized LinkFeedback with these fields (header = stamp and frame_id)."""
    w = CdrWriter()
    w.header(sec, nanosec, frame_id.encode())
    w.buf.append(status)
    w.align(4)
    w.buf += _MS_NBYTES_SPLIT.pack(server_ms, nbytes, split_index)
    w.string(codec.encode())
    return bytes(w.buf)
