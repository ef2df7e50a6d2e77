"""image_transport's compressedDepth written from its description (for tests of the
decoder, not from its source): ConfigHeader {int32 format = 0 (INV_DEPTH), float32
depthParam[2]} + a PNG, or cols, rows and an RVL stream (Wilson, ISS 2017)."""

from __future__ import annotations

import struct

import cv2
import numpy as np


def rvl_encode(values: np.ndarray) -> bytes:
    """RVL of uint16 ``values`` in row order: runs of (zeros, non-zeros, zigzag deltas of the
    non-zeros to the previous non-zero), each number in 3-bit groups low first, one per
    nibble with 0x8 = more follows, 8 nibbles per little-endian uint32 from the top."""
    nibbles: list[int] = []

    def vle(value: int) -> None:
        while True:
            group, value = value & 0x7, value >> 3
            nibbles.append(group | (0x8 if value else 0))
            if not value:
                return

    flat = [int(v) for v in np.asarray(values, np.uint16).ravel()]
    i, previous = 0, 0
    while i < len(flat):
        zeros = 0
        while i < len(flat) and flat[i] == 0:
            zeros, i = zeros + 1, i + 1
        run = []
        while i < len(flat) and flat[i] != 0:
            run.append(flat[i])
            i += 1
        vle(zeros)
        vle(len(run))
        for current in run:
            delta = current - previous
            vle((delta << 1) ^ (delta >> 31))  # zigzag: 0, -1, 1, -2 -> 0, 1, 2, 3
            previous = current
    nibbles += [0] * (-len(nibbles) % 8)
    words = [int("".join(f"{n:x}" for n in nibbles[k:k + 8]), 16)
             for k in range(0, len(nibbles), 8)]
    return struct.pack(f"<{len(words)}I", *words)


def quantise_inverse_depth(metres: np.ndarray, z0: float = 100.0, depth_max: float = 10.0
                           ) -> tuple[np.ndarray, float, float]:
    """32FC1 -> uint16 inverse depth as the transport does: v = A / z + B, 0 where z is not
    below ``depth_max`` (NaN included); returns (v, A, B)."""
    a = np.float32(z0 * (z0 + 1.0))
    b = np.float32(1.0 - a / depth_max)
    z = np.asarray(metres, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = z < depth_max
        v = np.zeros(z.shape, np.uint16)
        v[keep] = np.clip(a / z[keep] + b, 0, 65535).astype(np.uint16)
    return v, float(a), float(b)


def compressed_depth_data(depth: np.ndarray, codec: str) -> tuple[str, bytes]:
    """(format, data) of a compressedDepth CompressedImage of a 16UC1 (uint16 mm) or 32FC1
    (float32 m) image."""
    if depth.dtype == np.uint16:
        encoding, values, params = "16UC1", depth, (0.0, 0.0)
    else:
        encoding = "32FC1"
        values, a, b = quantise_inverse_depth(depth)
        params = (a, b)
    if codec == "png":
        ok, buf = cv2.imencode(".png", values)
        assert ok
        payload = buf.tobytes()
    else:
        payload = struct.pack("<II", values.shape[1], values.shape[0]) + rvl_encode(values)
    return f"{encoding}; compressedDepth {codec}", struct.pack("<iff", 0, *params) + payload
