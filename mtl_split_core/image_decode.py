"""Camera pixels in any sensor_msgs colour encoding (or a JPEG/PNG CompressedImage) -> RGB.

ROS-free: it takes the message fields, so live nodes (mtl_split_ros.image_msg) and offline bag
tools share one conversion. Every conversion is OpenCV's (the same codes cv_bridge uses);
16-bit colour is scaled to 8 bit as cv_bridge does (x 255/65535). A message that cannot be
converted raises ``ImageDecodeError`` whose ``reason`` names the cause, one per cause, so a node
counts them apart on /diagnostics; every size is checked before a pixel is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

MAX_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Layout:
    """How one encoding lays out its pixels and how OpenCV turns them into RGB."""

    channels: int          # samples per pixel in a row (Bayer and the NV12/NV21 planes: 1)
    bits: int              # 8 or 16 per sample
    to_rgb: int | None     # cv2.cvtColor code; None = already RGB
    even: tuple[bool, bool] = (False, False)  # (width, height) must be even (mosaic/chroma)
    plane_rows: float = 1.0  # buffer rows per image row: 1.5 for NV12/NV21 (Y + UV plane)


def _bayer(code: int, bits: int) -> Layout:
    return Layout(1, bits, code, even=(True, True))


_COLOUR = {  # name: (channels, code); each also in 16 bit as <name>16
    "rgb": (3, None), "bgr": (3, cv2.COLOR_BGR2RGB), "rgba": (4, cv2.COLOR_RGBA2RGB),
    "bgra": (4, cv2.COLOR_BGRA2RGB), "mono": (1, cv2.COLOR_GRAY2RGB)}
# OpenCV names a Bayer pattern by the 2x2 block starting at pixel (1, 1), sensor_msgs by the one
# at (0, 0): hence rggb -> BayerBG (as in cv_bridge).
_BAYER = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
          "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}
_UYVY = Layout(2, 8, cv2.COLOR_YUV2RGB_UYVY, even=(True, False))
_YUYV = Layout(2, 8, cv2.COLOR_YUV2RGB_YUY2, even=(True, False))

# Every sensor_msgs/image_encodings.hpp (Kilted) colour encoding OpenCV converts directly.
LAYOUTS: dict[str, Layout] = {
    **{f"{name}{bits}": Layout(ch, bits, code)
       for name, (ch, code) in _COLOUR.items() for bits in (8, 16)},
    **{f"bayer_{pattern}{bits}": _bayer(code, bits)
       for pattern, code in _BAYER.items() for bits in (8, 16)},
    "yuv422": _UYVY, "uyvy": _UYVY, "yuv422_yuy2": _YUYV, "yuyv": _YUYV,
    "nv12": Layout(1, 8, cv2.COLOR_YUV2RGB_NV12, even=(True, True), plane_rows=1.5),
    "nv21": Layout(1, 8, cv2.COLOR_YUV2RGB_NV21, even=(True, True), plane_rows=1.5),
}
# Colour encodings sensor_msgs defines that neither OpenCV nor cv_bridge converts to RGB.
UNCONVERTED = {"nv24": "nv24 (YUV 4:4:4) has no OpenCV conversion and cv_bridge does not "
                       "convert it either; publish nv12, yuv422 or rgb8"}
# Encodings without colour: OpenCV matrix types (depth, disparity, raw data).
_NO_COLOUR = re.compile(r"(8|16|32|64)(U|S|F)C[0-9]*")

JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
# image_transport's compressedDepth puts a 12-byte header (format enum, 2 floats) before the PNG.
_DEPTH_HEADER_BYTES = 12

# Reasons (counted as rejected_<reason> on /diagnostics).
UNKNOWN_ENCODING = "image_unknown_encoding"
NOT_COLOUR = "image_not_colour"
UNCONVERTED_ENCODING = "image_unconverted_encoding"
BAD_SIZE = "image_size"
ODD_SIZE = "image_odd_size"
STEP_TOO_SMALL = "image_step"
DATA_LENGTH = "image_data_length"
COMPRESSED_EMPTY = "image_compressed_empty"
COMPRESSED_FORMAT = "image_compressed_format"
COMPRESSED_CORRUPT = "image_compressed_corrupt"
COMPRESSED_DEPTH = "image_compressed_depth"


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into RGB; ``reason`` names the cause, the
    message says what was wrong and what was expected."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def raw_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
               data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/Image's fields."""
    layout = _layout(encoding)
    if height <= 0 or width <= 0 or height * width > MAX_PIXELS:
        raise ImageDecodeError(BAD_SIZE, f"{encoding} image size {width}x{height} is empty or "
                                         f"larger than {MAX_PIXELS} pixels")
    need_w, need_h = layout.even
    if (need_w and width % 2) or (need_h and height % 2):
        sides = "width and height" if need_w and need_h else "width"
        raise ImageDecodeError(ODD_SIZE, f"{encoding} needs an even {sides} (2x2 mosaic or "
                                         f"shared chroma); got {width}x{height}")
    sample_bytes = layout.bits // 8
    row = width * layout.channels * sample_bytes
    if step < row:
        raise ImageDecodeError(STEP_TOO_SMALL, f"{encoding} image {width}x{height} needs step "
                                               f">= {row} bytes; got {step}")
    rows = int(height * layout.plane_rows)
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    if buffer.size != step * rows:
        raise ImageDecodeError(DATA_LENGTH, f"{encoding} image {width}x{height} with step "
                                            f"{step} needs {step * rows} bytes; got "
                                            f"{buffer.size}")
    packed = np.ascontiguousarray(buffer.reshape(rows, step)[:, :row])  # drop row padding
    if sample_bytes == 2:
        packed = packed.view(">u2" if is_bigendian else "<u2").astype(np.uint16)
    pixels = packed.reshape(rows, width, layout.channels)
    if layout.channels == 1:
        pixels = pixels[..., 0]
    rgb = pixels if layout.to_rgb is None else cv2.cvtColor(pixels, layout.to_rgb)
    return _to_uint8(rgb)


