"""Image codecs of split input: ids, the model-input image, round trips, and hostile bytes
(every check before any decoder runs)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mtl_split_core import image_codec
from mtl_split_core.image_codec import (
    BYTES,
    CODEC,
    CORRUPT,
    DEFAULT_IMAGE_CODEC,
    FORMAT,
    LAYOUT,
    PROFILED_IMAGE_CODECS,
    SIZE,
    ImageCodecError,
    decode_image,
    encode_image,
    is_image_codec,
    max_image_bytes,
    model_input_image,
    parse_image_codec,
    to_uint8,
)
from mtl_split_core.preprocess import letterbox_tensor

SIZE_WH = (64, 48)
FORMATS = [f for f in image_codec.IMAGE_FORMATS if is_image_codec(f"{f}-q90/1")]
CODECS = [f"{f}-q90/1" for f in FORMATS]


def scene(w: int = 64, h: int = 48) -> np.ndarray:
    """A smooth frame with edges, like a rendered one (noise would not compress)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 255, yy / h * 255, (xx + yy) / (w + h) * 255], -1)
    img[h // 4:h // 2, w // 4:w // 2] = (200, 30, 30)
    return img.astype(np.uint8)


def reason(data: bytes, codec: str, size: tuple[int, int] = SIZE_WH) -> str:
    with pytest.raises(ImageCodecError) as info:
        decode_image(data, codec, size)
    return info.value.reason


# ------------------------------------------------------------------------------ ids
def test_the_default_and_profiled_codecs_are_usable_here():
    assert is_image_codec(DEFAULT_IMAGE_CODEC) and parse_image_codec("webp-q80/1") == ("webp", 80)
    assert all(is_image_codec(c) for c in PROFILED_IMAGE_CODECS)
    assert {"webp", "jpeg"} <= set(FORMATS)


@pytest.mark.parametrize("codec", ["webp", "webp/1", "webp-q0/1", "webp-q101/1", "webp-q80/2",
                                   "png-q80/1", "q4-zstd/1", "WEBP-q80/1", "", 80, None,
                                   "webp-q80/1 ", "webp-q" + "9" * 400 + "/1"])
def test_a_bad_codec_id_is_refused_with_its_reason(codec):
    with pytest.raises(ImageCodecError) as info:
        parse_image_codec(codec)
    assert info.value.reason == CODEC and len(str(info.value)) < 300
    assert not is_image_codec(codec)


# ------------------------------------------------------------------------------ the image
def test_the_model_input_image_is_the_letterboxed_frame_rounded():
    frame = np.random.default_rng(0).integers(0, 256, (100, 160, 3), np.uint8)
    image, transform = model_input_image(frame, (128, 96))
    x, expected_transform = letterbox_tensor(torch.from_numpy(frame), (128, 96))
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert transform == expected_transform
    # Within half a grey level of the float the network takes (padding 0.5 -> 128).
    assert np.abs(image.transpose(2, 0, 1) / 255.0 - x.numpy()).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(image, to_uint8(x).numpy())


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_keeps_the_image(codec):
    img = scene()
    data = encode_image(img, codec)
    out = decode_image(data, codec, SIZE_WH)
    assert out.shape == img.shape and out.dtype == np.uint8
    psnr = 10 * np.log10(255 ** 2 / np.mean((out.astype(float) - img) ** 2))
    assert psnr > 30, psnr
    assert len(data) < img.nbytes / 3


def test_quality_trades_bytes():
    img = scene(160, 120)
    sizes = [len(encode_image(img, f"webp-q{q}/1")) for q in (30, 60, 95)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_encode_refuses_what_is_not_an_rgb_uint8_image():
    for bad in (np.zeros((48, 64), np.uint8), np.zeros((48, 64, 3), np.float32),
                np.zeros((48, 64, 4), np.uint8), np.zeros((0, 64, 3), np.uint8)):
        with pytest.raises(ImageCodecError) as info:
            encode_image(bad, DEFAULT_IMAGE_CODEC)
        assert info.value.reason == LAYOUT


# ------------------------------------------------------------------------------ hostile bytes
@pytest.mark.parametrize("codec", CODECS)
def test_truncated_files_are_refused(codec):
    data = encode_image(scene(), codec)
    for n in (1, 11, 29, 40, len(data) // 2, len(data) - 1):
        assert reason(data[:n], codec) in (FORMAT, CORRUPT, LAYOUT), n


@pytest.mark.parametrize("codec", CODECS)
def test_random_bytes_are_refused(codec):
    rng = np.random.default_rng(1)
    for n in (1, 100, 5000):
        assert reason(rng.bytes(n), codec) == FORMAT


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_of_another_size_is_refused_before_decoding(codec, monkeypatch):
    data = encode_image(scene(32, 24), codec)
    monkeypatch.setattr(Image, "open", _no_decoder)
    assert reason(data, codec) == SIZE


def test_a_file_of_another_format_is_refused():
    img = scene()
    for made, claimed in ((f, c) for f in CODECS for c in CODECS if f != c):
        assert reason(encode_image(img, made), claimed) == FORMAT


def test_empty_and_oversized_payloads_are_refused():
    assert reason(b"", DEFAULT_IMAGE_CODEC) == BYTES
    big = b"RIFF" + b"\0" * max_image_bytes(SIZE_WH)
    assert reason(big, DEFAULT_IMAGE_CODEC) == BYTES
    with pytest.raises(ImageCodecError) as info:
        decode_image("RIFF", DEFAULT_IMAGE_CODEC, SIZE_WH)  # type: ignore[arg-type]
    assert info.value.reason == BYTES


def _no_decoder(*args, **kwargs):
    raise AssertionError("a decoder was started on a file the header checks must refuse")


def _webp_bomb(width: int, height: int) -> bytes:
    """A lossy WebP whose frame header declares width x height (the decoder would allocate
    the canvas for it when the file is opened)."""
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\0" * 64
    chunk = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _jpeg_bomb(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00" * 3
    return b"\xff\xd8" + b"\xff\xe0\x00\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0" + sof + b"\0" * 64


def test_decompression_bombs_are_refused_from_the_header(monkeypatch):
    monkeypatch.setattr(Image, "open", _no_decoder)
    assert reason(_webp_bomb(16383, 16383), "webp-q80/1") == SIZE
    assert reason(_jpeg_bomb(65500, 65500), "jpeg-q90/1") == SIZE
    if "avif" in FORMATS:
        data = bytearray(encode_image(scene(), "avif-q90/1"))
        at = data.index(b"ispe") + 8  # after the box type and the full box's version/flags
        data[at:at + 8] = struct.pack(">II", 60000, 60000)
        assert reason(bytes(data), "avif-q90/1") == SIZE


def test_variants_our_encoder_never_writes_are_refused():
    img = scene()
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90, progressive=True)
    assert reason(buf.getvalue(), "jpeg-q90/1") == LAYOUT  # scans multiply decoding work
    buf = io.BytesIO()
    Image.fromarray(img[..., 0]).save(buf, format="JPEG", quality=90)
    assert reason(buf.getvalue(), "jpeg-q90/1") == LAYOUT  # grey, one component
    buf = io.BytesIO()
    Image.fromarray(np.dstack([img, img[..., :1]]), "RGBA").save(buf, format="WEBP")
    assert reason(buf.getvalue(), "webp-q80/1") == LAYOUT  # alpha: the extended format
    buf = io.BytesIO()
    frames = [Image.fromarray(img), Image.fromarray(img[::-1].copy())]
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:])
    assert reason(buf.getvalue(), "webp-q80/1") == LAYOUT  # animation


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_damaged_files_give_an_image_or_one_error_type(codec, data):
    """Any bytes changed in a valid file: either the expected image shape or an
    ImageCodecError with a known reason, never another exception."""
    raw = bytearray(_valid(codec))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    try:
        out = decode_image(bytes(raw[:cut]), codec, SIZE_WH)
    except ImageCodecError as err:
        assert err.reason in image_codec.REASONS
    else:
        assert out.shape == (48, 64, 3) and out.dtype == np.uint8


_VALID: dict[str, bytes] = {}


def _valid(codec: str) -> bytes:
    if codec not in _VALID:
        _VALID[codec] = encode_image(scene(), codec)
    return _VALID[codec]
