"""Planner arithmetic on a synthetic profile, profile files, and choices as bandwidth falls."""

import json
import math

import pytest

from mtl_split_core.plan.link import MTU_PAYLOAD, Link
from mtl_split_core.plan.planner import accuracy_drops, choose, load_accuracy_drops, options
from mtl_split_core.plan.profile import PROFILE_VERSION, load_profile, save_profile


def _profile(edge_scale=1.0):
    """A hand-made model's profile on a device ``edge_scale`` times slower than the reference."""
    def split(edge, server, nbytes):
        return {"edge_ms": edge * edge_scale, "server_ms": server * edge_scale,
                "shape": [1, 1, 1], "codecs": {"q8-zstd/1": {"bytes": nbytes, "encode_ms": 1.0,
                                                             "decode_ms": 0.5}}}
    return {"version": PROFILE_VERSION, "device": "synthetic", "whole_ms": 40.0 * edge_scale,
            "jpeg": {"bytes": 50_000, "encode_ms": 2.0, "decode_ms": 1.0},
            "splits": {"s8": split(10.0, 30.0, 20_000), "s16": split(25.0, 15.0, 2_000)}}


def test_link_parsing_and_transfer_arithmetic():
    link = Link.parse("20mbit,10ms")
    assert (link.bandwidth_bps, link.rtt_ms, link.loss) == (20e6, 10.0, 0.0)
    # 25,000 bytes = 200,000 bits at 20 Mbit/s = 10 ms, plus half the RTT.
    assert link.transfer_ms(25_000) == pytest.approx(15.0)
    lossy = Link.parse("20mbit,10ms,1%")
    n = math.ceil(25_000 / MTU_PAYLOAD)
    assert lossy.transfer_ms(25_000) == pytest.approx(10 / 0.99 + 5 + (1 - 0.99 ** n) * 10)
    for bad in ("", "fast", "20mbit,10", "20mbit,10ms,150%"):
        with pytest.raises(ValueError):
            Link.parse(bad)


def test_latency_and_fps_of_each_option():
    edge, server = _profile(edge_scale=1.0), _profile(edge_scale=1.0)
    opts = {o.name: o for o in options(edge, server, Link.parse("16mbit,0ms"))}
    s16 = opts["s16 q8-zstd/1"]
    # edge 25 + encode 1; 2,000 B at 16 Mbit/s = 1 ms; decode 0.5 + server 15.
    assert (s16.edge_ms, s16.link_ms, s16.server_ms) == pytest.approx((26.0, 1.0, 15.5))
    assert s16.latency_ms == pytest.approx(42.5) and s16.fps == pytest.approx(1000 / 26)
    remote = opts["REMOTE-ONLY (JPEG q90)"]
    assert remote.latency_ms == pytest.approx(2 + 25 + 1 + 40)   # 50 kB at 16 Mbit = 25 ms
    assert opts["LOCAL-ONLY"].latency_ms == 40.0


def test_choice_moves_from_remote_to_split_to_local_as_bandwidth_falls():
    slow_robot, fast_server = _profile(edge_scale=4.0), _profile(edge_scale=0.25)
    picks = {}
    for spec in ("1000mbit,1ms", "2mbit,1ms", "0.1mbit,1ms"):
        picks[spec] = choose(options(slow_robot, fast_server, Link.parse(spec)),
                             allow_unknown=True).name
    # 1 Gbit/s: JPEG 2 + 0.4 + 0.5 + 1 + 10 = 14 ms beats s16 (101 + 1 + 4.3) and local (160).
    assert picks["1000mbit,1ms"] == "REMOTE-ONLY (JPEG q90)"
    # 2 Mbit/s: s16 101 + 8.5 + 4.3 = 114 ms; JPEG 2 + 200.5 + 11 = 213; local 160.
    assert picks["2mbit,1ms"] == "s16 q8-zstd/1"
    # 0.1 Mbit/s: s16 needs 160 ms on the link alone: local (160 ms) wins.
    assert picks["0.1mbit,1ms"] == "LOCAL-ONLY"


