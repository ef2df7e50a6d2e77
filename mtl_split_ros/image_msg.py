"""sensor_msgs Image / CompressedImage <-> numpy, with clear errors for bad input.

Works on rclpy messages and on the dataclasses `rosbags` deserializes (same field names), so
live nodes and offline bag processing share one conversion. ROS -> RGB is
mtl_split_core.image_decode (OpenCV, every colour encoding cv_bridge converts); numpy -> ROS is
plain numpy (ROS 2's cv_bridge is not installable everywhere).
"""

from __future__ import annotations

import array
from typing import Any, TypeVar

import numpy as np

from mtl_split_core.image_decode import (
    DATA_LENGTH,
    UNKNOWN_ENCODING,
    ImageDecodeError,
    compressed_to_rgb,
    raw_to_rgb,
)

__all__ = ["ImageDecodeError", "fill_image", "image_fields", "image_to_array", "image_to_rgb",
           "to_uint8_array"]

Msg = TypeVar("Msg")  # any message type (rclpy or rosbags): ROS messages carry no types


def image_to_rgb(msg: Any) -> np.ndarray:
    """Return an RGB uint8 (H, W, 3) array for an Image or CompressedImage message; an
    ImageDecodeError's ``reason`` names the cause."""
    if hasattr(msg, "format"):
        return compressed_to_rgb(msg.format, _buffer(msg.data))
    return raw_to_rgb(msg.encoding, int(msg.height), int(msg.width), int(msg.step),
                      bool(msg.is_bigendian), _buffer(msg.data))


def _buffer(data: Any) -> np.ndarray:
    """The uint8[] field as bytes without a copy where possible (rclpy: array.array, bytes or
    a list; rosbags: numpy)."""
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, np.uint8)


def to_uint8_array(buffer: bytes | np.ndarray) -> array.array:
    """A uint8[] field value: array.array avoids rclpy's slow per-element checks."""
    out = array.array("B")
    # One copy: straight from the array's memory (``tobytes`` would make a second).
    out.frombytes(buffer if isinstance(buffer, bytes)
                  else np.ascontiguousarray(buffer).reshape(-1).view(np.uint8).data)
    return out


def image_fields(pixels: np.ndarray, encoding: str) -> dict:
    """The sensor_msgs/Image fields (all but header) for an array (H, W[, C]); ``data`` is a
    flat uint8 view of the pixels (a message factory turns it into its own field type)."""
    pixels = np.ascontiguousarray(pixels)
    return {"height": int(pixels.shape[0]), "width": int(pixels.shape[1]),
            "encoding": encoding, "is_bigendian": 0, "step": int(pixels.strides[0]),
            "data": pixels.reshape(-1).view(np.uint8)}


def fill_image(msg: Msg, pixels: np.ndarray, encoding: str) -> Msg:
    """Fill a sensor_msgs/Image ``msg`` (rclpy) from an array (H, W[, C]); returns ``msg``."""
    for name, value in image_fields(pixels, encoding).items():
        setattr(msg, name, to_uint8_array(value) if name == "data" else value)
    return msg


_ARRAY_DTYPES = {"32FC1": np.float32, "mono8": np.uint8, "mono16": np.uint16}


def image_to_array(msg: Any) -> np.ndarray:
    """A single-channel Image (32FC1, mono8 or mono16; e.g. depth or class ids) as (H, W)."""
    if msg.encoding not in _ARRAY_DTYPES:
        raise ImageDecodeError(UNKNOWN_ENCODING, f"image_to_array takes "
                               f"{', '.join(_ARRAY_DTYPES)}; got {msg.encoding!r}")
    dtype = np.dtype(_ARRAY_DTYPES[msg.encoding])
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if step < w * dtype.itemsize or data.size < step * h:
        raise ImageDecodeError(DATA_LENGTH, f"{msg.encoding} image {w}x{h} needs step >= "
                               f"{w * dtype.itemsize} and {step * h} bytes; got step {step} "
                               f"and {data.size} bytes")
    rows = data[: step * h].reshape(h, step)[:, : w * dtype.itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w)
