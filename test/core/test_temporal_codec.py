"""Temporal codecs: keyframes are the base codec bit for bit, skipped tiles keep the previous
reconstruction, a lost / late / reordered frame is refused (never mis-decoded) until the next
keyframe, and hostile payloads are rejected with a reason while the stream keeps working."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from mtl_split_core.codec import CodecError, EncodedTensor, decode, encode
from mtl_split_core.temporal_codec import (
    LATE,
    MALFORMED,
    NEEDS_KEYFRAME,
    KeyframeRequests,
    TemporalDecoder,
    TemporalEncoder,
    base_codec,
    is_keyframe,
    is_temporal,
    parse_temporal,
    tile_grid,
)

SHAPE = (8, 15, 20)  # the tiles of side 4 do not divide it: partial tiles at the edges
CODEC = "t30-s20-q4-zstd/1"
HEADER = struct.Struct("<BBBIII")


def frames(n: int, moving: tuple[slice, slice] = (slice(0, 4), slice(0, 4)), seed: int = 0
           ) -> list[np.ndarray]:
    """``n`` frames where only the ``moving`` region changes (by a lot) from frame to frame."""
    rng = np.random.default_rng(seed)
    still = rng.normal(size=SHAPE).astype(np.float32)
    out = []
    for i in range(n):
        x = still.copy()
        x[:, moving[0], moving[1]] += np.float32(0.7 * i)
        out.append(x)
    return out


def stream(codec: str = CODEC, n: int = 6) -> tuple[TemporalEncoder, list[EncodedTensor],
                                                   list[np.ndarray]]:
    enc = TemporalEncoder(codec)
    xs = frames(n)
    return enc, [enc.encode(x) for x in xs], xs


def replace(t: EncodedTensor, **fields) -> EncodedTensor:
    return dataclasses.replace(t, **fields)


def header(t: EncodedTensor) -> tuple[int, ...]:
    return HEADER.unpack_from(t.data)


def with_header(t: EncodedTensor, **fields) -> EncodedTensor:
    names = ("magic", "flags", "tile", "stream", "frame", "reference")
    values = dict(zip(names, header(t)))
    values.update(fields)
    return replace(t, data=HEADER.pack(*(values[n] for n in names)) + t.data[HEADER.size:])


# ------------------------------------------------------------------------------- codec ids
def test_codec_ids_parse_and_reject_bad_ones():
    spec = parse_temporal("t30-s20-q4-zstd/1")
    assert (spec.keyframe_interval, spec.threshold, spec.base) == (30, 20, "q4-zstd/1")
    assert spec.codec == "t30-s20-q4-zstd/1"
    assert parse_temporal("t1-s0-eb-2/1").base == "eb-2/1"
    assert base_codec("t5-s10-q8-zstd/1") == "q8-zstd/1" and base_codec("q4-zstd/1") == \
        "q4-zstd/1"
    assert is_temporal(CODEC) and not is_temporal("q4-zstd/1") and not is_temporal(None)
    for bad in ("t0-s20-q4-zstd/1", "t3601-s20-q4-zstd/1", "t30-s1001-q4-zstd/1",
                "t30-s20-q4-zstd/2", "t30-s20-webp-q80/1", "t30-s20-t30-s20-q4-zstd/1",
                "t30-q4-zstd/1", 7):
        with pytest.raises(CodecError) as err:
            parse_temporal(bad)
        assert err.value.reason == "codec"


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("base", ["q4-zstd/1", "q8-zstd/1", "f16-zstd/1"])
def test_keyframe_is_the_base_codec_bit_for_bit(base):
    x = frames(1)[0]
    t = TemporalEncoder(f"t30-s20-{base.split('/')[0]}/1").encode(x)
    assert is_keyframe(t)
    plain = encode(x, base)
    assert t.data[HEADER.size:] == plain.data
    np.testing.assert_array_equal(t.scale, plain.scale)
    got = TemporalDecoder().decode(t)
    assert got.tobytes() == decode(plain).tobytes()


def test_skipped_tiles_reuse_the_previous_reconstruction_and_deltas_are_small():
    _, coded, xs = stream()
    decoder = TemporalDecoder()
    previous = None
    for i, (t, x) in enumerate(zip(coded, xs)):
        got = decoder.decode(t)
        assert is_keyframe(t) == (i == 0)
        if previous is not None:
            # Only the first tile (rows 0-3, cols 0-3) moved: everything else is the reference.
            np.testing.assert_array_equal(got[:, 4:, :], previous[:, 4:, :])
            np.testing.assert_array_equal(got[:, :, 4:], previous[:, :, 4:])
            assert t.nbytes < coded[0].nbytes / 3
        # The moved tile is coded: its error is the base codec's (half a q4 step).
        step = (x.reshape(8, -1).max(1) - x.reshape(8, -1).min(1)) / 15
        assert (np.abs(got[:, :4, :4] - x[:, :4, :4]) <= step[:, None, None] + 1e-4).all()
        previous = got


def test_a_still_scene_costs_a_header_and_a_bitmap():
    enc, decoder = TemporalEncoder(CODEC), TemporalDecoder()
    x = frames(1)[0]
    first = decoder.decode(enc.encode(x))
    t = enc.encode(x)
    rows, cols = tile_grid(SHAPE, 4)
    assert len(t.data) == HEADER.size + (rows * cols + 7) // 8 and t.nbytes == len(t.data)
    np.testing.assert_array_equal(decoder.decode(t), first)


def test_threshold_zero_codes_every_tile_and_interval_sets_keyframes():
    enc = TemporalEncoder("t3-s0-q4-zstd/1")
    coded = [enc.encode(x) for x in frames(7)]
    assert [is_keyframe(t) for t in coded] == [True, False, False, True, False, False, True]
    decoder = TemporalDecoder()
    for t, x in zip(coded, frames(7)):
        got = decoder.decode(t)
        assert np.abs(got - x).max() < 0.5  # every tile coded: only the quantization error


def test_encoder_tracks_the_decoders_reconstruction_so_skips_do_not_drift():
    """A slow drift below the threshold per frame is skipped until the accumulated change
    against the decoder's reconstruction crosses it, then coded: the error stays bounded."""
    enc, decoder = TemporalEncoder("t1000-s50-q4-zstd/1"), TemporalDecoder()
    x = frames(1)[0]
    span = float(x.max() - x.min())
    for i in range(60):
        y = x + np.float32(0.01 * span * i)
        got = decoder.decode(enc.encode(y))
        assert np.abs(got - y).mean() < 0.08 * span


