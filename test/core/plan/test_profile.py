"""measure_profile: split input (image upload) is measured beside every split and codec."""

import numpy as np
import torch

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
from mtl_split_core.plan.link import Link
from mtl_split_core.plan.planner import options
from mtl_split_core.plan.profile import measure_profile

torch.set_num_threads(2)


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
