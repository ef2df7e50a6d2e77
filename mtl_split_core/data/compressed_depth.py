"""Depth as image_transport's ``compressedDepth`` transport records it (what
realsense2_camera + image_transport put in a bag), decoded to the depth image it came from.

A ``sensor_msgs/CompressedImage`` whose ``format`` is ``"<encoding>; compressedDepth <codec>"``
(encoding 16UC1 or 32FC1, codec png or rvl). ``data`` = a 12-byte ``ConfigHeader`` (int32
format: 0 = INV_DEPTH, the only one defined; float32 depthParam[2]; little-endian as the
robots that write it) followed by the payload:

- 16UC1: the depth image itself (millimetres), lossless;
- 32FC1: inverse depth quantised to uint16, ``v = A / z + B`` (0 = invalid or beyond the
  encoder's maximum), decoded as ``z = A / (v - B)`` with A, B = depthParam;
- png: a 16-bit single-channel PNG; rvl: uint32 cols, uint32 rows, then RVL.

RVL (A. D. Wilson, "Fast Lossless Depth Image Compression", ISS 2017): the image in row
order as alternating runs, (number of zeros, number of non-zeros, then each non-zero value as
the zigzag-coded difference to the previous non-zero value); every number a variable-length
code of 3-bit groups, low group first, each in a 4-bit nibble whose high bit says another
follows; nibbles fill 32-bit little-endian words from the most significant end, the last word
padded with zero nibbles.
"""

from __future__ import annotations

import math
import struct

import cv2
import numpy as np

HEADER = struct.Struct("<iff")
INV_DEPTH = 0
ENCODINGS = ("16UC1", "32FC1")
CODECS = ("png", "rvl")
MAX_SIDE = 16384


class HeaderError(ValueError):
    """A format string or ConfigHeader this decoder cannot read (every message of the topic
    would fail the same way)."""


class PayloadError(ValueError):
    """One message's compressed pixels are corrupt or truncated."""


def parse_format(fmt: str) -> tuple[str, str]:
    """(encoding, codec) of ``"16UC1; compressedDepth png"``; HeaderError otherwise."""
    encoding, sep, rest = fmt.partition(";")
    words = rest.split()
    if not sep or len(words) != 2 or words[0] != "compressedDepth" or \
            encoding.strip() not in ENCODINGS or words[1] not in CODECS:
        raise HeaderError(f"format {fmt!r}: expected \"ENCODING; compressedDepth CODEC\" with "
                          f"ENCODING {' or '.join(ENCODINGS)} and CODEC {' or '.join(CODECS)}")
    return encoding.strip(), words[1]


def is_compressed_depth(fmt: str) -> bool:
    return "compressedDepth" in fmt


def decode(fmt: str, data: bytes) -> np.ndarray:
    """The depth image: (H, W) uint16 millimetres for 16UC1, float32 metres (NaN = invalid)
    for 32FC1."""
    encoding, codec = parse_format(fmt)
    if len(data) < HEADER.size:
        raise HeaderError(f"{len(data)} bytes: shorter than the {HEADER.size}-byte "
                          "compressedDepth ConfigHeader")
    kind, quant_a, quant_b = HEADER.unpack_from(data)
    if kind != INV_DEPTH:
        raise HeaderError(f"ConfigHeader format {kind}: expected {INV_DEPTH} (INV_DEPTH)")
    if encoding == "32FC1" and not (math.isfinite(quant_a) and quant_a > 0
                                    and math.isfinite(quant_b)):
        raise HeaderError(f"ConfigHeader depthParam ({quant_a}, {quant_b}): a 32FC1 image "
                          "needs finite quantisation parameters with depthParam[0] > 0")
    payload = data[HEADER.size:]
    values = _rvl_image(payload) if codec == "rvl" else _png_image(payload)
    if encoding == "16UC1":
        return values
    depth = np.full(values.shape, np.nan, np.float32)
    valid = values > 0
    with np.errstate(divide="ignore"):
        depth[valid] = np.float32(quant_a) / (values[valid].astype(np.float32)
                                              - np.float32(quant_b))
    return depth


def _png_image(payload: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED) \
        if payload else None
    if image is None or image.ndim != 2 or image.dtype != np.uint16:
        raise PayloadError(f"payload of {len(payload)} bytes is not a 16-bit single-channel "
                           "PNG")
    return image


def _rvl_image(payload: bytes) -> np.ndarray:
    if len(payload) < 8:
        raise PayloadError(f"RVL payload of {len(payload)} bytes has no cols/rows")
    cols, rows = struct.unpack_from("<II", payload)
    if not (0 < cols <= MAX_SIDE and 0 < rows <= MAX_SIDE):
        raise PayloadError(f"RVL image {cols}x{rows}: expected sides 1..{MAX_SIDE}")
    return decode_rvl(payload[8:], cols * rows).reshape(rows, cols)


def _vle_values(stream: bytes) -> np.ndarray:
    """Every variable-length number in an RVL stream, in order (int64)."""
    usable = len(stream) // 4 * 4
    if usable != len(stream):
        raise PayloadError(f"RVL stream of {len(stream)} bytes is not whole 32-bit words")
    words = np.frombuffer(stream[:usable], "<u4").astype(np.int64)
    nibbles = ((words[:, None] >> np.arange(28, -1, -4)) & 0xF).ravel()
    last = (nibbles & 0x8) == 0              # the nibble that ends a number
    if not len(nibbles):
        return np.zeros(0, np.int64)
    ends = np.flatnonzero(last)
    if not len(ends):
        raise PayloadError("RVL stream ends inside a number")
    nibbles = nibbles[:ends[-1] + 1]         # trailing continuation nibbles: no number
    starts = np.concatenate([[0], ends[:-1] + 1])
    number = np.repeat(np.arange(len(ends)), ends - starts + 1)
    group = np.arange(len(nibbles)) - starts[number]
    if group.max(initial=0) > 10:            # 11 groups of 3 bits pass any 32-bit count
        raise PayloadError("RVL number longer than 32 bits")
    return np.bincount(number, (nibbles & 0x7) << (3 * group), len(ends)).astype(np.int64)


def decode_rvl(stream: bytes, pixels: int) -> np.ndarray:
    """``pixels`` uint16 values from an RVL stream (without the cols/rows prefix)."""
    values = _vle_values(stream)
    out = np.zeros(pixels, np.uint16)
    deltas: list[np.ndarray] = []
    where: list[tuple[int, int]] = []       # (first pixel, count) of each non-zero run
    done = i = 0
    while done < pixels:
        if i + 2 > len(values):
            raise PayloadError(f"RVL stream ends after {done} of {pixels} pixels")
        zeros, nonzeros = int(values[i]), int(values[i + 1])
        if done + zeros + nonzeros > pixels:
            raise PayloadError(f"RVL run past the image's {pixels} pixels")
        if i + 2 + nonzeros > len(values):
            raise PayloadError(f"RVL stream ends after {done + zeros} of {pixels} pixels")
        done += zeros
        deltas.append(values[i + 2:i + 2 + nonzeros])
        where.append((done, nonzeros))
        done += nonzeros
        i += 2 + nonzeros
    if deltas:
        zigzag = np.concatenate(deltas)
        # The previous value carries across zero runs: the non-zero pixels are one sum.
        current = np.cumsum((zigzag >> 1) ^ -(zigzag & 1)) & 0xFFFF
        index = np.concatenate([np.arange(s, s + c) for s, c in where])
        out[index] = current
    return out
