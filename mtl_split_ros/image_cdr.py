"""sensor_msgs/Image as serialized CDR bytes, written straight from the pixel array, and read
straight into one (``read_image``).

Building an rclpy Image copies the pixels into an ``array.array``, publishing it copies them
into the C message and again into the serialized buffer. The bytes here take one copy (the
pixels joined after the header fields) and ``Publisher.publish`` sends bytes as they are:
25-35% less publisher CPU per segmentation or depth image on the 2-core CPU
(bench/results/latency_cpu/README.md). They deserialize to ``outputs.image``'s message
(test/ros/test_image_cdr.py; rclpy's own serialization differs only in its uninitialised
padding bytes).

``read_image``: the edge subscribes to its camera's images as raw bytes. rclpy's
deserialization of a 640x480 rgb8 image copied the pixels into the C message, then into an
``array.array`` of a new Python message, on the executor thread (0.28 ms here, on the frame's
critical path); the reader gives the pixels as a numpy view of the received bytes and checks
every length against the bytes left before it uses it (``ImageDecodeError(IMAGE_CDR)``, never
another error; test/ros/test_image_cdr.py compares it with rclpy's deserialization, and
truncates and corrupts messages).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtl_split_core.image_decode import ImageDecodeError
from mtl_split_ros.detections_cdr import ENCAPSULATION, CdrWriter
from mtl_split_ros.image_msg import image_fields

_SIZE = struct.Struct("<II")
_U32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_CDR_LE = ENCAPSULATION[:2]
IMAGE_CDR = "image_cdr"  # the rejection reason of bytes that are no serialized Image
MAX_ENCODING_BYTES = 64  # sensor_msgs' encodings are short names ("rgb8", "bayer_rggb16")


class RawImage(NamedTuple):
    """A serialized sensor_msgs/Image's fields, as ``image_msg.image_to_rgb`` and the edge
    read them; ``data`` a read-only uint8 view of the received bytes."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


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


def read_image(raw: bytes) -> RawImage | Image:
    """The serialized sensor_msgs/Image ``raw`` (module docstring); bytes in another
    encapsulation than little-endian CDR (a big-endian host) are deserialized by rclpy.
    ImageDecodeError(IMAGE_CDR) for bytes that are not an Image."""
    size = len(raw)
    if size < 4 or raw[:2] != _CDR_LE:
        return _deserialized(raw)
    at = 4

    def u32(what: str) -> int:
        nonlocal at
        at += -(at - 4) % 4
        if at + 4 > size:
            raise ImageDecodeError(IMAGE_CDR, f"serialized image ends inside {what}")
        at += 4
        return int(_U32.unpack_from(raw, at - 4)[0])

    def text(what: str, limit: int | None = None) -> str:
        nonlocal at
        count = u32(what)
        if count < 1 or at + count > size or raw[at + count - 1] != 0:
            raise ImageDecodeError(IMAGE_CDR, f"{what} is not a terminated string within "
                                              f"the {size} bytes")
        if limit is not None and count - 1 > limit:
            raise ImageDecodeError(IMAGE_CDR, f"{what} has {count - 1} bytes; expected at "
                                              f"most {limit}")
        end = raw.find(b"\x00", at, at + count)  # as rclpy: a C string, up to its first NUL
        try:
            value = str(raw[at:end], "utf-8")
        except UnicodeDecodeError as err:
            raise ImageDecodeError(IMAGE_CDR, f"{what} is not UTF-8") from err
        at += count
        return value

    if size < 4 + _STAMP.size:
        raise ImageDecodeError(IMAGE_CDR, "serialized image ends inside header.stamp")
    sec, nanosec = _STAMP.unpack_from(raw, 4)
    at += _STAMP.size
    frame_id = text("header.frame_id")
    height, width = u32("height"), u32("width")
    encoding = text("encoding", MAX_ENCODING_BYTES)
    if at >= size:
        raise ImageDecodeError(IMAGE_CDR, "serialized image ends inside is_bigendian")
    is_bigendian = raw[at]
    at += 1
    step = u32("step")
    count = u32("data")
    if at + count > size:
        raise ImageDecodeError(IMAGE_CDR, f"serialized image ends inside data ({count} bytes "
                                          f"at byte {at} of {size})")
    header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    return RawImage(header, height, width, encoding, is_bigendian, step,
                    np.frombuffer(raw, np.uint8, count, at))


def _deserialized(raw: bytes) -> Image:
    try:
        return deserialize_message(raw, Image)
    except Exception as err:  # noqa: BLE001 - any failure of foreign bytes is this one reason
        raise ImageDecodeError(IMAGE_CDR, f"{len(raw)} bytes are not a serialized Image: "
                                          f"{type(err).__name__}") from err
