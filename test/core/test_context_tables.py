"""Context-adaptive entropy codecs (ebc-<k>/1): eb-k's symbols exactly (the decoded tensor is
identical), fewer bytes where neighbours predict a symbol, integer tables from the card used
exactly by the coder, the committed vector bit for bit, hostile payloads and cards refused."""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from pathlib import Path

import constriction
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_split_core.codec import UNEXPECTED, CodecError, EncodedTensor, decode, encode
from mtl_split_core.context_tables import (
    PASSES,
    SCHEME,
    SPATIAL,
    ContextCoder,
    decode_freqs,
    encode_freqs,
    parse_context,
)
from mtl_split_core.entropy_tables import (
    PRECISION,
    EntropyTables,
    EntropyTablesError,
    tables_of,
)
from mtl_split_core.model.context_fit import fit_context
from support.entropy_blocks import correlated, v1_tables

HERE = Path(__file__).parent
VECTOR = json.loads((HERE / "context_vector_v1.json").read_text())
TABLES = EntropyTables(VECTOR["tables"])
SHAPE = tuple(VECTOR["shape"])
Y = np.frombuffer(bytes.fromhex(VECTOR["input_f32_le_hex"]), "<f4").reshape(SHAPE)


def make_vector() -> dict:
    """The committed vector (test/core/context_vector_v1.json): how it was made."""
    shape = (3, 5, 7)
    train = correlated(400, (3, 12, 12), 0)
    block = fit_context(EntropyTables(v1_tables(train, [1.5, 4.0])), train)
    y = correlated(1, shape, 1)[0]
    tables = EntropyTables(block)
    cases = []
    for codec in ("ebc-0/1", "ebc-1/1"):
        enc = encode(y, codec, tables=tables)
        cases.append({"codec": codec, "payload_hex": enc.data.hex(), "decoded_f32_le_sha256":
                      hashlib.sha256(decode(enc, tables=tables).astype("<f4").tobytes())
                      .hexdigest()})
    return {"about": "make_vector() in test_context_tables.py", "tables": block,
            "shape": list(shape), "input_f32_le_hex": y.astype("<f4").tobytes().hex(),
            "cases": cases}


# ---------------------------------------------------------------- bit-exact across machines

@pytest.mark.parametrize("case", VECTOR["cases"], ids=lambda c: c["codec"])
def test_committed_vector_decodes_bit_exactly_and_reencodes_to_the_same_bytes(case):
    payload = bytes.fromhex(case["payload_hex"])
    empty = np.zeros(0, np.float32)
    decoded = decode(EncodedTensor(case["codec"], SHAPE, empty, empty, payload), tables=TABLES)
    assert hashlib.sha256(decoded.astype("<f4").tobytes()).hexdigest() == \
        case["decoded_f32_le_sha256"]
    assert encode(Y, case["codec"], tables=TABLES).data == payload
    assert encode(decoded, case["codec"], tables=TABLES).data == payload


def test_the_committed_vector_is_what_make_vector_makes():
    """The fit is deterministic (float64 numpy, no randomness): the same tables and payloads."""
    assert make_vector() == VECTOR


SHIPPED = HERE / "context_vector_default.json"


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped ebc card")
def test_the_shipped_cards_context_tables_decode_their_committed_payloads_bit_exactly():
    vector = json.loads(SHIPPED.read_text())
    card = json.loads((HERE.parents[1] / vector["model"] / "card.json").read_text())
    assert card["fingerprint"] == vector["fingerprint"]
    tables = tables_of(card["entropy"])
    shape = tuple(vector["shape"])
    y = np.frombuffer(bytes.fromhex(vector["input_f32_le_hex"]), "<f4").reshape(shape)
    empty = np.zeros(0, np.float32)
    for case in vector["cases"]:
        payload = bytes.fromhex(case["payload_hex"])
        decoded = decode(EncodedTensor(case["codec"], shape, empty, empty, payload),
                         tables=tables)
        assert hashlib.sha256(decoded.astype("<f4").tobytes()).hexdigest() == \
            case["decoded_f32_le_sha256"]
        assert encode(y, case["codec"], tables=tables).data == payload


# ---------------------------------------------------------------- the same symbols, fewer bytes

