"""Every colour encoding a camera publishes becomes the RGB OpenCV's reference conversion gives;
every malformed message fails with its own reason before a pixel is converted."""

import cv2
import numpy as np
import pytest

from mtl_split_core import image_decode as dec
from mtl_split_core.image_decode import ImageDecodeError, compressed_to_rgb, raw_to_rgb
from support.camera_encodings import (
    CONVERTED,
    NOT_CONVERTED,
    compressed,
    encode,
    image_fields,
    mosaic,
    smooth_rgb,
)

RGB = smooth_rgb()
NOISE = np.random.default_rng(0).integers(0, 256, RGB.shape, np.uint8)  # exact-path checks


def _decode(fields: dict) -> np.ndarray:
    return raw_to_rgb(fields["encoding"], fields["height"], fields["width"], fields["step"],
                      bool(fields["is_bigendian"]), fields["data"])


def _reason(call, *args) -> str:
    with pytest.raises(ImageDecodeError) as info:
        call(*args)
    return info.value.reason


def test_every_listed_encoding_is_known_and_every_known_one_is_listed():
    assert set(CONVERTED) == set(dec.LAYOUTS)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16",
                                      "rgba16", "bgra16"])
def test_rgb_family_is_exact(encoding):
    # 16 bit: x * 257 scaled by 255/65535 (cv_bridge) gives x back exactly.
    assert np.array_equal(_decode(image_fields(encode(NOISE, encoding), encoding)), NOISE)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_becomes_grey_rgb(encoding):
    grey = cv2.cvtColor(NOISE, cv2.COLOR_RGB2GRAY)
    assert np.array_equal(_decode(image_fields(encode(NOISE, encoding), encoding)),
                          np.dstack([grey] * 3))


@pytest.mark.parametrize("encoding", [e for e in CONVERTED if e.startswith("bayer_")
                                      or e in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv",
                                               "nv12", "nv21")])
def test_mosaic_and_yuv_match_opencv_and_restore_the_image(encoding):
    buffer = encode(RGB, encoding)
    out = _decode(image_fields(buffer, encoding))
    # Same as OpenCV's conversion of the same bytes (cv_bridge's codes) ...
    layout = dec.LAYOUTS[encoding]
    pixels = buffer if buffer.ndim == 2 or buffer.shape[2] > 1 else buffer[..., 0]
    reference = cv2.cvtColor(pixels, layout.to_rgb)
    if reference.dtype == np.uint16:
        reference = np.round(reference / 257.0).astype(np.uint8)
    assert out.shape == RGB.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - reference).max() <= 1
    # ... and close to the image the camera saw (a wrong Bayer phase or swapped chroma
    # plane is off by tens of levels): inside a 2-pixel border, demosaicing's edge.
    error = np.abs(out.astype(int) - RGB)[2:-2, 2:-2]
    assert error.mean() < 3 and error.max() <= 12, (error.mean(), error.max())


def test_wrong_bayer_phase_would_be_caught():
    # The check above can fail: decoding rggb samples as bggr swaps red and blue.
    height, width = RGB.shape[:2]
    swapped = raw_to_rgb("bayer_bggr8", height, width, width, False,
                         mosaic(RGB, "rggb").tobytes())
    assert np.abs(swapped.astype(int) - RGB)[2:-2, 2:-2].mean() > 20


@pytest.mark.parametrize("encoding", ["rgb8", "bgra16", "mono16", "bayer_grbg16", "yuyv",
                                      "nv12", "nv21"])
def test_row_padding_and_big_endian(encoding):
    buffer = encode(RGB, encoding)
    packed = _decode(image_fields(buffer, encoding))
    assert np.array_equal(_decode(image_fields(buffer, encoding, pad=6)), packed)
    if buffer.dtype == np.uint16:
        assert np.array_equal(_decode(image_fields(buffer, encoding, big_endian=True)), packed)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
@pytest.mark.parametrize("fmt", ["{kind}", "", "rgb8; {kind} compressed bgr8", "h264",
                                 "bgr8; png compressed bgr8"])
def test_compressed_decodes_by_content(kind, fmt):
    # The format string may be empty, unknown or even name the other codec: content decides.
    out = compressed_to_rgb(fmt.format(kind=kind), compressed(NOISE, kind))
    if kind == "png":
        assert np.array_equal(out, NOISE)
    else:
        assert out.shape == NOISE.shape
        assert np.abs(compressed_to_rgb("", compressed(RGB, kind)).astype(int) - RGB).mean() < 2


