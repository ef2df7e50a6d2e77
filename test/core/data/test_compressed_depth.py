"""compressedDepth decoding: RVL against an encoder written from the paper's description,
PNG against OpenCV, 32FC1 inverse depth by the transport's formula, bad headers named."""

import struct

import cv2
import numpy as np
import pytest

from mtl_split_core.data.compressed_depth import (
    HeaderError,
    PayloadError,
    decode,
    decode_rvl,
    parse_format,
)
from support.depth_transport import compressed_depth_data, quantise_inverse_depth, rvl_encode


def _depth_mm(seed=0, shape=(48, 64)):
    """Millimetres with holes (0), large jumps and long constant runs."""
    rng = np.random.default_rng(seed)
    mm = (rng.integers(300, 9000, shape) // 50 * 50).astype(np.uint16)
    mm[:, :10] = 0
    mm[20:25] = 0
    mm[30, 30:] = 65535
    mm[31, ::3] = 1
    return mm


@pytest.mark.parametrize("values", [
    np.zeros(7, np.uint16), np.full(9, 65535, np.uint16), np.array([5, 0, 0, 4, 65535, 1]),
    _depth_mm().ravel(), np.arange(1, 1000, dtype=np.uint16)])
def test_rvl_round_trip(values):
    values = np.asarray(values, np.uint16)
    np.testing.assert_array_equal(decode_rvl(rvl_encode(values), values.size), values)


def test_rvl_streams_that_end_early_or_overrun_are_payload_errors():
    stream = rvl_encode(_depth_mm().ravel())
    with pytest.raises(PayloadError, match="ends after"):
        decode_rvl(stream[:len(stream) // 8 * 4], 48 * 64)
    with pytest.raises(PayloadError, match="past the image"):
        decode_rvl(stream, 100)
    with pytest.raises(PayloadError, match="whole 32-bit words"):
        decode_rvl(stream[:-1], 48 * 64)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_16uc1_is_lossless(codec):
    mm = _depth_mm(1)
    fmt, data = compressed_depth_data(mm, codec)
    out = decode(fmt, data)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, mm)
    if codec == "png":  # the payload is what OpenCV writes and reads
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data[12:], np.uint8),
                                                   cv2.IMREAD_UNCHANGED), out)


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_32fc1_is_inverse_depth_decoded_by_the_transport_formula(codec):
    mm = _depth_mm(2)
    metres = np.where((mm >= 300) & (mm <= 9000), mm / 1000, np.nan).astype(np.float32)
    metres[0, 20] = 50.0  # beyond the encoder's maximum: invalid
    fmt, data = compressed_depth_data(metres, codec)
    out = decode(fmt, data)
    v, a, b = quantise_inverse_depth(metres)
    want = np.where(v > 0, np.float32(a) / (v.astype(np.float32) - np.float32(b)), np.nan)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_allclose(out[v > 0], want[v > 0], rtol=1e-6)
    valid = v > 0
    assert np.isnan(out[0, 20]) and np.abs(out[valid] - metres[valid]).max() < 0.01


@pytest.mark.parametrize("fmt, data, message", [
    ("16UC1; compressedDepth", b"", "expected \"ENCODING; compressedDepth CODEC\""),
    ("16UC1; compressedDepth jpeg", b"", "CODEC png or rvl"),
    ("8UC1; compressedDepth png", b"", "ENCODING 16UC1 or 32FC1"),
    ("16UC1; compressedDepth png", b"\0" * 8, "8 bytes: shorter than the 12-byte"),
    ("16UC1; compressedDepth png", struct.pack("<iff", 1, 0, 0), "ConfigHeader format 1"),
    ("32FC1; compressedDepth rvl", struct.pack("<iff", 0, float("nan"), 0), "depthParam"),
])
def test_bad_headers_are_header_errors(fmt, data, message):
    with pytest.raises(HeaderError, match=message):
        decode(fmt, data)


def test_corrupt_payloads_are_payload_errors():
    fmt, data = compressed_depth_data(_depth_mm(), "png")
    with pytest.raises(PayloadError, match="not a 16-bit single-channel PNG"):
        decode(fmt, data[:40])
    fmt, data = compressed_depth_data(_depth_mm(), "rvl")
    with pytest.raises(PayloadError, match="RVL image 0x48"):
        decode(fmt, data[:12] + struct.pack("<II", 0, 48) + data[20:])
    assert parse_format(" 32FC1 ;  compressedDepth   rvl") == ("32FC1", "rvl")