@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 1, 1), (3, 1, 9), (3, 8, 2)])
def test_ebc_decodes_to_exactly_ebs_tensor(shape):
    for k in (0, 1):
        for seed in range(5):
            y = correlated(1, shape, 10 + seed)[0] * (1 + 3 * seed)  # beyond the tables too
            eb = decode(encode(y, f"eb-{k}/1", tables=TABLES), tables=TABLES)
            ebc = decode(encode(y, f"ebc-{k}/1", tables=TABLES), tables=TABLES)
            assert ebc.astype("<f4").tobytes() == eb.astype("<f4").tobytes()


def test_contexts_save_bytes_on_correlated_frames():
    test = correlated(40, (3, 16, 20), 7)  # large enough that the header does not dominate
    for k in (0, 1):
        eb = sum(encode(y, f"eb-{k}/1", tables=TABLES).nbytes for y in test)
        ebc = sum(encode(y, f"ebc-{k}/1", tables=TABLES).nbytes for y in test)
        assert ebc < 0.9 * eb


def test_the_codecs_of_tables_with_and_without_context():
    assert TABLES.codec_ids == ("eb-0/1", "eb-1/1", "ebc-0/1", "ebc-1/1")
    v1 = dict(VECTOR["tables"], version=1)
    del v1["context"]
    assert EntropyTables(v1).codec_ids == ("eb-0/1", "eb-1/1")
    enc = encode(Y, "ebc-0/1", tables=TABLES)
    with pytest.raises(CodecError, match="not in the model's tables") as info:
        decode(enc, tables=EntropyTables(v1))
    assert info.value.reason == "entropy"
    with pytest.raises(CodecError, match="not in the model's tables"):
        encode(Y, "ebc-0/1", tables=EntropyTables(v1))


def test_the_coder_uses_exactly_the_integer_tables():
    """One context, one table: coding m copies of a symbol of frequency f costs
    m * log2(2**P / f) bits (plus the coder's state); f +- 1 would differ by hundreds."""
    freqs = np.array([3, 5, 2**PRECISION - 3 - 5 - 7, 7], np.int64)
    cell = {"w_mean": [0] * (2 + SPATIAL), "w_mag": [0] * (2 + SPATIAL), "mean_edges": [],
            "mag_edges": [], "freqs": encode_freqs(freqs[None])}
    block = {"scheme": SCHEME, "operating_points": [{"center": [0],
                                                     "passes": [[cell]] * PASSES}]}
    coder = ContextCoder(parse_context(block, [[4]], PRECISION, 4096)[0])
    for symbol in (1, 3):
        ans = constriction.stream.stack.AnsCoder()
        coder.encode(ans, np.full((1, 40 * 50), symbol, np.int32), (1, 40, 50))
        exact = 2000 * np.log2(2**PRECISION / freqs[symbol])
        assert abs(ans.num_bits() - exact) <= 64
        for off in (-1, 1):
            assert abs(ans.num_bits() - 2000 * np.log2(2**PRECISION / (freqs[symbol] + off))) \
                > 200


# ---------------------------------------------------------------- hostile payloads

def _tensor(codec: str = "ebc-1/1", data: bytes | None = None) -> EncodedTensor:
    empty = np.zeros(0, np.float32)
    return EncodedTensor(codec, SHAPE, empty, empty.copy(),
                         encode(Y, codec, tables=TABLES).data if data is None else data)


def test_truncated_corrupted_and_mislabelled_payloads_are_rejected():
    good = _tensor().data
    for cut in range(len(good)):
        with pytest.raises(CodecError) as info:
            decode(_tensor(data=good[:cut]), tables=TABLES)
        assert info.value.reason == "entropy" and UNEXPECTED not in str(info.value)
    eb_payload = encode(Y, "eb-1/1", tables=TABLES).data
    with pytest.raises(CodecError, match="starts with 0xEB, expected 0xEC"):
        decode(_tensor(data=eb_payload), tables=TABLES)
    with pytest.raises(CodecError, match="declares 7 symbols"):
        decode(_tensor(data=struct.pack("<BBI", 0xEC, 1, 7) + good[6:]), tables=TABLES)
    with pytest.raises(CodecError, match="not one stream|rejected by"):
        decode(_tensor(data=good + b"\x07\0\0\0"), tables=TABLES)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["ebc-0/1", "ebc-1/1"]))
