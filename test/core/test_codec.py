"""Feature codec: the wire format, error bounds, the training twin, and hostile input."""

from __future__ import annotations

import array
import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mtl_split_core.codec import (
    CODECS,
    FALLBACK_CODEC,
    UNEXPECTED,
    ZSTD_LEVELS,
    CodecError,
    EncodedTensor,
    codec_bits,
    decode,
    encode,
    fake_quantize,
    parse_codec,
    payload_size,
    split_default,
)

EPS32 = float(np.finfo(np.float32).eps)
QUANTIZED = ["q8-zstd/1", "q4-zstd/1"]


def _raw(enc: EncodedTensor) -> bytes:
    """The decompressed payload, read independently of the codec module."""
    return zstandard.ZstdDecompressor().decompress(enc.data)


# ---------------------------------------------------------------- codec ids

def test_a_split_without_the_default_codecs_tables_takes_the_fallback():
    assert FALLBACK_CODEC in CODECS  # every model has it
    assert split_default("q8-zstd/1", None, "s8") == "q8-zstd/1"
    assert split_default("eb-1/1", None, "s16") == FALLBACK_CODEC  # no tables at all


def test_parse_codec_reads_name_and_version():
    assert [parse_codec(c) for c in CODECS] == [("f16-zstd", 1), ("q8-zstd", 1), ("q4-zstd", 1)]
    assert [codec_bits(c) for c in CODECS] == [None, 8, 4]


@pytest.mark.parametrize("codec, message", [
    ("q8-zstd/2", "unsupported version 2 of codec 'q8-zstd'"),
    ("q8-zstd/01", None),  # "01" parses as version 1: same codec, accepted
    ("q9-zstd/1", "unknown codec 'q9-zstd'"),
    ("q8-zstd", "malformed codec id"),
    ("q8-zstd/1/1", "malformed codec id"),
    ("Q8-ZSTD/1", "malformed codec id"),
    ("q8-zstd/ 1", "malformed codec id"),
    ("", "malformed codec id"),
    (b"q8-zstd/1", "must be a string"),
    (None, "must be a string"),
])
def test_parse_codec_rejects_unknown_names_and_versions(codec, message):
    if message is None:
        assert parse_codec(codec) == ("q8-zstd", 1)
        return
    with pytest.raises(CodecError, match=message):
        parse_codec(codec)


def test_long_hostile_codec_id_is_clipped_in_the_message():
    with pytest.raises(CodecError) as info:
        parse_codec("x" * 100_000)
    assert len(str(info.value)) < 300


# ---------------------------------------------------------------- round trips

@st.composite
def tensors(draw, limit: float = 1e30):
    """Small (C, H, W) arrays: odd and even element counts, several magnitudes and offsets
    (|values| <= limit, and within float16 range for float16), sometimes a constant channel."""
    shape = draw(st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 7)))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    if dtype == np.float16:
        limit = min(limit, 6e4)
    magnitude = draw(st.sampled_from([m for m in (1e-20, 1e-3, 1.0, 50.0, 1e4) if m <= limit]))
    shift = draw(st.sampled_from([s for s in (0.0, 1.0, -300.0)
                                  if (abs(s) + 1) * magnitude <= limit]))
    x = draw(arrays(np.float64, shape, elements=st.floats(-1, 1, width=16)))
    x = (x * magnitude + shift * magnitude).astype(dtype)
    if draw(st.booleans()):
        x[draw(st.integers(0, shape[0] - 1))] = dtype(draw(st.floats(-10, 10, width=16)))
    return x


def _assert_within_half_step(x: np.ndarray, enc: EncodedTensor, y: np.ndarray) -> None:
    """|x - y| <= scale / 2 per element, plus float32 rounding (a few ulp of the channel's
    magnitude: the cast to float32, x - offset, the division, code * scale + offset)."""
    ref = x.astype(np.float64)
    absmax = np.abs(ref).reshape(len(ref), -1).max(1)
    slack = 8 * EPS32 * absmax + 1e-44  # 1e-44: float32 subnormal spacing for tiny channels
    bound = (enc.scale.astype(np.float64) / 2 + slack)[:, None, None]
    err = np.abs(ref - y)
    assert (err <= bound).all(), f"max excess {(err - bound).max()}"


