"""measure_profile: split input (image upload) is measured beside every split and codec."""

import numpy as np
import torch

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
from mtl_split_core.plan.link import Link
from mtl_split_core.plan.planner import options
from mtl_split_core.plan.profile import measure_profile, served_splits


def test_the_profile_measures_image_upload_per_image_codec():
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                                        bottlenecks={"s16": 8})).eval()
    card = {"name": "tiny", "fingerprint": "f" * 16, "input_size": [64, 48]}
    yy, xx = np.mgrid[0:96, 0:128]
    frames = [np.stack([xx * 2, yy * 2, (xx + yy + i * 9) % 256], -1).astype(np.uint8)
              for i in range(2)]
    profile = measure_profile(net, card, frames, repeats=2, codecs=("q4-zstd/1",),
                              image_codecs=("webp-q80/1", "jpeg-q90/1", "webp-q0/1"))
    upload = profile["input"]
    assert upload["shape"] == [3, 48, 64] and upload["server_ms"] == profile["whole_ms"]
    assert set(upload["codecs"]) == {"webp-q80/1", "jpeg-q90/1"}  # the invalid id is skipped
    for entry in upload["codecs"].values():
        assert 0 < entry["bytes"] < 64 * 48 * 3 and entry["encode_ms"] > 0
        assert entry["decode_ms"] > 0
    names = {o.name for o in options(profile, profile, Link.parse("20mbit,10ms"))}
    assert {"input webp-q80/1", "input jpeg-q90/1", "s16 q4-zstd/1"} <= names


def test_the_profile_measures_a_models_entropy_coded_codecs_at_their_split():
    """Every codec the model offers has measured bytes and times: eb-<k>/1 at the tables'
    split (s16), nowhere else."""
    from mtl_split_core.model.entropy_model import EntropyModel

    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         bottlenecks={"s16": 8},
                         entropy=EntropyModel(8, [2.0, 20.0]).freeze("s16"))
    net = MultiTaskSplitNet(config).eval()
    card = {"name": "tiny", "fingerprint": "f" * 16, "input_size": [64, 48]}
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(2)]
    profile = measure_profile(net, card, frames, repeats=2, codecs=("q4-zstd/1",),
                              image_codecs=())
    assert list(profile["splits"]["s16"]["codecs"]) == ["q4-zstd/1", "eb-0/1", "eb-1/1"]
    assert all(list(e["codecs"]) == ["q4-zstd/1"] for s, e in profile["splits"].items()
               if s != "s16")
    eb = profile["splits"]["s16"]["codecs"]
    assert 0 < eb["eb-0/1"]["bytes"] <= eb["eb-1/1"]["bytes"]
    assert eb["eb-0/1"]["encode_ms"] > 0 and eb["eb-0/1"]["decode_ms"] > 0


def test_served_splits_follow_the_card():
    names = ["s4", "s8", "s16", "s32"]
    assert served_splits({"default_split": "s16", "trained": {"split": "s16"}}, names) == ["s16"]
    multi = {"default_split": "s16", "trained": {"split": "s16", "splits": ["s16", "s8", "s32"]}}
    assert served_splits(multi, names) == ["s8", "s16", "s32"]  # in the model's order
    assert served_splits({"default_split": "s8"}, names) == ["s8"]  # an untrained card


def _sequences(n=6, wh=(64, 48)):
    """Two labelled 'sequences' of ``n`` frames: a bright square moving 2 pixels a frame."""
    from mtl_split_core.data.frames import DatasetBuilder

    w, h = wh
    builder = DatasetBuilder()
    for g in range(2):
        for i in range(n):
            image = np.full((h, w, 3), 60 + 40 * g, np.uint8)
            x0 = 8 + 2 * i
            image[10:30, x0:x0 + 20] = 220
            seg = np.zeros((h, w), np.int64)
            seg[10:30, x0:x0 + 20] = 1
            builder.add(image, seg, np.full((h, w), 5.0, np.float32),
                        np.array([[x0, 10, x0 + 20, 30]], np.float32), np.array([0]),
                        [60.0, 0, w / 2, 0, 60.0, h / 2, 0, 0, 1])
    return {"data": builder.build(), "groups": [0] * n + [1] * n,
            "about": {"sequences": 2, "frames_per_sequence": n}}


