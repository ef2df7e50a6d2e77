"""Entropy-coded codecs (eb-<k>/1): frozen integer tables, the committed test vector, exact
tables in the coder, float noise, and hostile payloads rejected before decoding."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from pathlib import Path

import constriction
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_split_core.codec import (
    CODECS,
    ENTROPY_CODECS,
    UNEXPECTED,
    CodecError,
    EncodedTensor,
    codec_bits,
    decode,
    encode,
    entropy_point,
    model_codecs,
)
from mtl_split_core.entropy_tables import (
    PRECISION,
    EntropyTables,
    EntropyTablesError,
    integer_frequencies,
    max_words,
    tables_of,
)

VECTOR = json.loads((Path(__file__).parent / "entropy_vector_v1.json").read_text())
TABLES = EntropyTables(VECTOR["tables"])
SHAPE = tuple(VECTOR["shape"])
Y = np.frombuffer(bytes.fromhex(VECTOR["input_f32_le_hex"]), "<f4").reshape(SHAPE)


def _tensor(codec: str = "eb-1/1", data: bytes | None = None, shape: tuple = SHAPE,
            scale: np.ndarray | None = None) -> EncodedTensor:
    good = encode(Y, codec if codec in TABLES.codec_ids else "eb-1/1", tables=TABLES)
    empty = np.zeros(0, np.float32)
    return EncodedTensor(codec, shape, empty if scale is None else scale, empty.copy(),
                         good.data if data is None else data)


def _rejected(enc: EncodedTensor, message: str, tables: EntropyTables | None = TABLES) -> None:
    with pytest.raises(CodecError, match=message) as info:
        decode(enc, tables=tables)
    assert info.value.reason == "entropy"
    assert UNEXPECTED not in str(info.value)


# ---------------------------------------------------------------- the committed vector

@pytest.mark.parametrize("case", VECTOR["cases"], ids=lambda c: c["codec"])
def test_committed_vector_decodes_bit_exactly_and_reencodes_to_the_same_bytes(case):
    payload = bytes.fromhex(case["payload_hex"])
    expected = bytes.fromhex(case["decoded_f32_le_hex"])
    empty = np.zeros(0, np.float32)
    decoded = decode(EncodedTensor(case["codec"], SHAPE, empty, empty, payload), tables=TABLES)
    assert decoded.dtype == np.float32 and decoded.astype("<f4").tobytes() == expected
    # The input and its own reconstruction both encode to exactly the committed payload.
    assert encode(Y, case["codec"], tables=TABLES).data == payload
    assert encode(decoded, case["codec"], tables=TABLES).data == payload
    assert encode(torch.from_numpy(Y.copy()), case["codec"], tables=TABLES).data == payload


SHIPPED = json.loads((Path(__file__).parent / "entropy_vector_default.json").read_text())


@pytest.mark.parametrize("case", SHIPPED["cases"], ids=lambda c: c["codec"])
def test_the_shipped_cards_tables_decode_their_committed_payloads_bit_exactly(case):
    root = Path(__file__).parents[2]
    card = json.loads((root / SHIPPED["model"] / "card.json").read_text())
    assert card["fingerprint"] == SHIPPED["fingerprint"]
    tables = tables_of(card["entropy"])
    shape = tuple(SHIPPED["shape"])
    payload = bytes.fromhex(case["payload_hex"])
    empty = np.zeros(0, np.float32)
    decoded = decode(EncodedTensor(case["codec"], shape, empty, empty, payload), tables=tables)
    assert hashlib.sha256(decoded.astype("<f4").tobytes()).hexdigest() == \
        case["decoded_f32_le_sha256"]
    y = np.frombuffer(bytes.fromhex(SHIPPED["input_f32_le_hex"]), "<f4").reshape(shape)
    assert encode(y, case["codec"], tables=tables).data == payload
    assert encode(decoded, case["codec"], tables=tables).data == payload


def test_vector_values_beyond_the_table_clip_to_its_end_symbols():
    point = TABLES.points[0]
    decoded = decode(encode(Y, "eb-0/1", tables=TABLES), tables=TABLES)
    assert decoded[0, 0, 0] == np.float32(point.hi[0]) / point.gain[0]
    assert decoded[1, 0, 1] == np.float32(point.lo[1]) / point.gain[1]


def test_the_coder_uses_exactly_the_integer_tables():
    """constriction gets weights it reproduces without rounding: coding m copies of a symbol
    of frequency f costs m * log2(2**P / f) bits (plus the coder's state), and f +- 1 would
    differ by hundreds of bits."""
    freqs = np.array([3, 5, 2**PRECISION - 3 - 5 - 7, 7], np.int64)
    table = {"version": 1, "split": "s16", "precision": PRECISION, "operating_points": [
        {"gain": [1.0], "lo": [0], "freqs": [[int(v) for v in freqs]]}]}
    model = EntropyTables(table).models(0)[0]
    for symbol in (1, 3):
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.full(2000, symbol, np.int32), model)
        exact = 2000 * np.log2(2**PRECISION / freqs[symbol])
        assert abs(coder.num_bits() - exact) <= 64  # the 64-bit state: a few bits either way
        for off in (-1, 1):
            assert abs(coder.num_bits() - 2000 * np.log2(2**PRECISION / (freqs[symbol] + off))) \
                > 200


# ---------------------------------------------------------------- encode / decode

@pytest.mark.parametrize("codec", ["eb-0/1", "eb-1/1"])
def test_round_trip_is_the_tables_quantizer(codec):
    point = TABLES.points[entropy_point(codec)]
    y = np.random.default_rng(1).normal(0, 3, SHAPE).astype(np.float32)
    enc = encode(y, codec, tables=TABLES)
    assert enc.scale.size == enc.offset.size == 0 and enc.nbytes == len(enc.data)
    flat = y.reshape(SHAPE[0], -1)
    expected = point.values(point.symbols(flat)).reshape(SHAPE)
    np.testing.assert_array_equal(decode(enc, tables=TABLES), expected)
    # Within the table the error is at most half a step (1 / gain / 2) per channel.
    inside = (np.abs(flat * point.gain[:, None]) < np.abs(point.lo)[:, None] - 1)
    err = np.abs(decode(enc, tables=TABLES).reshape(SHAPE[0], -1) - flat)
    assert (err[inside] <= (0.5 / point.gain[:, None] * np.ones_like(flat))[inside] * 1.0001).all()


def test_float_noise_below_half_a_step_gives_the_same_symbols():
    """What a GPU edge computes differs from the CPU's by float noise; symbols only change
    for values within that noise of a rounding boundary."""
    point = TABLES.points[1]
    rng = np.random.default_rng(7)
    y = rng.normal(0, 2, (SHAPE[0], 4000)).astype(np.float32)
    noise = (rng.uniform(-1, 1, y.shape) * 1e-4 / point.gain[:, None]).astype(np.float32)
    frac = np.abs(y * point.gain[:, None] - np.floor(y * point.gain[:, None]) - 0.5)
    clear = frac > 1e-3  # farther from a boundary than the noise can move
    same = point.symbols(y) == point.symbols(y + noise)
    assert same[clear].all() and clear.mean() > 0.99


def test_nan_input_is_refused_on_encode():
    y = Y.copy()
    y[2, 1, 1] = np.nan
    with pytest.raises(CodecError, match="NaN or Inf"):
        encode(y, "eb-0/1", tables=TABLES)


def test_codec_ids_and_the_models_codecs():
    assert model_codecs(None) == CODECS
    assert model_codecs(TABLES) == CODECS + ("eb-0/1", "eb-1/1")
    half = len(ENTROPY_CODECS) // 2  # eb-<k>/1, then ebc-<k>/1: the same points
    assert [entropy_point(c) for c in ENTROPY_CODECS] == 2 * list(range(half))
    assert ENTROPY_CODECS[half:] == tuple(f"ebc-{k}/1" for k in range(half))
    assert entropy_point("q4-zstd/1") is None
    with pytest.raises(CodecError, match="entropy-coded"):
        codec_bits("eb-0/1")
    with pytest.raises(CodecError, match="unsupported version 2"):
        encode(Y, "eb-0/2", tables=TABLES)
    assert tables_of(None) is None and tables_of(VECTOR["tables"]).codec_ids == TABLES.codec_ids


# ---------------------------------------------------------------- hostile payloads

def test_truncated_payloads_are_rejected():
    data = _tensor().data
    for cut in range(1, len(data)):
        with pytest.raises(CodecError) as info:
            decode(_tensor(data=data[:-cut]), tables=TABLES)
        assert info.value.reason == "entropy"


def test_header_fields_are_checked_before_decoding():
    body = _tensor().data[6:]
    _rejected(_tensor(data=b""), "shorter than its 6-byte header")
    _rejected(_tensor(data=struct.pack("<BBI", 0x28, 1, 60) + body), "starts with 0x28")
    _rejected(_tensor(data=struct.pack("<BBI", 0xEB, 0, 60) + body), "says operating point 0")
    _rejected(_tensor(data=struct.pack("<BBI", 0xEB, 1, 61) + body), "declares 61 symbols")
    _rejected(_tensor(data=struct.pack("<BBI", 0xEB, 1, 60) + body + b"\0"), "whole 32-bit")
    huge = b"\x01" * 4 * (max_words(60) + 1)
    _rejected(_tensor(data=struct.pack("<BBI", 0xEB, 1, 60) + huge), f"at most {max_words(60)}")


def test_unknown_tables_operating_points_and_shapes_are_rejected():
    _rejected(_tensor(), "needs the model's entropy tables", tables=None)
    _rejected(_tensor(codec="eb-5/1", data=struct.pack("<BBI", 0xEB, 5, 60)),
              "operating point 5 is not in the model's tables")
    _rejected(_tensor(shape=(5, 3, 4)), "5 channels, the model's tables have 4")
    _rejected(_tensor(scale=np.ones(4, np.float32)), "carries no scale/offset")


def test_streams_that_do_not_end_in_the_initial_state_are_rejected():
    good = _tensor().data
    _rejected(_tensor(data=good + b"\x07\0\0\0"), "not one stream")
    _rejected(_tensor(data=good[:6] + b"\1\0\0\0" + good[6:]), "not one stream|rejected by")
    _rejected(_tensor(data=good[:-4] + b"\0\0\0\0"), "rejected by the coder")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["eb-0/1", "eb-1/1"]))
def test_random_bytes_only_ever_raise_codec_error(body, codec):
    point = entropy_point(codec)
    for data in (body, struct.pack("<BBI", 0xEB, point, 60) + body):
        try:
            out = decode(_tensor(codec=codec, data=data), tables=TABLES)
        except CodecError as err:
            assert err.reason == "entropy" and UNEXPECTED not in str(err)
        else:  # a valid stream (e.g. the header alone): values the tables can produce
            assert out.shape == SHAPE and np.isfinite(out).all()


def test_a_good_payload_decodes_after_bad_ones():
    for data in (b"", b"\xeb", _tensor().data[:-4]):
        with pytest.raises(CodecError):
            decode(_tensor(data=data), tables=TABLES)
    assert decode(_tensor(), tables=TABLES).shape == SHAPE


# ---------------------------------------------------------------- the tables

def test_integer_frequencies_are_positive_and_sum_to_the_precision():
    for pmf in ([1.0, 0.0], [1e-30, 1.0, 1e-30], np.exp(-np.arange(300) / 3.0)):
        f = integer_frequencies(np.asarray(pmf))
        assert f.sum() == 2**PRECISION and (f >= 1).all() and f.dtype == np.int64
    for pmf in ([1.0], [0.0, 0.0], [1.0, np.nan], [-1.0, 2.0]):
        with pytest.raises(EntropyTablesError):
            integer_frequencies(np.asarray(pmf))


def _mutated(path: tuple, value: object) -> dict:
    block = copy.deepcopy(VECTOR["tables"])
    target = block
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return block


@pytest.mark.parametrize("path, value, message", [
    (("version",), 4, "version 4"),
    (("version",), 2, "context tables: expected an object"),
    (("precision",), 16, "precision 16"),
    (("split",), 3, "split 3"),
    (("operating_points",), [], "list of 1..8"),
    (("operating_points", 1, "gain"), [1.0, 1.0], "2 gains; expected one per channel \\(4"),
    (("operating_points", 0, "gain", 0), 0.0, "gains must be in"),
    (("operating_points", 0, "gain", 0), float("nan"), "gains must be in"),
    (("operating_points", 0, "lo"), [0, 0, 0], "lo must be 4 integers"),
    (("operating_points", 0, "lo", 0), 1.5, "lo must be 4 integers"),
    (("operating_points", 0, "freqs", 0), [2**PRECISION], "2..4096 positive integers"),
    (("operating_points", 0, "freqs", 0), [0, 2**PRECISION], "2..4096 positive integers"),
    (("operating_points", 0, "freqs", 0), [1, 2], "sum to 3"),
    (("operating_points", 0, "extra"), 1, "exactly gain, lo, freqs"),
])
def test_malformed_tables_are_refused(path, value, message):
    with pytest.raises(EntropyTablesError, match=message):
        EntropyTables(_mutated(path, value))