@settings(max_examples=200, deadline=None)
@given(x=tensors(), codec=st.sampled_from(QUANTIZED))
def test_quantized_round_trip_within_half_a_step(x, codec):
    enc = encode(x, codec)
    y = decode(enc)
    assert y.shape == x.shape and y.dtype == np.float32 and y.flags.writeable
    assert enc.scale.dtype == enc.offset.dtype == np.float32
    assert enc.scale.shape == enc.offset.shape == (x.shape[0],)
    _assert_within_half_step(x, enc, y)
    # offset = min and scale = (max - min) / (2**bits - 1), per channel, in float32.
    x32 = x.astype(np.float32).reshape(len(x), -1)
    levels = 2 ** codec_bits(codec) - 1
    assert np.array_equal(enc.offset, x32.min(1))
    assert np.array_equal(enc.scale, (x32.max(1) - x32.min(1)) / np.float32(levels))
    assert len(_raw(enc)) == payload_size(codec, x.shape)


@settings(max_examples=60, deadline=None)
@given(x=tensors(limit=65504.0))
def test_f16_round_trip_equals_float16_rounding(x):
    enc = encode(x, "f16-zstd/1")
    y = decode(enc)
    assert enc.scale.size == enc.offset.size == 0  # f16 carries no scale/offset
    assert y.dtype == np.float32
    assert np.array_equal(y, x.astype(np.float32).astype(np.float16).astype(np.float32))


def test_constant_channels_are_exact_with_zero_scale():
    x = np.stack([np.full((3, 3), 4.25), np.full((3, 3), -1e-30), np.arange(9.0).reshape(3, 3)]
                 ).astype(np.float32)
    for codec in QUANTIZED:
        enc = encode(x, codec)
        assert enc.scale[0] == enc.scale[1] == 0 and enc.scale[2] > 0
        assert np.array_equal(decode(enc)[:2], x[:2])


# ---------------------------------------------------------------- the wire format

def test_wire_format_golden_bytes():
    # One channel [-1, 2, 14]: offset -1, range 15.
    x = np.array([[[-1.0, 2.0, 14.0]]], np.float32)
    q8 = encode(x, "q8-zstd/1")
    # q8: scale 15/255, codes round((x + 1) * 17) = [0, 51, 255].
    assert _raw(q8) == bytes([0, 51, 255])
    q4 = encode(x, "q4-zstd/1")
    # q4: scale 15/15 = 1, codes [0, 3, 15]; byte 0 = 0 | 3 << 4, byte 1 = 15 | pad 0 << 4.
    assert (q4.scale[0], q4.offset[0]) == (1.0, -1.0)
    assert _raw(q4) == bytes([0x30, 0x0F])
    f16 = encode(x, "f16-zstd/1")
    # float16 little-endian: -1 = 0xBC00, 2 = 0x4000, 14 = 0x4B00.
    assert _raw(f16) == bytes([0x00, 0xBC, 0x00, 0x40, 0x00, 0x4B])
    for enc in (q8, q4, f16):
        params = zstandard.get_frame_parameters(enc.data)
        assert params.content_size == payload_size(enc.codec, x.shape)
        assert params.has_checksum
    assert np.array_equal(decode(q4), x) and np.array_equal(decode(f16), x)


def test_q4_packs_two_codes_per_byte_with_odd_counts():
    x = np.linspace(0, 1, 3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)  # 105 elements: odd
    enc = encode(x, "q4-zstd/1")
    assert payload_size("q4-zstd/1", x.shape) == 53 == len(_raw(enc))
    assert _raw(enc)[-1] >> 4 == 0  # the padding nibble
    _assert_within_half_step(x, enc, decode(enc))


def test_nbytes_counts_payload_and_scale_offset():
    x = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    q8, f16 = encode(x, "q8-zstd/1"), encode(x, "f16-zstd/1")
    assert q8.nbytes == len(q8.data) + 4 * 3 * 2
    assert f16.nbytes == len(f16.data)


# ---------------------------------------------------------------- encode

def test_encoding_is_deterministic_across_calls_inputs_and_threads():
    x = np.random.default_rng(0).normal(size=(8, 6, 5)).astype(np.float32)
    for codec in CODECS:
        ref = encode(x, codec)
        for other in (encode(x, codec), encode(torch.from_numpy(x.copy()), codec),
                      encode(torch.from_numpy(x.copy()).requires_grad_(), codec),
                      encode(np.asfortranarray(x), codec),
                      encode(torch.from_numpy(x.transpose(0, 2, 1).copy()).transpose(1, 2), codec)):
            assert other.data == ref.data and other.shape == ref.shape
            assert np.array_equal(other.scale, ref.scale)
            assert np.array_equal(other.offset, ref.offset)
    with ThreadPoolExecutor(4) as pool:  # per-thread zstd contexts
        results = list(pool.map(lambda level: encode(x, "q8-zstd/1", level).data,
                                [1, 3, 9] * 8))
    assert results == [encode(x, "q8-zstd/1", level).data for level in [1, 3, 9] * 8]