def test_the_profile_streams_temporal_codecs_over_labelled_sequences():
    """Each temporal codec whose base the model offers, per split: the stream's mean bytes and
    times per frame (keyframes included), the keyframe's own, and its accuracy against the
    base on the same frames; one whose base the model lacks (eb-3: no tables) is not."""
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                                        bottlenecks={"s16": 8})).eval()
    card = {"name": "tiny", "fingerprint": "f" * 16, "input_size": [64, 48],
            "default_split": "s16"}
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(2)]
    profile = measure_profile(net, card, frames, repeats=1, codecs=("q4-zstd/1",),
                              image_codecs=(), sequences=_sequences(),
                              temporal_codecs=("t4-s0-q4-zstd/1", "t4-s50-eb-3/1"))
    streams = profile["temporal"]
    assert streams["sequences"] == 2 and list(streams["splits"]) == ["s16"]  # served only
    t = streams["splits"]["s16"]["codecs"]
    assert list(t) == ["t4-s0-q4-zstd/1"]
    s = t["t4-s0-q4-zstd/1"]
    # 2 sequences of 6 frames, a keyframe every 4: frames 0 and 4 of each.
    assert (s["base"], s["keyframe_interval"], s["frames"], s["keyframes"]) == \
        ("q4-zstd/1", 4, 12, 4)
    key = s["keyframe"]
    assert 0 < s["bytes"] and 0 < key["bytes"]
    assert s["encode_ms"] > 0 and s["decode_ms"] > 0 and key["encode_ms"] > 0
    assert np.isfinite(s["accuracy_vs_base"])
    # The planner weighs it: base drop and the measured loss against the base combined.
    drops = {"s16 q4-zstd/1": 0.0}
    opts = {o.name: o for o in options(profile, profile, Link.parse("20mbit,10ms"), drops)}
    assert opts["s16 t4-s0-q4-zstd/1"].bytes == s["bytes"]
    assert opts["s16 t4-s0-q4-zstd/1"].accuracy_drop == max(0.0, s["accuracy_vs_base"])


def test_a_card_with_temporal_tables_profiles_its_conditional_codecs_by_default():
    """Where the card has temporal context tables (operating point 1 here), the profile
    streams the conditional codecs of that point by default, beside the fixed ones whose
    base the model offers; a model without them keeps the fixed list."""
    import dataclasses

    from mtl_split_core.entropy_tables import EntropyTables
    from mtl_split_core.model.context_fit import fit_context
    from mtl_split_core.model.temporal_context_fit import fit_temporal_context
    from mtl_split_core.plan.profile import PROFILED_TEMPORAL_CODECS, profiled_temporal_codecs
    from support.entropy_blocks import v1_tables

    torch.manual_seed(0)
    net = MultiTaskSplitNet(ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                                        bottlenecks={"s16": 8})).eval()
    sequences = _sequences()
    images = torch.from_numpy(np.asarray(sequences["data"]["images"]))
    with torch.inference_mode():
        y = net.edge(images.permute(0, 3, 1, 2).float() / 255.0, "s16").numpy()
    block = fit_context(EntropyTables(v1_tables(y, [2.0, 8.0])), y)
    block = fit_temporal_context(EntropyTables(block), [y[:6], y[6:]], [1], radius=2)
    tables = EntropyTables(block)
    assert profiled_temporal_codecs(None) == PROFILED_TEMPORAL_CODECS
    assert profiled_temporal_codecs(tables) == PROFILED_TEMPORAL_CODECS + (
        "t30-c0-ebc-1/1", "t30-c0-r50-ebc-1/1")

    coded = MultiTaskSplitNet(dataclasses.replace(net.config, entropy=block)).eval()
    coded.load_state_dict(net.state_dict())
    card = {"name": "tiny", "fingerprint": "f" * 16, "input_size": [64, 48],
            "default_split": "s16"}
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(2)]
    profile = measure_profile(coded, card, frames, repeats=1, codecs=("q4-zstd/1",),
                              image_codecs=(), sequences=sequences)
    streamed = profile["temporal"]["splits"]["s16"]["codecs"]
    # eb-3 is no operating point of these two-point tables: t30-s50-eb-3/1 is not offered.
    assert list(streamed) == ["t30-s20-q4-zstd/1", "t30-c0-ebc-1/1", "t30-c0-r50-ebc-1/1"]
    for name in ("t30-c0-ebc-1/1", "t30-c0-r50-ebc-1/1"):
        s = streamed[name]
        assert (s["base"], s["frames"], s["keyframes"]) == ("ebc-1/1", 12, 2)
        assert 0 < s["bytes"] < s["keyframe"]["bytes"]  # a delta costs less than a keyframe
    # Without a hold the conditional stream decodes to exactly ebc-1's tensor.
    assert streamed["t30-c0-ebc-1/1"]["accuracy_vs_base"] == 0.0