def test_entropy_base_codec_round_trip():
    from mtl_split_core.entropy_tables import tables_of
    from mtl_split_core.runtime.model_files import load_model_param
    net, _ = load_model_param("default")
    tables = tables_of(net.config.entropy)
    assert tables is not None
    rng = np.random.default_rng(1)
    x = rng.normal(size=(tables.channels, 15, 20)).astype(np.float32)
    enc, decoder = TemporalEncoder("t30-s20-eb-1/1", tables), TemporalDecoder()
    key = enc.encode(x)
    assert decoder.decode(key, tables=tables).tobytes() == decode(
        encode(x, "eb-1/1", tables=tables), tables=tables).tobytes()
    y = x.copy()
    y[:, 8:, 8:] += 3.0
    delta = enc.encode(y)
    assert header(delta)[1] == 0  # values, not residuals: the tables model values
    got = decoder.decode(delta, tables=tables)
    np.testing.assert_array_equal(got[:, :4, :4], decoder_reference(key, tables)[:, :4, :4])


def decoder_reference(t: EncodedTensor, tables) -> np.ndarray:
    return TemporalDecoder().decode(t, tables=tables)


# ------------------------------------------------------------------------------- the stream
def test_lost_frame_is_refused_until_the_next_keyframe_and_never_corrupts():
    enc = TemporalEncoder("t5-s20-q4-zstd/1")
    xs = frames(12)
    coded = [enc.encode(x) for x in xs]
    reference, decoder = TemporalDecoder(), TemporalDecoder()
    expected = [reference.decode(t) for t in coded]
    outcome = []
    for i, t in enumerate(coded):
        if i == 2:  # lost on the way
            continue
        try:
            got = decoder.decode(t)
        except CodecError as err:
            outcome.append(err.reason)
            continue
        np.testing.assert_array_equal(got, expected[i])
        outcome.append("ok")
    # frames 3, 4 refer to lost ones; frame 5 is a keyframe (every 5) and restores the stream.
    assert outcome == ["ok", "ok", NEEDS_KEYFRAME, NEEDS_KEYFRAME] + ["ok"] * 7