def test_compressed_grey_alpha_and_16_bit_png():
    grey = NOISE[..., 0]
    assert np.array_equal(compressed_to_rgb("png", cv2.imencode(".png", grey)[1]),
                          np.dstack([grey] * 3))
    bgra = cv2.cvtColor(NOISE, cv2.COLOR_RGB2BGRA)
    assert np.array_equal(compressed_to_rgb("png", cv2.imencode(".png", bgra)[1]), NOISE)
    bgr16 = cv2.cvtColor(NOISE, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257
    assert np.array_equal(compressed_to_rgb("", cv2.imencode(".png", bgr16)[1]), NOISE)


def _raw(encoding="rgb8", width=4, height=4, step=None, length=None, big=False):
    layout = dec.LAYOUTS.get(encoding, dec.LAYOUTS["rgb8"])
    step = width * layout.channels * layout.bits // 8 if step is None else step
    length = int(step * height * layout.plane_rows) if length is None else length
    return encoding, height, width, step, big, bytes(length)


@pytest.mark.parametrize("reason, args", [
    (dec.UNKNOWN_ENCODING, _raw("rgb9")),
    (dec.UNKNOWN_ENCODING, _raw("")),
    (dec.UNKNOWN_ENCODING, _raw("RGB8")),
    (dec.NOT_COLOUR, _raw("32FC1")),
    (dec.NOT_COLOUR, _raw("16UC1")),
    (dec.NOT_COLOUR, _raw("8UC3")),
    (dec.UNCONVERTED_ENCODING, _raw("nv24")),
    (dec.BAD_SIZE, _raw(width=0, height=0)),
    (dec.BAD_SIZE, _raw(width=8193, height=8192, length=0)),
    (dec.ODD_SIZE, _raw("bayer_rggb8", width=5, height=6)),
    (dec.ODD_SIZE, _raw("bayer_bggr16", width=6, height=5)),
    (dec.ODD_SIZE, _raw("yuv422", width=5)),
    (dec.ODD_SIZE, _raw("yuv422_yuy2", width=7)),
    (dec.ODD_SIZE, _raw("nv12", height=5)),
    (dec.ODD_SIZE, _raw("nv21", width=3)),
    (dec.STEP_TOO_SMALL, _raw(step=11)),
    (dec.STEP_TOO_SMALL, _raw("mono16", step=7)),
    (dec.DATA_LENGTH, _raw(length=47)),
    (dec.DATA_LENGTH, _raw(length=49)),
    (dec.DATA_LENGTH, _raw("nv12", length=16)),  # the Y plane without its chroma
])
def test_malformed_raw_images_have_their_own_reason(reason, args):
    assert _reason(raw_to_rgb, *args) == reason


def test_odd_size_is_fine_where_nothing_is_shared():
    assert raw_to_rgb(*_raw("yuv422", width=4, height=3)).shape == (3, 4, 3)
    assert raw_to_rgb(*_raw("bgr16", width=3, height=5)).shape == (5, 3, 3)


def _depth_png() -> bytes:
    png = cv2.imencode(".png", np.full((4, 4), 1500, np.uint16))[1].tobytes()
    return bytes(12) + png  # image_transport's compressedDepth: config header, then PNG


def _huge_png() -> bytes:
    png = bytearray(compressed(NOISE, "png"))
    png[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR claims 100000 x 100000
    return bytes(png)


def _huge_jpeg() -> bytes:
    jpeg = bytearray(compressed(NOISE, "jpeg"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = (60_000).to_bytes(2, "big") * 2
    return bytes(jpeg)


@pytest.mark.parametrize("reason, fmt, data", [
    (dec.COMPRESSED_EMPTY, "jpeg", b""),
    (dec.COMPRESSED_FORMAT, "h264", b"\x00\x00\x00\x01\x67 not an image"),
    (dec.COMPRESSED_FORMAT, "", b"GIF89a..."),
    (dec.COMPRESSED_CORRUPT, "jpeg", b"garbage"),
    (dec.COMPRESSED_CORRUPT, "jpeg", b"\xff\xd8\xff garbage"),
    (dec.COMPRESSED_CORRUPT, "png", compressed(NOISE, "png")[:60]),
    (dec.COMPRESSED_DEPTH, "16UC1; compressedDepth png", _depth_png()),
    (dec.COMPRESSED_DEPTH, "32FC1; compressedDepth rvl", b"\x01" * 40),
    (dec.COMPRESSED_DEPTH, "", _depth_png()),
    (dec.NOT_COLOUR, "16UC1; png compressed mono16", compressed(NOISE, "png")),
    (dec.BAD_SIZE, "png", _huge_png()),
    (dec.BAD_SIZE, "", _huge_jpeg()),
])
def test_bad_compressed_images_have_their_own_reason(reason, fmt, data):
    assert _reason(compressed_to_rgb, fmt, data) == reason


def test_reasons_say_what_to_do():
    with pytest.raises(ImageDecodeError, match="compressedDepth image .*wire the colour topic"):
        compressed_to_rgb("16UC1; compressedDepth png", _depth_png())
    with pytest.raises(ImageDecodeError, match="bayer_rggb8 needs an even width and height"):
        raw_to_rgb(*_raw("bayer_rggb8", width=5, height=5))
    with pytest.raises(ImageDecodeError, match="unknown encoding 'rgb9'.*bayer_rggb8.*nv21"):
        raw_to_rgb(*_raw("rgb9"))


def test_not_converted_encodings_are_rejected():
    for encoding in NOT_CONVERTED:
        fields = image_fields(encode(RGB, encoding), encoding)
        assert _reason(_decode, fields) in (dec.NOT_COLOUR, dec.UNCONVERTED_ENCODING)