def test_accuracy_budget_filters_options():
    results = [{"split": "s16", "codec": "float", "detection": {"mAP50": 0.8},
                "segmentation": {"mIoU": 0.8}, "depth": {"delta1": 0.8}},
               {"split": "s16", "codec": "q8-zstd/1", "detection": {"mAP50": 0.76},
                "segmentation": {"mIoU": 0.8}, "depth": {"delta1": 0.8}}]
    drops = accuracy_drops(results)
    assert drops == {"s16 q8-zstd/1": pytest.approx(0.05)}
    opts = options(_profile(4.0), _profile(0.25), Link.parse("2mbit,1ms"), drops)
    assert choose(opts, max_drop=0.10).name == "s16 q8-zstd/1"
    assert not choose(opts, max_drop=0.01).name.startswith("s")  # 5% drop is too much


def test_accuracy_drops_of_several_splits_are_against_the_best_float():
    def row(split, codec, m):
        return {"split": split, "codec": codec, "detection": {"mAP50": m},
                "segmentation": {"mIoU": 0.8}, "depth": {"delta1": 0.9}}

    drops = accuracy_drops([row("s16", "float", 0.8), row("s16", "q4-zstd/1", 0.8),
                            row("s8", "float", 0.72), row("s8", "q4-zstd/1", 0.72)])
    assert drops == {"s16 q4-zstd/1": 0.0, "s8 q4-zstd/1": pytest.approx(0.1)}


def test_accuracy_files_load_or_fail_with_one_input_error(tmp_path):
    from mtl_split_core.errors import InputError

    good = tmp_path / "eval.json"
    good.write_text(json.dumps([
        {"split": "s16", "codec": c, "detection": {"mAP50": m}} for c, m in
        (("float", 0.8), ("q4-zstd/1", 0.72))]))
    assert load_accuracy_drops(good) == {"s16 q4-zstd/1": pytest.approx(0.1)}
    for name, text in (("dict.json", "{}"), ("bad.json", "{not json"),
                       ("nofloat.json", json.dumps([{"split": "s16", "codec": "q4-zstd/1"}]))):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match="not usable `mtl-split eval --out` results"):
            load_accuracy_drops(tmp_path / name)
    with pytest.raises(InputError, match="not usable"):
        load_accuracy_drops(tmp_path / "missing.json")


