"""sensor_msgs/Image as serialized CDR bytes, written straight from the pixel array.

Building an rclpy Image copies the pixels into an ``array.array``, publishing it copies them
into the C message and again into the serialized buffer. The bytes here take one copy (the
pixels joined after the header fields) and ``Publisher.publish`` sends bytes as they are:
25-35% less publisher CPU per segmentation or depth image on the 2-core CPU
(bench/results/latency_cpu/README.md). They deserialize to ``outputs.image``'s message
(test/ros/test_image_cdr.py; rclpy's own serialization differs only in its uninitialised
padding bytes).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from mtl_split_ros.detections_cdr import CdrWriter
from mtl_split_ros.image_msg import image_fields

_SIZE = struct.Struct("<II")


def image_cdr(header: Any, pixels: np.ndarray, encoding: str) -> bytes:
    """The serialized sensor_msgs/Image of ``outputs.image(factory, header, pixels,
    encoding)`` (an array (H, W[, C]))."""
    fields = image_fields(pixels, encoding)
    data = fields["data"]
    w = CdrWriter()
    w.header(int(header.stamp.sec), int(header.stamp.nanosec), str(header.frame_id).encode())
    w.u32(fields["height"])
    w.u32(fields["width"])
    w.string(encoding.encode())
    w.buf += b"\x00"  # is_bigendian
    w.u32(fields["step"])
    w.u32(data.nbytes)
    return b"".join((w.buf, data.data))