def test_zstd_level_changes_size_not_values():
    smooth = np.sin(np.linspace(0, 40, 8 * 48 * 48, dtype=np.float32)).reshape(8, 48, 48)
    fast, small = encode(smooth, "q8-zstd/1", 1), encode(smooth, "q8-zstd/1", 19)
    assert len(small.data) < len(fast.data)
    assert np.array_equal(decode(small), decode(fast))


def test_half_precision_inputs_encode_their_float32_values():
    x = torch.randn(3, 4, 5)
    for dtype in (torch.bfloat16, torch.float16):
        low = x.to(dtype)
        assert encode(low, "q8-zstd/1").data == encode(low.float(), "q8-zstd/1").data
    x16 = np.random.default_rng(2).normal(size=(2, 3, 3)).astype(np.float16)
    assert encode(x16, "q4-zstd/1").data == encode(x16.astype(np.float32), "q4-zstd/1").data


def test_read_only_numpy_input_encodes_without_warnings():
    x = np.random.default_rng(3).normal(size=(2, 3, 4)).astype(np.float32)
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = encode(x, "q8-zstd/1")
    _assert_within_half_step(x, enc, decode(enc))


@settings(max_examples=60, deadline=None)
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), data=st.data(),
       codec=st.sampled_from(CODECS), torch_input=st.booleans())
def test_nan_inf_rejected_at_encode_wherever_they_are(shape, bad, data, codec, torch_input):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    where = tuple(data.draw(st.integers(0, d - 1)) for d in shape)
    x[where] = bad
    with pytest.raises(CodecError, match=rf"NaN or Inf \(1 values in channels \[{where[0]}\]\)"):
        encode(torch.from_numpy(x) if torch_input else x, codec)


def test_encode_rejects_values_it_cannot_represent():
    big = np.array([[[1e39, 0.0]]])  # float64 beyond float32: inf after the cast
    with pytest.raises(CodecError, match="NaN or Inf"):
        encode(big, "q8-zstd/1")
    wide = np.array([[[-3e38, 3e38]]], np.float32)  # max - min overflows float32
    with pytest.raises(CodecError, match=r"channels \[0\] is too wide"):
        encode(wide, "q8-zstd/1")
    with pytest.raises(CodecError, match="float16 range"):
        encode(np.array([[[70000.0]]], np.float32), "f16-zstd/1")
    assert decode(encode(np.array([[[-65504.0]]], np.float32), "f16-zstd/1"))[0, 0, 0] == -65504