def compressed_to_rgb(fmt: str, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a sensor_msgs/CompressedImage's fields. The content decides
    (JPEG or PNG by its magic bytes), so an empty or unknown ``fmt`` still decodes; ``fmt``
    names the mistake when the content is not a colour image."""
    tokens = fmt.replace(";", " ").split()
    if "compresseddepth" in (t.lower() for t in tokens):
        raise _compressed_depth(fmt)
    if tokens:  # image_transport's "<source encoding>; <jpeg|png> compressed <encoding>"
        _colour_source(tokens[0])
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    if buffer.size == 0:
        raise ImageDecodeError(COMPRESSED_EMPTY, f"CompressedImage (format {fmt!r}) has no data")
    head = buffer[:32].tobytes()
    kind = "jpeg" if head.startswith(JPEG_MAGIC) else "png" if head.startswith(PNG_MAGIC) else ""
    if not kind:
        if head[_DEPTH_HEADER_BYTES:].startswith(PNG_MAGIC):
            raise _compressed_depth(fmt)
        named = next((t for t in (t.lower() for t in tokens) if t in COMPRESSED_FORMATS), None)
        if named:
            raise ImageDecodeError(COMPRESSED_CORRUPT, f"CompressedImage says {named} but its "
                                   f"{buffer.size} bytes are not {named}: corrupt")
        raise ImageDecodeError(COMPRESSED_FORMAT, f"CompressedImage format {fmt!r}: content is "
                               "neither JPEG nor PNG; publish jpeg or png (image_transport "
                               "'compressed'), or the raw Image")
    size = _peek_size(kind, buffer)
    if size is not None and (size[0] * size[1] > MAX_PIXELS or 0 in size):
        raise ImageDecodeError(BAD_SIZE, f"{kind} image size {size[0]}x{size[1]} is empty or "
                                         f"larger than {MAX_PIXELS} pixels")
    pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype not in (np.uint8, np.uint16) or pixels.size == 0:
        raise ImageDecodeError(COMPRESSED_CORRUPT, f"cannot decode {kind} data ({buffer.size} "
                                                   "bytes): corrupt or truncated")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}.get(channels)
    if code is None:
        raise ImageDecodeError(COMPRESSED_CORRUPT, f"{kind} image has {channels} channels")
    return _to_uint8(cv2.cvtColor(pixels, code))


def _layout(encoding: str) -> Layout:
    layout = LAYOUTS.get(encoding)
    if layout is not None:
        return layout
    _colour_source(encoding)
    raise ImageDecodeError(UNKNOWN_ENCODING, f"unknown encoding {encoding!r}; expected a "
                           f"sensor_msgs colour encoding: {', '.join(LAYOUTS)}")


def _colour_source(encoding: str) -> None:
    """Raise for an encoding sensor_msgs defines that this module does not turn into RGB."""
    if encoding in UNCONVERTED:
        raise ImageDecodeError(UNCONVERTED_ENCODING, UNCONVERTED[encoding])
    if _NO_COLOUR.fullmatch(encoding):
        raise ImageDecodeError(NOT_COLOUR, f"encoding {encoding!r} carries no colour (a depth "
                               "or raw-data image?): wire the colour image topic")


def _compressed_depth(fmt: str) -> ImageDecodeError:
    return ImageDecodeError(COMPRESSED_DEPTH, f"this is a compressedDepth image (format "
                            f"{fmt!r}): wire the colour topic")


def _peek_size(kind: str, buffer: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a JPEG/PNG header, so a tiny file claiming a huge image is refused
    before OpenCV allocates it; None where the header does not say (then decoding fails)."""
    data = buffer.tobytes()
    if kind == "png":  # IHDR is always the first chunk: width, height at bytes 16..24
        return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) \
            if len(data) >= 24 else None
    pos = 2  # JPEG: walk the marker segments up to the start of frame (SOFn)
    while pos + 9 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """16-bit samples to 8 bit as cv_bridge converts them (x 255/65535, rounded)."""
    if rgb.dtype == np.uint16:
        rgb = cv2.convertScaleAbs(rgb, alpha=255.0 / 65535.0)
    return np.ascontiguousarray(rgb)