def test_keyframe_request_restores_at_once():
    enc = TemporalEncoder(CODEC)
    xs = frames(6)
    decoder = TemporalDecoder()
    decoder.decode(enc.encode(xs[0]))
    enc.encode(xs[1])  # lost
    with pytest.raises(CodecError) as err:
        decoder.decode(enc.encode(xs[2]))
    assert err.value.reason == NEEDS_KEYFRAME
    enc.request_keyframe()
    t = enc.encode(xs[3])
    assert is_keyframe(t)
    decoder.decode(t)
    assert not is_keyframe(u := enc.encode(xs[4]))
    decoder.decode(u)


def test_reordered_and_duplicated_frames_are_late_and_leave_the_state_alone():
    _, coded, _ = stream(n=5)
    decoder, reference = TemporalDecoder(), TemporalDecoder()
    expected = [reference.decode(t) for t in coded]
    decoder.decode(coded[0])
    decoder.decode(coded[1])
    decoder.decode(coded[2])
    for stale in (coded[1], coded[2]):
        with pytest.raises(CodecError) as err:
            decoder.decode(stale)
        assert err.value.reason == LATE
    np.testing.assert_array_equal(decoder.decode(coded[3]), expected[3])


def test_another_stream_restarted_server_and_reset_need_a_keyframe():
    _, coded, _ = stream(n=3)
    fresh = TemporalDecoder()  # a restarted server, or the robot's new server
    with pytest.raises(CodecError) as err:
        fresh.decode(coded[1])
    assert err.value.reason == NEEDS_KEYFRAME
    _, other, _ = stream(n=2)  # another encoder: another stream id
    fresh.decode(other[0])
    with pytest.raises(CodecError) as err:
        fresh.decode(coded[1])
    assert err.value.reason == NEEDS_KEYFRAME
    fresh.reset()
    with pytest.raises(CodecError):
        fresh.decode(other[1])


def test_frames_kept_out_of_the_stream_are_self_contained_and_move_nothing():
    enc = TemporalEncoder(CODEC)
    xs = frames(4)
    server, local = TemporalDecoder(), TemporalDecoder()
    server.decode(enc.encode(xs[0]))
    side = enc.encode(xs[1], streamed=False)  # served on the robot only
    assert is_keyframe(side)
    local.decode(side)
    t = enc.encode(xs[2])
    assert not is_keyframe(t)
    server.decode(t)  # the stream went on from frame 0
    assert is_keyframe(enc.encode(xs[3], keyframe=True))


def test_keyframe_requests_ask_once_per_burst():
    requests = KeyframeRequests()
    assert requests.refused(5)  # nothing known: ask
    enc = TemporalEncoder(CODEC)
    xs = frames(3)
    requests.sent(10, enc.encode(xs[0]))  # a keyframe at stamp 10
    requests.sent(11, enc.encode(xs[1]))  # a delta
    requests.sent(12, encode(xs[2], "q4-zstd/1"))  # not temporal: ignored
    assert not requests.refused(9)  # before the newest keyframe: that keyframe answers it
    assert requests.refused(11)
    assert (requests.keyframes_sent, requests.requests) == (1, 2)


# ------------------------------------------------------------------------------- hostile input
@pytest.fixture
def held() -> tuple[TemporalDecoder, list[EncodedTensor]]:
    _, coded, _ = stream(n=4)
    decoder = TemporalDecoder()
    decoder.decode(coded[0])
    return decoder, coded


