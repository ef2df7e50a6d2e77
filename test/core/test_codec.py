"""Feature codec: error bounds, formats, and hostile input."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mtl_split_core.codec import (CODECS, CodecError, EncodedTensor, decode, encode,
                                  fake_quantize, payload_size)

shapes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 7))


@st.composite
def tensors(draw):
    shape = draw(shapes)
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 50.0, 1e4]))
    x = draw(arrays(dtype, shape, elements=st.floats(-1, 1, width=16)))
    x = (x.astype(np.float64) * magnitude).astype(dtype)
    if draw(st.booleans()):  # a constant channel
        x[0] = dtype(draw(st.floats(-10, 10, width=16)))
    return x


@settings(max_examples=150, deadline=None)
@given(x=tensors(), codec=st.sampled_from(["q8-zstd/1", "q4-zstd/1"]))
def test_quantized_round_trip_within_half_a_step(x, codec):
    enc = encode(x, codec)
    y = decode(enc)
    assert y.shape == x.shape and y.dtype == np.float32
    bound = enc.scale[:, None, None] / 2
    ref = x.astype(np.float32)
    slack = 1e-6 * (1 + np.abs(ref))  # float32 rounding of code * scale + offset
    assert (np.abs(y - ref) <= bound + slack).all()


@settings(max_examples=50, deadline=None)
@given(x=tensors())
def test_f16_round_trip_within_float16_rounding(x):
    y = decode(encode(x, "f16-zstd/1"))
    assert np.array_equal(y, x.astype(np.float16).astype(np.float32))


def test_constant_channel_is_exact_and_scale_zero():
    x = np.full((2, 3, 3), 4.25, np.float32)
    for codec in ("q8-zstd/1", "q4-zstd/1"):
        enc = encode(x, codec)
        assert (enc.scale == 0).all()
        assert np.array_equal(decode(enc), x)


def test_q4_packs_two_codes_per_byte_and_odd_counts():
    x = np.linspace(0, 1, 3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)  # 105 elements: odd
    enc = encode(x, "q4-zstd/1")
    assert payload_size("q4-zstd/1", x.shape) == 53
    assert np.abs(decode(enc) - x).max() <= enc.scale.max() / 2 + 1e-6


def test_encoding_is_deterministic_and_level_matters():
    x = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    a, b = encode(x, "q8-zstd/1", 3), encode(x, "q8-zstd/1", 3)
    assert a.data == b.data and np.array_equal(a.scale, b.scale)
    smooth = np.sin(np.linspace(0, 40, 8 * 64 * 64, dtype=np.float32)).reshape(8, 64, 64)
    assert len(encode(smooth, "q8-zstd/1", 19).data) < len(encode(smooth, "q8-zstd/1", 1).data)


def test_torch_input_matches_numpy_input():
    x = torch.randn(4, 5, 6)
    a, b = encode(x, "q8-zstd/1"), encode(x.numpy(), "q8-zstd/1")
    assert a.data == b.data and np.array_equal(a.scale, b.scale)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_rejected_at_encode(bad):
    x = np.zeros((2, 2, 2), np.float32)
    x[1, 0, 1] = bad
    with pytest.raises(CodecError, match="NaN or Inf"):
        encode(x, "q8-zstd/1")


def test_encode_rejects_bad_arguments():
    with pytest.raises(CodecError, match="unknown codec"):
        encode(np.zeros((1, 1, 1)), "q8-zstd/2")
    with pytest.raises(CodecError, match="level"):
        encode(np.zeros((1, 1, 1)), "q8-zstd/1", level=0)
    with pytest.raises(CodecError, match="C, H, W"):
        encode(np.zeros((2, 2)), "q8-zstd/1")


@pytest.mark.parametrize("bits, codec", [(8, "q8-zstd/1"), (4, "q4-zstd/1")])
def test_fake_quantize_equals_codec_and_passes_gradients(bits, codec):
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    y = fake_quantize(x, bits)
    for i in range(2):
        assert torch.allclose(y[i].detach(), torch.from_numpy(decode(encode(x[i], codec))),
                              atol=1e-6)
    (y * torch.arange(5.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(5.0).expand(2, 3, 4, 5))


def _valid():
    return encode(np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32),
                  "q8-zstd/1")


@pytest.mark.parametrize("change, message", [
    (dict(codec="q9-zstd/1"), "unknown codec"),
    (dict(codec=None), "unknown codec"),
    (dict(shape=(3, 4)), "3 positive"),
    (dict(shape=(3, 0, 5)), "3 positive"),
    (dict(shape=(3, -4, 5)), "3 positive"),
    (dict(shape=(100000, 100000, 100000)), "over the cap"),
    (dict(shape=(3, 4, 6)), "declares"),
    (dict(data=b""), "not a zstd frame"),
    (dict(data=b"\x00" * 40), "not a zstd frame"),
    (dict(scale=np.ones(2, np.float32)), "one per channel"),
    (dict(scale=-np.ones(3, np.float32)), ">= 0"),
    (dict(scale=np.full(3, np.nan, np.float32)), "finite"),
    (dict(offset=np.full(3, np.inf, np.float32)), "finite"),
])
def test_hostile_fields_raise_codec_error(change, message):
    with pytest.raises(CodecError, match=message):
        decode(dataclasses.replace(_valid(), **change))


def test_truncated_and_corrupted_frames():
    enc = _valid()
    with pytest.raises(CodecError):
        decode(dataclasses.replace(enc, data=enc.data[: len(enc.data) // 2]))
    corrupt = bytearray(enc.data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    try:
        out = decode(dataclasses.replace(enc, data=bytes(corrupt)))
        assert out.shape == (3, 4, 5)  # zstd cannot always see a flipped literal byte
    except CodecError:
        pass


def test_fuzz_decoder_only_raises_codec_error():
    rng = np.random.default_rng(1234)
    bases = [encode(rng.normal(size=(3, 4, 5)).astype(np.float32), c) for c in CODECS]
    outcomes = {"ok": 0, "error": 0}
    for i in range(10_000):
        enc = bases[i % len(bases)]
        data = bytearray(enc.data)
        kind = rng.integers(6)
        if kind == 0 and data:  # bit flips
            for _ in range(rng.integers(1, 4)):
                j = rng.integers(len(data))
                data[j] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # truncation
            data = data[: rng.integers(len(data) + 1)]
        elif kind == 2:  # extension with junk
            data += rng.bytes(int(rng.integers(1, 64)))
        changes = {"data": bytes(data)}
        if kind == 3:
            changes["shape"] = tuple(int(v) for v in rng.integers(-2, 9, size=rng.integers(1, 5)))
        if kind == 4:
            changes["scale"] = rng.normal(size=rng.integers(0, 5)).astype(np.float32)
        if kind == 5:
            changes["codec"] = rng.choice(list(CODECS) + ["q8-zstd/0", "", "f32/1"])
        mutated = dataclasses.replace(enc, **changes)
        try:
            out = decode(mutated)
        except CodecError:
            outcomes["error"] += 1
            continue
        assert out.dtype == np.float32 and out.shape == tuple(mutated.shape)
        outcomes["ok"] += 1
    assert outcomes["error"] > 1000 and sum(outcomes.values()) == 10_000


def test_encoded_tensor_nbytes():
    enc = _valid()
    assert enc.nbytes == len(enc.data) + 4 * 6
    assert isinstance(enc, EncodedTensor)