@pytest.mark.parametrize("args, message", [
    ((np.zeros((1, 1, 1)), "q8-zstd/2"), "unsupported version"),
    ((np.zeros((1, 1, 1)), "q8-zstd/1", 0), "level"),
    ((np.zeros((1, 1, 1)), "q8-zstd/1", ZSTD_LEVELS[1] + 1), "level"),
    ((np.zeros((1, 1, 1)), "q8-zstd/1", True), "level"),
    ((np.zeros((1, 1, 1)), "q8-zstd/1", 3.0), "level"),
    ((np.zeros((2, 2)), "q8-zstd/1"), "C, H, W"),
    ((np.zeros((2, 0, 2)), "q8-zstd/1"), "C, H, W"),
    ((np.zeros((1, 2, 2), np.int64), "q8-zstd/1"), "float16/32/64 array"),
    ((torch.zeros(1, 2, 2, dtype=torch.int32), "q8-zstd/1"), "float tensor"),
    ((torch.zeros(1, 2, 2, dtype=torch.complex64), "q8-zstd/1"), "float tensor"),
    (([[[1.0]]], "q8-zstd/1"), "numpy array or torch tensor"),
])
def test_encode_rejects_bad_arguments(args, message):
    with pytest.raises(CodecError, match=message):
        encode(*args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_input_gives_the_same_bytes_as_cpu():
    x = torch.randn(64, 30, 41) * torch.logspace(-3, 3, 64)[:, None, None]
    for codec in CODECS:
        gpu, cpu = encode(x.cuda(), codec), encode(x, codec)
        assert np.array_equal(gpu.scale, cpu.scale) and np.array_equal(gpu.offset, cpu.offset)
        assert gpu.data == cpu.data
    for bits, codec in ((8, "q8-zstd/1"), (4, "q4-zstd/1")):
        y = fake_quantize(x[None].cuda(), bits)[0].cpu()
        assert torch.equal(y, torch.from_numpy(decode(encode(x, codec))))
    with pytest.raises(CodecError, match="NaN or Inf"):
        encode(torch.full((2, 3, 3), float("nan"), device="cuda"), "q8-zstd/1")


# ---------------------------------------------------------------- fake_quantize

@pytest.mark.parametrize("bits, codec", [(8, "q8-zstd/1"), (4, "q4-zstd/1")])
def test_fake_quantize_equals_the_codec_bit_for_bit(bits, codec):
    x = torch.randn(3, 4, 5, 7) * torch.tensor([1.0, 1e-3, 30.0, 0.0])[:, None, None]
    x[1, 3] = 2.5  # a constant channel with a non-zero value
    y = fake_quantize(x, bits)
    assert y.dtype == x.dtype and y.shape == x.shape
    for i in range(len(x)):
        assert torch.equal(y[i], torch.from_numpy(decode(encode(x[i], codec))))
        assert all(len(torch.unique(c)) <= 2 ** bits for c in y[i])


def test_fake_quantize_passes_gradients_straight_through():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    weight = torch.randn(2, 3, 4, 5)
    (fake_quantize(x, 4) * weight).sum().backward()
    assert torch.equal(x.grad, weight)


def test_fake_quantize_of_bfloat16_is_the_codec_rounded_to_bfloat16():
    x = torch.randn(2, 3, 4, 4).to(torch.bfloat16).requires_grad_()
    y = fake_quantize(x, 8)
    assert y.dtype == torch.bfloat16
    ref = torch.from_numpy(decode(encode(x[0].detach(), "q8-zstd/1"))).to(torch.bfloat16)
    assert torch.equal(y[0].detach(), ref)
    y.float().sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("x, bits, message", [
    (torch.zeros(3, 4, 5), 8, r"\(N, C, H, W\)"),
    (torch.zeros(1, 3, 4, 5, dtype=torch.int64), 8, r"\(N, C, H, W\)"),
    (torch.zeros(1, 3, 0, 5), 8, "non-empty H and W"),
    (torch.zeros(1, 1, 2, 2), 0, "bits"),
    (torch.zeros(1, 1, 2, 2), 17, "bits"),
    (torch.zeros(1, 1, 2, 2), 4.0, "bits"),
])
def test_fake_quantize_rejects_bad_arguments(x, bits, message):
    with pytest.raises(CodecError, match=message):
        fake_quantize(x, bits)


# ---------------------------------------------------------------- hostile input

def _valid(codec: str = "q8-zstd/1") -> EncodedTensor:
    return encode(np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32), codec)


def _frame(raw: bytes, **kwargs) -> bytes:
    return zstandard.ZstdCompressor(**kwargs).compress(raw)


