"""sensor_msgs Image / CompressedImage <-> numpy, with clear errors for bad input.

Works on rclpy messages and on the dataclasses `rosbags` deserializes (same field names), so
live nodes and offline bag processing share one conversion. ROS -> numpy uses rosbags-image;
numpy -> ROS is plain numpy (ROS 2's cv_bridge is not installable everywhere).
"""

from __future__ import annotations

import array
from typing import Any, TypeVar

import numpy as np
from rosbags.image import ImageError, compressed_image_to_cvimage, image_to_cvimage

# Encodings the edge accepts for sensor_msgs/Image (DESIGN.md §3 "any common encoding").
SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
SUPPORTED_FORMATS = ("jpeg", "jpg", "png")
_BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}
MAX_PIXELS = 8192 * 8192

Msg = TypeVar("Msg")  # any message type (rclpy or rosbags): ROS messages carry no types


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB array; the message says why."""


def image_to_rgb(msg: Any) -> np.ndarray:
    """Return an RGB uint8 (H, W, 3) array for an Image or CompressedImage message."""
    if hasattr(msg, "format"):
        return _compressed_to_rgb(msg)
    enc = msg.encoding
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageDecodeError(f"unsupported encoding {enc!r}; expected one of "
                               f"{', '.join(SUPPORTED_ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0 or h * w > MAX_PIXELS:
        raise ImageDecodeError(f"image size {w}x{h} is empty or too large")
    row = w * _BYTES_PER_PIXEL[enc]
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if step < row or data.size < step * (h - 1) + row:
        raise ImageDecodeError(f"{enc} image {w}x{h} needs step >= {row} and "
                               f"{step * h} bytes; got step {step} and {data.size} bytes")
    if step != row:
        # Row padding: rosbags-image assumes packed rows, so repack first.
        data = np.ascontiguousarray(
            np.lib.stride_tricks.as_strided(data, (h, row), (step, 1)))
    packed = _PackedImage(enc, h, w, row, bool(msg.is_bigendian), data[: h * row])
    try:
        # Annotated for rosbags' own Image class; it reads only the fields _PackedImage has.
        return np.ascontiguousarray(image_to_cvimage(packed, "rgb8"))  # type: ignore[arg-type]
    except (ImageError, ValueError, TypeError) as err:
        raise ImageDecodeError(f"cannot convert {enc} image: {err}") from err


def _compressed_to_rgb(msg: Any) -> np.ndarray:
    # Plain "jpeg"/"png", or image_transport's "rgb8; jpeg compressed bgr8".
    tokens = msg.format.lower().replace(";", " ").split()
    fmt = next((t for t in tokens if t in SUPPORTED_FORMATS), None)
    if fmt is None:
        raise ImageDecodeError(f"unsupported CompressedImage format {msg.format!r}; "
                               f"expected jpeg or png")
    if len(msg.data) == 0:
        raise ImageDecodeError("CompressedImage has no data")
    try:
        img = compressed_image_to_cvimage(msg, "rgb8")
    except (AssertionError, ImageError, ValueError) as err:
        # rosbags-image asserts on a failed decode: a corrupt or truncated file.
        raise ImageDecodeError(f"cannot decode {fmt} data ({len(msg.data)} bytes): corrupt "
                               f"or truncated") from err
    if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageDecodeError(f"decoded {fmt} image has unusable shape {img.shape}")
    return np.ascontiguousarray(img)


class _PackedImage:
    """The fields rosbags-image reads, for a repacked buffer."""

    def __init__(self, encoding: str, height: int, width: int, step: int, is_bigendian: bool,
                 data: np.ndarray) -> None:
        self.encoding, self.height, self.width = encoding, height, width
        self.step, self.is_bigendian, self.data = step, is_bigendian, data


def to_uint8_array(buffer: bytes | np.ndarray) -> array.array:
    """A uint8[] field value: array.array avoids rclpy's slow per-element checks."""
    out = array.array("B")
    out.frombytes(buffer if isinstance(buffer, bytes) else np.ascontiguousarray(buffer).tobytes())
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
        raise ImageDecodeError(f"image_to_array takes {', '.join(_ARRAY_DTYPES)}; got "
                               f"{msg.encoding!r}")
    dtype = np.dtype(_ARRAY_DTYPES[msg.encoding])
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if step < w * dtype.itemsize or data.size < step * h:
        raise ImageDecodeError(f"{msg.encoding} image {w}x{h} needs step >= "
                               f"{w * dtype.itemsize} and {step * h} bytes; got step {step} "
                               f"and {data.size} bytes")
    rows = data[: step * h].reshape(h, step)[:, : w * dtype.itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w)