def test_profile_file_round_trip(tmp_path):
    save_profile(_profile(), tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == _profile()
    (tmp_path / "bad.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="version"):
        load_profile(tmp_path / "bad.json")


def test_unusable_inputs_raise_the_one_input_error(tmp_path):
    from mtl_split_core.errors import InputError
    from mtl_split_core.plan.planner import Option

    for bad in ("nanmbit", "20mbit,1e3ms", "20mbit,xms"):
        with pytest.raises(InputError):
            Link.parse(bad)
    with pytest.raises(InputError, match="no option"):
        choose([Option("s16 q8-zstd/1", "s16", "q8-zstd/1", 1.0, 1.0, 1.0, 1.0, 0.5)],
               max_drop=0.01)
    with pytest.raises(InputError, match="float"):
        accuracy_drops([{"codec": "q8-zstd/1", "split": "s16"}])
    other_model = _profile()
    del other_model["splits"]["s8"]
    with pytest.raises(InputError, match="lacks split s8"):
        options(_profile(), other_model, Link.parse("20mbit"))
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        load_profile(path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="version"):
        load_profile(path)


def _with_upload(profile, nbytes=1_500.0, edge_ms=0.5, codecs=("webp-q80/1",)):
    """``profile`` with split input measured (image upload)."""
    profile["input"] = {"edge_ms": edge_ms, "server_ms": profile["whole_ms"], "shape": [3, 1, 1],
                        "codecs": {c: {"bytes": nbytes, "encode_ms": 2.0, "decode_ms": 1.0}
                                   for c in codecs}}
    return profile


def test_image_upload_is_an_option_like_any_split():
    edge = _with_upload(_profile(edge_scale=4.0), codecs=("webp-q80/1", "avif-q60/1"))
    server = _with_upload(_profile(edge_scale=0.25))  # this server's Pillow lacks AVIF
    opts = {o.name: o for o in options(edge, server, Link.parse("16mbit,0ms"),
                                       {"input webp-q80/1": 0.004})}
    upload = opts["input webp-q80/1"]
    # edge 0.5 * 1 (letterbox -> uint8) + encode 2; 1,500 B at 16 Mbit/s = 0.75 ms; decode 1
    # + the whole network on the server (40 * 0.25).
    assert (upload.split, upload.codec) == ("input", "webp-q80/1")
    assert (upload.edge_ms, upload.link_ms, upload.server_ms) == pytest.approx((2.5, 0.75, 11.0))
    assert upload.accuracy_drop == 0.004 and "input avif-q60/1" not in opts
    # A slow robot on a fast link: uploading the image beats every split and local.
    assert choose(list(opts.values()), max_drop=0.01, allow_unknown=True) is upload
    # Profiles from before split input: no such option, the rest unchanged.
    old = options(_profile(4.0), server, Link.parse("16mbit,0ms"))
    assert [o.name for o in old] == [n for n in opts if not n.startswith("input")]


def _with_eb(profile, codecs=("eb-0/1", "eb-1/1")):
    """``profile`` with a model's entropy-coded codecs measured at s16."""
    profile["splits"]["s16"]["codecs"].update(
        {c: {"bytes": 300.0 * (i + 1), "encode_ms": 0.5, "decode_ms": 0.5}
         for i, c in enumerate(codecs)})
    return profile


def test_options_one_profile_lacks_are_said_and_skipped_not_fatal():
    """A robot profile of a model with entropy tables and image upload beside a server profile
    from before both: the common options remain, the others are named with the reason."""
    from mtl_split_core.plan.planner import TEMPORAL, unmatched

    edge = _with_upload(_with_eb(_profile(4.0)))
    server = _profile(0.25)
    names = {o.name for o in options(edge, server, Link.parse("2mbit,1ms"))}
    assert "s16 eb-0/1" not in names and "s16 q8-zstd/1" in names
    assert unmatched(edge, server) == {
        "s16 eb-0/1": "the server profile lacks it", "s16 eb-1/1": "the server profile lacks it",
        "input webp-q80/1": "the server profile has no image upload (input) entry",
        TEMPORAL: "neither profile has a temporal entry (temporal codecs streamed over sim "
                  "sequences: re-measure them with `mtl-split profile`)"}
    assert unmatched(server, edge)["s16 eb-0/1"] == "the robot profile lacks it"
    assert set(unmatched(edge, _with_upload(_with_eb(_profile(0.25))))) == {TEMPORAL}
    assert "neither profile has an image upload" in unmatched(_profile(), _profile())["input"]


def test_only_options_of_measured_fidelity_are_chosen():
    """With accuracy every option needs its own row; without any, the fixed-bit codecs still
    qualify (not filtered) but an eb or image codec never does: no formula gives its
    fidelity."""
    from mtl_split_core.plan.planner import left_out, unweighable

    edge, server = _with_upload(_with_eb(_profile(4.0))), _with_upload(_with_eb(_profile(0.25)))
    assert unweighable("s16", "q4-zstd/1", None) is None
    assert "no measured accuracy" in unweighable("s16", "eb-0/1", None)
    assert "no measured accuracy" in unweighable("input", "webp-q80/1", {})
    assert unweighable("s16", "eb-0/1", {"s16 eb-0/1": 0.01}) is None
    # 2 Mbit/s: eb-0 (300 B) needs 106.5 ms, s16 q8 (2,000 B) 113.8: without accuracy eb-0 is
    # left out.
    thin = Link.parse("2mbit,1ms")
    assert choose(options(edge, server, thin), allow_unknown=True).name == "s16 q8-zstd/1"
    assert set(left_out(edge, server, None)) == {"s16 eb-0/1", "s16 eb-1/1",
                                                 "input webp-q80/1", "temporal"}
    drops = {"s16 eb-0/1": 0.005, "s16 q8-zstd/1": 0.0}
    assert choose(options(edge, server, thin, drops)).name == "s16 eb-0/1"
    assert left_out(edge, server, drops)["s8 q8-zstd/1"] == "no measured accuracy for it"


T30 = "t30-s20-q8-zstd/1"


def _with_stream(profile, codec=T30, mean=(600.0, 1.5, 0.8), keyframe=(2_000.0, 3.0, 1.0),
                 vs_base=0.002):
    """``profile`` with temporal ``codec`` streamed at s16: (bytes, encode ms, decode ms) of
    the stream's mean frame and of its keyframes; ``vs_base``: its worst relative drop against
    its base on the sequences."""
    def times(values):
        return dict(zip(("bytes", "encode_ms", "decode_ms"), values))
    profile["temporal"] = {"sequences": 2, "splits": {"s16": {"codecs": {codec: {
        "base": "q8-zstd/1", "keyframe_interval": 30, **times(mean),
        "keyframe": times(keyframe), "accuracy_vs_base": vs_base}}}}}
    return profile


def test_a_temporal_codec_is_an_option_by_its_streams_means_and_its_keyframes_latency():
    edge, server = _with_stream(_profile(4.0)), _with_stream(_profile(0.25))
    drops = {"s16 q8-zstd/1": 0.004}
    opts = {o.name: o for o in options(edge, server, Link.parse("16mbit,0ms"), drops)}
    t = opts[f"s16 {T30}"]
    # edge 25 * 4 + mean encode 1.5; 600 B at 16 Mbit/s = 0.3 ms; mean decode 0.8 + 15 * 0.25.
    assert (t.edge_ms, t.link_ms, t.server_ms) == pytest.approx((101.5, 0.3, 4.55))
    assert t.bytes == 600.0 and t.keyframe_bytes == 2_000.0
    # Its keyframe: 100 + 3 + 1 ms (2,000 B) + 1 + 3.75 = 108.75 ms against the mean 106.35.
    assert t.worst_latency_ms == pytest.approx(108.75)
    assert t.keyframe_ms == pytest.approx(108.75 - 106.35)
    # Fidelity: the base's drop and what the stream lost against the base, combined.
    assert t.accuracy_drop == pytest.approx(1 - 0.996 * 0.998)
    assert opts["s16 q8-zstd/1"].keyframe_bytes is None  # a per-frame codec: no keyframe
    # 1 Mbit/s: q8 (2,000 B, 16 ms of link) loses to the stream's 600 B (4.8 ms).
    thin = options(edge, server, Link.parse("1mbit,0ms"), drops)
    assert choose(thin, max_drop=0.01).name == f"s16 {T30}"
    assert choose(thin, max_drop=0.005).name != f"s16 {T30}"  # 0.6% > 0.5%


def test_a_streams_fidelity_is_never_above_its_bases_and_its_own_row_wins():
    from mtl_split_core.plan.planner import temporal_drop

    stream = {"accuracy_vs_base": -0.01}  # it scored higher than the base on the sequences
    assert temporal_drop("s16", T30, stream, {"s16 q8-zstd/1": 0.004}) == pytest.approx(0.004)
    assert temporal_drop("s16", T30, stream, {f"s16 {T30}": 0.02,
                                              "s16 q8-zstd/1": 0.004}) == 0.02
    assert temporal_drop("s16", T30, stream, {"s16 q4-zstd/1": 0.0}) is None  # no base row
    assert temporal_drop("s16", T30, {}, {"s16 q8-zstd/1": 0.0}) is None  # nothing measured


def test_temporal_codecs_without_data_are_left_out_and_said():
    from mtl_split_core.plan.planner import TEMPORAL, left_out, unmatched

    edge, old_server = _with_stream(_profile(4.0)), _profile(0.25)
    names = {o.name for o in options(edge, old_server, Link.parse("2mbit,1ms"))}
    assert f"s16 {T30}" not in names
    assert "no temporal entry" in unmatched(edge, old_server)[f"s16 {T30}"]
    other = _with_stream(_profile(0.25), codec="t10-s20-q8-zstd/1")
    assert unmatched(edge, other)[f"s16 {T30}"] == "the server profile did not stream it"
    assert unmatched(other, edge)[f"s16 {T30}"] == "the robot profile did not stream it"
    assert TEMPORAL not in unmatched(edge, old_server)  # one side has them: named per codec
    server = _with_stream(_profile(0.25))
    # No accuracy at all: no formula weighs a stream (never chosen, even allow_unknown).
    assert "no measured accuracy" in left_out(edge, server, None)[f"s16 {T30}"]
    thin = options(edge, server, Link.parse("1mbit,0ms"))
    assert choose(thin, allow_unknown=True).name != f"s16 {T30}"
    # Accuracy without its base's row: named with the reason.
    assert "its base q8-zstd/1" in left_out(edge, server, {"s8 q8-zstd/1": 0.0})[f"s16 {T30}"]
    assert f"s16 {T30}" not in left_out(edge, server, {"s16 q8-zstd/1": 0.0})