def test_random_bytes_only_ever_raise_codec_error(body, codec):
    n = int(np.prod(SHAPE))
    for data in (body, struct.pack("<BBI", 0xEC, int(codec[4]), n) + body):
        try:
            out = decode(_tensor(codec, data), tables=TABLES)
        except CodecError as err:
            assert err.reason == "entropy" and UNEXPECTED not in str(err)
        else:
            assert out.shape == SHAPE and np.isfinite(out).all()


def test_a_good_payload_decodes_after_bad_ones():
    for data in (b"", b"\xec", _tensor().data[:-4]):
        with pytest.raises(CodecError):
            decode(_tensor(data=data), tables=TABLES)
    assert decode(_tensor(), tables=TABLES).shape == SHAPE


def test_a_huge_shape_is_refused_before_any_decoding():
    enc = EncodedTensor("ebc-0/1", (3, 60000, 60000), np.zeros(0, np.float32),
                        np.zeros(0, np.float32), _tensor().data)
    with pytest.raises(CodecError, match="over the cap"):
        decode(enc, tables=TABLES)


# ---------------------------------------------------------------- malformed cards

def _mutated(path: tuple, value: object) -> dict:
    block = copy.deepcopy(VECTOR["tables"])
    target = block["context"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return block


CELL = ("operating_points", 0, "passes", 0, 1)


@pytest.mark.parametrize("path, value, message", [
    (("scheme",), "raster/1", "scheme 'raster/1'"),
    (("operating_points",), [], "list of 2"),
    (("operating_points", 0, "center"), [0, 0], "center must be 3 integers"),
    (("operating_points", 0, "center", 0), 10**6, "center must be 3 integers"),
    (("operating_points", 0, "passes"), [[]], "passes must be 2 lists of 3"),
    ((*CELL, "w_mean", 1), 1, "not yet decoded must be 0"),  # channel 1 itself
    ((*CELL, "w_mag", 6), 1, "not yet decoded must be 0"),   # spatial in pass 0
    ((*CELL, "w_mag", 0), 2**20, "w_mag must be 9 integers within"),
    ((*CELL, "mean_edges"), [3, 3], "strictly ascending"),
    ((*CELL, "freqs"), "AAAA", "freqs must be"),
    ((*CELL, "freqs"), 5, "freqs must be"),
    ((*CELL, "extra"), 1, "must have exactly"),
])
def test_malformed_context_tables_are_refused(path, value, message):
    with pytest.raises(EntropyTablesError, match=message):
        EntropyTables(_mutated(path, value))


def test_tables_that_do_not_sum_to_the_precision_are_refused():
    cell = VECTOR["tables"]["context"]["operating_points"][0]["passes"][1][2]
    n = (len(cell["mean_edges"]) + 1) * (len(cell["mag_edges"]) + 1)
    freqs = decode_freqs(cell["freqs"], n, len(VECTOR["tables"]["operating_points"][0]
                                               ["freqs"][2]))
    assert freqs is not None
    for delta in (1, -1):
        bad = freqs.copy()
        bad[0, 0] += delta
        with pytest.raises(EntropyTablesError, match="summing to 2\\*\\*24"):
            EntropyTables(_mutated(("operating_points", 0, "passes", 1, 2, "freqs"),
                                   encode_freqs(bad)))
    assert decode_freqs(cell["freqs"] + "A", n, 3) is None


def test_chunked_coder_calls_make_the_same_stream(monkeypatch):
    """The probability rows are built CHUNK symbols at a time (a bounded allocation whatever
    the shape); the payload does not depend on the chunk size."""
    import mtl_split_core.context_tables as ct

    y = correlated(1, (3, 16, 20), 3)[0]
    whole = {c: encode(y, c, tables=TABLES).data for c in ("ebc-0/1", "ebc-1/1")}
    monkeypatch.setattr(ct, "CHUNK", 7)
    empty = np.zeros(0, np.float32)
    for codec, payload in whole.items():
        assert encode(y, codec, tables=TABLES).data == payload
        decoded = decode(EncodedTensor(codec, (3, 16, 20), empty, empty, payload), tables=TABLES)
        eb = decode(encode(y, codec.replace("ebc-", "eb-"), tables=TABLES), tables=TABLES)
        assert decoded.tobytes() == eb.tobytes()