def hostile(coded: list[EncodedTensor]) -> dict[str, EncodedTensor]:
    delta, key = coded[1], coded[0]
    rows, cols = tile_grid(SHAPE, 4)
    bitmap_end = HEADER.size + (rows * cols + 7) // 8
    return {
        "empty": replace(delta, data=b""),
        "truncated header": replace(delta, data=delta.data[:HEADER.size - 1]),
        "truncated bitmap": replace(delta, data=delta.data[:HEADER.size + 1]),
        "truncated body": replace(delta, data=delta.data[:-3]),
        "not bytes": replace(delta, data=[1, 2, 3]),  # type: ignore[arg-type]
        "magic": with_header(delta, magic=0x7F),
        "flags": with_header(delta, flags=0x82),
        "tile zero": with_header(delta, tile=0),
        "tile other": with_header(delta, tile=5),
        "keyframe naming another": with_header(key, reference=7),
        "keyframe as a residual": with_header(key, flags=0x03),
        "delta not after its reference": with_header(delta, frame=1000),
        "bitmap padding set": replace(delta, data=delta.data[:bitmap_end - 1]
                                      + bytes([delta.data[bitmap_end - 1] | 0x80])
                                      + delta.data[bitmap_end:]),
        "bitmap with more tiles": replace(delta, data=delta.data[:HEADER.size] + b"\xff\xff\xff"
                                          + delta.data[bitmap_end:]),
        "no tiles but values": replace(delta, data=delta.data[:HEADER.size] + b"\0\0\0"
                                       + delta.data[bitmap_end:]),
        "wrong shape": replace(delta, shape=(8, 16, 20)),
        "scale count": replace(delta, scale=delta.scale[:3]),
        "keyframe garbage body": replace(key, data=key.data[:HEADER.size] + b"\x28\xb5junk"),
        "absurd counters": with_header(delta, frame=0xFFFFFFFF, reference=0xFFFFFFFE),
        "bad codec id": replace(delta, codec="t30-s20-q5-zstd/1"),
    }


@pytest.mark.parametrize("case", list(hostile(stream(n=2)[1])))
def test_hostile_payloads_are_rejected_with_a_reason_and_the_next_frame_works(held, case):
    decoder, coded = held
    bad = hostile(coded)[case]
    with pytest.raises(CodecError) as err:
        decoder.decode(bad)
    assert err.value.reason in (MALFORMED, NEEDS_KEYFRAME, LATE, "payload", "codec"), case
    assert "unexpected" not in str(err.value)
    # The state is as before: the real next delta decodes, and so does the one after it.
    reference = TemporalDecoder()
    expected = [reference.decode(t) for t in coded]
    np.testing.assert_array_equal(decoder.decode(coded[1]), expected[1])
    np.testing.assert_array_equal(decoder.decode(coded[2]), expected[2])


def test_residuals_that_overflow_the_reference_are_rejected(held):
    """Two forged deltas of huge values: the first makes the reference ~3e38, the second
    would add another 3e38; the decoder rejects it and keeps the first's reconstruction."""
    decoder, coded = held
    huge = {"scale": np.zeros(8, np.float32), "offset": np.full(8, 3e38, np.float32)}
    first = decoder.decode(replace(coded[1], **huge))
    with pytest.raises(CodecError) as err:
        decoder.decode(replace(coded[2], **huge))
    assert err.value.reason == MALFORMED and "overflow" in str(err.value)
    after = decoder.decode(coded[2])  # the real delta: adds to the first's reconstruction
    np.testing.assert_array_equal(after[:, 4:, :], first[:, 4:, :])
    assert np.isfinite(after).all()


def test_zstd_bases_send_residuals():
    _, coded, _ = stream(n=2)
    assert header(coded[1])[1] == 0x02 and header(coded[0])[1] == 0x01


def test_delta_before_any_keyframe_is_refused(held):
    _, coded = held
    with pytest.raises(CodecError) as err:
        TemporalDecoder().decode(coded[2])
    assert err.value.reason == NEEDS_KEYFRAME