F32 = np.float32
HOSTILE = [
    # codec ids
    (dict(codec="q9-zstd/1"), "unknown codec"),
    (dict(codec="q8-zstd/7"), "unsupported version"),
    (dict(codec=None), "must be a string"),
    # shapes
    (dict(shape=(3, 4)), "3 integers"),
    (dict(shape=(3, 4, 5, 1)), "3 integers"),
    (dict(shape="345"), "3 integers"),
    (dict(shape=(3.0, 4, 5)), "3 integers"),
    (dict(shape=(True, 4, 5)), "3 integers"),
    (dict(shape=(3, 0, 5)), "3 positive"),
    (dict(shape=(3, -4, 5)), "3 positive"),
    (dict(shape=(100_000, 100_000, 100_000)), "over the cap"),
    (dict(shape=(2 ** 32 - 1,) * 3), "over the cap"),  # uint32 dims from a message
    (dict(shape=(4, 2 ** 31, 2 ** 31)), "over the cap"),  # 2**64: an int64 product wraps to 0
    (dict(shape=(3, 4, 6)), "declares 60 bytes, the codec and shape need 72"),
    (dict(shape=(4, 4, 5)), "4 scales and offsets"),
    # scale / offset
    (dict(scale=np.ones(2, F32)), "expected 3 scales and offsets .* got 2 and 3"),
    (dict(offset=np.ones(4, F32)), "expected 3 scales and offsets .* got 3 and 4"),
    (dict(scale=np.ones((3, 1), F32)), "1-D"),
    (dict(scale=np.array(["a", "b", "c"])), "1-D"),
    (dict(scale=[1.0, [2.0], 3.0]), "1-D"),
    (dict(scale="abc"), "must be a float32 array"),
    (dict(scale=None), "must be a float32 array"),
    (dict(scale=-np.ones(3, F32)), r"finite and >= 0; bad in channels \[0, 1, 2\]"),
    (dict(scale=np.array([1, np.nan, 1], F32)), r"finite and >= 0; bad in channels \[1\]"),
    (dict(scale=np.array([1, 1, np.inf], F32)), r"finite and >= 0; bad in channels \[2\]"),
    (dict(scale=np.array([1, 1, 1e300])), r"finite and >= 0; bad in channels \[2\]"),
    (dict(offset=np.array([np.inf, 0, 0], F32)), r"offsets must be finite; bad .* \[0\]"),
    (dict(offset=np.array([0, -np.nan, 0], F32)), r"offsets must be finite; bad .* \[1\]"),
    (dict(scale=np.full(3, 3e37, F32)), r"overflows float32 in channels \[0, 1, 2\]"),
    (dict(scale=np.array([1, 1, 1e36], F32), offset=np.array([0, 0, 3.3e38], F32)),
     r"overflows float32 in channels \[2\]"),  # 255e36 + 3.3e38 > 3.4e38
    # payloads
    (dict(data=b""), "not a zstd frame"),
    (dict(data=b"\x00" * 40), "not a zstd frame"),
    (dict(data=10 ** 12), "payload must be bytes"),  # bytes(10**12) would allocate 1 TB
    (dict(data="text"), "payload must be bytes"),
    (dict(data=_frame(bytes(60), write_content_size=False)), "does not declare"),
    (dict(data=_frame(bytes(10_000_000))), "declares 10000000 bytes"),  # a zip bomb
    (dict(data=_frame(bytes(60)) + b"\x00"), "unused data"),
    (dict(data=_frame(bytes(60)) + _frame(bytes(60))), "unused data"),
]


@pytest.mark.parametrize("change, message", HOSTILE)
def test_hostile_fields_raise_codec_error(change, message):
    with pytest.raises(CodecError, match=message) as info:
        decode(dataclasses.replace(_valid(), **change))
    assert UNEXPECTED not in str(info.value)


@pytest.mark.parametrize("change, message", [
    (dict(scale=np.ones(3, F32)), "carries no scale/offset, got 3 and 0"),
    (dict(shape=(3, 4, 6)), "declares 120 bytes, the codec and shape need 144"),
    (dict(data=_frame(np.full(60, np.nan, np.float16).tobytes())), "NaN or Inf"),
    (dict(data=_frame(np.full(60, np.inf, np.float16).tobytes())), "NaN or Inf"),
])
def test_hostile_f16_fields_raise_codec_error(change, message):
    with pytest.raises(CodecError, match=message):
        decode(dataclasses.replace(_valid("f16-zstd/1"), **change))


def test_q4_padding_nibble_must_be_zero():
    enc = encode(np.ones((1, 1, 3), np.float32), "q4-zstd/1")
    bad = dataclasses.replace(enc, data=_frame(bytes([0x00, 0xF0])))
    with pytest.raises(CodecError, match="padding nibble"):
        decode(bad)


def test_decode_checks_its_own_arguments():
    with pytest.raises(CodecError, match="expected an EncodedTensor"):
        decode({"codec": "q8-zstd/1"})
    with pytest.raises(CodecError, match="over the cap of 59"):
        decode(_valid(), max_elements=59)
    assert decode(_valid(), max_elements=60).shape == (3, 4, 5)
    for cap in (0, -1, 2.5, True):
        with pytest.raises(CodecError, match="max_elements"):
            decode(_valid(), max_elements=cap)


def test_message_layer_types_decode():
    # What msg_to_packet and rosbags hand over: uint32 dims, array.array fields, bytearray.
    enc = _valid()
    ref = decode(enc)
    as_msg = dataclasses.replace(
        enc, shape=tuple(np.asarray(enc.shape, np.uint32)), scale=array.array("f", enc.scale),
        offset=list(enc.offset), data=bytearray(enc.data))
    assert np.array_equal(decode(as_msg), ref)
    assert np.array_equal(decode(dataclasses.replace(enc, data=memoryview(enc.data))), ref)


