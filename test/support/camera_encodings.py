"""What cameras publish, made from a known RGB image with OpenCV's forward conversions.

Shared by the decoder's unit tests and the probe through a real edge node, so both send the
same bytes a driver would: Bayer mosaics, packed YUV 4:2:2, NV12/NV21, 16-bit, big-endian.
"""

from __future__ import annotations

import cv2
import numpy as np

_BAYER_OFFSETS = {  # pattern: (row, col) of R and of B in the 2x2 block at (0, 0)
    "rggb": ((0, 0), (1, 1)), "bggr": ((1, 1), (0, 0)),
    "gbrg": ((1, 0), (0, 1)), "grbg": ((0, 1), (1, 0))}
# Every sensor_msgs colour encoding (image_encodings.hpp) and the other encodings a colour
# topic may see by mistake; CONVERTED ones must decode.
CONVERTED = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "rgba16", "bgra16",
             "mono16", *(f"bayer_{p}{b}" for b in (8, 16) for p in _BAYER_OFFSETS),
             "yuv422", "uyvy", "yuv422_yuy2", "yuyv", "nv12", "nv21")
NOT_CONVERTED = ("nv24", "8UC3", "16UC1", "32FC1")


def smooth_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """Gradients in each channel: demosaicing and chroma subsampling restore them closely, and
    swapped channels or a wrong Bayer phase show as a large error."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 40 + 170 * x / (width - 1)
    g = 30 + 180 * y / (height - 1)
    b = 220 - 150 * (x + y) / (width + height - 2)
    return np.dstack([r, g, b]).round().astype(np.uint8)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The pixel buffer a camera would publish for ``rgb`` (H, W[, C]); packed rows.
    NV12/NV21 give (H * 3/2, W): the Y plane, then the interleaved chroma plane."""
    bits16 = encoding.endswith("16") and not encoding[0].isdigit()
    base = encoding[:-2] + "8" if bits16 else encoding
    out = _encode8(rgb, base)
    return out.astype(np.uint16) * 257 if bits16 else out


def _encode8(rgb: np.ndarray, encoding: str) -> np.ndarray:
    forward = {"rgb8": None, "bgr8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGB2RGBA,
               "bgra8": cv2.COLOR_RGB2BGRA, "mono8": cv2.COLOR_RGB2GRAY,
               "yuv422": cv2.COLOR_RGB2YUV_UYVY, "uyvy": cv2.COLOR_RGB2YUV_UYVY,
               "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUY2, "yuyv": cv2.COLOR_RGB2YUV_YUY2}
    if encoding in forward:
        code = forward[encoding]
        return rgb.copy() if code is None else cv2.cvtColor(rgb, code)
    if encoding.startswith("bayer_"):
        return mosaic(rgb, encoding[6:10])
    if encoding in ("nv12", "nv21", "nv24"):
        return _semi_planar(rgb, encoding)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    no_colour = {"8UC3": rgb.copy(), "16UC1": grey.astype(np.uint16) * 10,
                 "32FC1": grey.astype(np.float32) / 100}  # raw data, depth in mm and m
    if encoding in no_colour:
        return no_colour[encoding]
    raise ValueError(f"no test encoder for {encoding!r}")


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """A Bayer sensor's samples of ``rgb``: each pixel keeps the one colour its filter passes."""
    (ry, rx), (by, bx) = _BAYER_OFFSETS[pattern]
    out = rgb[..., 1].copy()
    out[ry::2, rx::2] = rgb[ry::2, rx::2, 0]
    out[by::2, bx::2] = rgb[by::2, bx::2, 2]
    return out


def _semi_planar(rgb: np.ndarray, encoding: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y plane, then U and V planes
    y = i420[:h]
    u = i420[h: h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4:].reshape(h // 2, w // 2)
    first, second = (v, u) if encoding == "nv21" else (u, v)
    if encoding == "nv24":  # full-resolution chroma (test input only: it is not decoded)
        first, second = (np.repeat(np.repeat(p, 2, 0), 2, 1) for p in (first, second))
    chroma = np.dstack([first, second]).reshape(-1, w)  # rows of the Y plane's width
    return np.vstack([y, chroma])


def image_fields(buffer: np.ndarray, encoding: str, *, pad: int = 0,
                 big_endian: bool = False) -> dict:
    """sensor_msgs/Image fields (no header) for an ``encode`` buffer, rows padded by ``pad``
    bytes as some drivers do."""
    rows = buffer.shape[0]
    raw = buffer.astype(">u2" if big_endian else "<u2") if buffer.dtype == np.uint16 else buffer
    flat = np.ascontiguousarray(raw).view(np.uint8).reshape(rows, -1)
    if pad:
        flat = np.hstack([flat, np.full((rows, pad), 0xAB, np.uint8)])
    height = rows * 2 // 3 if encoding in ("nv12", "nv21") else rows // 3 \
        if encoding == "nv24" else rows
    return {"encoding": encoding, "height": height, "width": buffer.shape[1],
            "step": flat.shape[1], "is_bigendian": int(big_endian), "data": flat.tobytes()}


def compressed(rgb: np.ndarray, kind: str) -> bytes:
    """JPEG (quality 95) or lossless PNG bytes of ``rgb``."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", bgr,
                           [cv2.IMWRITE_JPEG_QUALITY, 95] if kind == "jpeg" else [])
    assert ok
    return buf.tobytes()
