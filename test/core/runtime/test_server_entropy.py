"""Entropy-coded codecs through the runners: a card with tables (fingerprinted), the edge
encoding eb-<k>/1 at the tables' split only, the server admitting it and rejecting malformed
entropy payloads with their own reason before decoding; the next good packet works."""

import dataclasses
import json
import struct

import numpy as np
import pytest
import torch

from mtl_split_core.codec import FALLBACK_CODEC, CodecError
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.card import ModelLoadError, load_model
from mtl_split_core.model.config import ModelConfigError
from mtl_split_core.model.entropy_model import EntropyModel
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.server import PacketRejected, ServerRunner

RGB = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def eb_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    block = EntropyModel(8, [0.5, 4.0]).freeze("s16", torch.randn(4, 8, 3, 4) * 3)
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         bottlenecks={"s16": 8}, codec="eb-1/1", entropy=block)
    path = tmp_path_factory.mktemp("model") / "tiny_eb"
    save_model(path, MultiTaskSplitNet(config).eval())
    return path


@pytest.fixture(scope="module")
def runners(eb_model_dir):
    return (EdgeRunner.from_path(str(eb_model_dir), device="cpu"),
            ServerRunner.from_path(str(eb_model_dir), device="cpu"))


def test_the_tables_are_part_of_the_fingerprint(eb_model_dir, tmp_path):
    card = json.loads((eb_model_dir / "card.json").read_text())
    model, _ = load_model(eb_model_dir)
    assert model.config.entropy == card["entropy"] and model.config.codec == "eb-1/1"
    # Same weights, one frequency moved between two symbols: the card no longer loads.
    edited = json.loads(json.dumps(card))
    freqs = edited["entropy"]["operating_points"][0]["freqs"][0]
    freqs[0], freqs[1] = freqs[0] + 1, freqs[1] - 1
    (tmp_path / "card.json").write_text(json.dumps(edited))
    (tmp_path / "weights.pt").write_bytes((eb_model_dir / "weights.pt").read_bytes())
    with pytest.raises(ModelLoadError, match="fingerprint"):
        load_model(tmp_path)


def test_a_card_names_only_codecs_its_tables_have(eb_model_dir):
    card = json.loads((eb_model_dir / "card.json").read_text())
    with pytest.raises(ModelConfigError, match="'eb-2/1' not in"):
        ModelConfig(bottlenecks={"s16": 8}, codec="eb-2/1", entropy=card["entropy"])
    with pytest.raises(ModelConfigError, match="that split's bottleneck has 16"):
        ModelConfig(bottlenecks={"s16": 16}, codec="q4-zstd/1", entropy=card["entropy"])
    with pytest.raises(ModelConfigError, match="'eb-0/1' not in"):
        ModelConfig(bottlenecks={"s16": 8}, codec="eb-0/1")  # no tables


def test_edge_and_server_run_every_operating_point(runners):
    edge, server = runners
    for codec in ("eb-0/1", "eb-1/1", "q4-zstd/1"):
        edge.configure(codec=codec)
        packet = edge(RGB)
        assert packet.tensor.codec == codec
        decoded = server.admit(packet)
        assert decoded.codes.shape == (8, 3, 4) and np.isfinite(server(decoded).depth).all()


def test_the_edge_refuses_an_operating_point_it_lacks_or_another_split(runners):
    edge, _ = runners
    with pytest.raises(ConfigError, match="unknown codec 'eb-2/1'"):
        edge.configure(codec="eb-2/1")
    with pytest.raises(ConfigError, match="codes split s16 only"):
        edge.configure(split="s8", codec="eb-0/1")
    assert edge.codec in ("eb-0/1", "eb-1/1", "q4-zstd/1")


def test_the_default_codec_follows_the_split_and_a_chosen_one_does_not(eb_model_dir):
    edge = EdgeRunner.from_path(str(eb_model_dir), device="cpu")
    assert (edge.split, edge.codec) == ("s16", "eb-1/1")  # the card's, at its default split
    # s8 has no tables: the model's default there is the fallback, and back at s16 the card's.
    edge.configure(split="s8")
    assert (edge.split, edge.codec) == ("s8", FALLBACK_CODEC)
    assert edge(RGB).tensor.codec == FALLBACK_CODEC
    edge.configure(split="s16")
    assert edge.codec == "eb-1/1"
    edge.configure(codec="eb-0/1")  # chosen: kept, so it cannot move to a split without it
    with pytest.raises(ConfigError, match="codes split s16 only"):
        edge.configure(split="s8")
    assert (edge.split, edge.codec) == ("s16", "eb-0/1")


def _hostile(packet, **change):
    return dataclasses.replace(packet, tensor=dataclasses.replace(packet.tensor, **change))


def test_malformed_entropy_payloads_are_rejected_as_entropy_and_the_next_good_one_works(runners):
    edge, server = runners
    edge.configure(codec="eb-1/1")
    packet = edge(RGB)
    data = packet.tensor.data
    n = 8 * 3 * 4
    hostile = [
        _hostile(packet, data=data[:-4]),                                    # truncated
        _hostile(packet, data=data[:6]),                                     # header only
        _hostile(packet, data=bytes(np.random.default_rng(0).integers(0, 256, 64, np.uint8))),
        _hostile(packet, data=struct.pack("<BBI", 0xEB, 1, n + 1) + data[6:]),  # count
        _hostile(packet, codec="eb-5/1", data=struct.pack("<BBI", 0xEB, 5, n) + data[6:]),
        _hostile(packet, data=data[:6] + b"\xff" * 4 * 10_000),             # oversized
    ]
    for bad in hostile:
        with pytest.raises(PacketRejected) as info:
            server.admit(bad)
        assert info.value.reason == "entropy", str(info.value)
    np.testing.assert_array_equal(server(packet).depth, server(server.admit(packet)).depth)


def test_an_entropy_payload_at_a_split_without_tables_is_rejected(runners):
    edge, server = runners
    edge.configure(split="s8", codec="q4-zstd/1")
    packet = edge(RGB)
    edge.configure(split="s16")
    bad = _hostile(packet, codec="eb-0/1", data=struct.pack("<BBI", 0xEB, 0, 1) + b"\1\0\0\0")
    with pytest.raises(PacketRejected, match="needs the model's entropy tables") as info:
        server.admit(bad)
    assert info.value.reason == "entropy"
    assert not isinstance(info.value, CodecError)