@pytest.mark.parametrize("codec", CODECS)
def test_every_single_bit_flip_is_caught_or_harmless(codec):
    # The zstd content checksum makes a corrupted payload fail instead of decoding to other
    # values; flips zstd tolerates (e.g. a larger window) must give the original back exactly.
    enc = _valid(codec)
    ref = decode(enc)
    caught = 0
    for bit in range(8 * len(enc.data)):
        data = bytearray(enc.data)
        data[bit // 8] ^= 1 << (bit % 8)
        try:
            out = decode(dataclasses.replace(enc, data=bytes(data)))
        except CodecError as err:
            assert UNEXPECTED not in str(err)
            caught += 1
            continue
        assert np.array_equal(out, ref), f"bit {bit} changed the decoded values"
    assert caught > 0.9 * 8 * len(enc.data)


def test_fuzz_decoder_raises_only_codec_error():
    rng = np.random.default_rng(1234)
    bases = [encode(rng.normal(size=(3, 4, 5)).astype(np.float32), c) for c in CODECS]
    bases += [encode(rng.normal(size=(2, 3, 3)).astype(np.float32), c) for c in CODECS]
    odd_codecs = list(CODECS) + ["q8-zstd/0", "q4-zstd/2", "", "f32/1", "q8-zstd/1 ", "q8"]
    outcomes = {"ok": 0, "error": 0}
    rounds = 12_000
    for i in range(rounds):
        enc = bases[i % len(bases)]
        data = bytearray(enc.data)
        changes: dict = {}
        for kind in rng.choice(8, size=rng.integers(1, 3), replace=False):
            if kind == 0 and data:  # bit flips
                for _ in range(rng.integers(1, 4)):
                    j = rng.integers(len(data))
                    data[j] ^= 1 << int(rng.integers(8))
            elif kind == 1:  # truncation
                data = data[: rng.integers(len(data) + 1)]
            elif kind == 2:  # extension with junk
                data += rng.bytes(int(rng.integers(1, 64)))
            elif kind == 3:  # byte insertion / deletion inside the frame
                j = int(rng.integers(len(data) + 1))
                data = data[:j] + rng.bytes(1) + data[j:] if rng.random() < 0.5 \
                    else data[:j] + data[j + 1:]
            elif kind == 4:  # shapes: wrong rank, zero, negative, huge, or a plausible one
                changes["shape"] = tuple(int(v) for v in rng.choice(
                    [-1, 0, 1, 2, 3, 4, 5, 6, 2 ** 31, 2 ** 32 - 1], size=rng.integers(1, 5)))
            elif kind == 5:  # scale / offset: lengths and values
                field = "scale" if rng.random() < 0.5 else "offset"
                size = len(enc.scale) if rng.random() < 0.6 else rng.integers(0, 5)
                values = rng.normal(size=size) * 10.0 ** rng.integers(-3, 40)
                if values.size and rng.random() < 0.3:
                    values[rng.integers(values.size)] = rng.choice([np.nan, np.inf, -np.inf])
                with np.errstate(over="ignore"):  # overflow to inf is one of the cases
                    changes[field] = values.astype(F32 if rng.random() < 0.5 else np.float64)
            elif kind == 6:  # codec id
                changes["codec"] = str(rng.choice(odd_codecs))
            else:  # a well-formed frame with the wrong content or size
                size = int(rng.choice([0, 1, 30, 59, 60, 61, 120, 121]))
                data = bytearray(_frame(rng.bytes(size), write_checksum=bool(rng.random() < .5)))
        mutated = dataclasses.replace(enc, data=bytes(data), **changes)
        try:
            out = decode(mutated)
        except CodecError as err:
            assert UNEXPECTED not in str(err), f"round {i}: {err}"
            outcomes["error"] += 1
            continue
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        assert out.shape == tuple(mutated.shape) and np.isfinite(out).all()
        outcomes["ok"] += 1
    assert sum(outcomes.values()) == rounds
    # Both paths are exercised: most mutations are caught, some (scale/offset values,
    # codec ids that are still valid) legitimately decode.
    assert outcomes["error"] > rounds // 2 and outcomes["ok"] > rounds // 50, outcomes
