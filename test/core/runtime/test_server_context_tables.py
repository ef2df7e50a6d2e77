"""Context-coded codecs (ebc-<k>/1) through the runners: the edge sends them, the server
decodes exactly eb-k's tensor, rejects malformed ebc payloads as ``entropy`` before decoding,
and the next good packet works."""

import struct

import numpy as np
import pytest
import torch

from mtl_split_core.entropy_tables import EntropyTables
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.context_fit import fit_context
from mtl_split_core.model.entropy_model import EntropyModel
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import PacketRejected, ServerRunner

from .test_server_entropy import _hostile

RGB = np.random.default_rng(3).integers(0, 255, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    torch.manual_seed(0)
    y = torch.randn(16, 8, 3, 4) * 3
    block = fit_context(EntropyTables(EntropyModel(8, [0.5, 4.0]).freeze("s16", y)), y.numpy())
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         bottlenecks={"s16": 8}, codec="ebc-1/1", entropy=block)
    path = tmp_path_factory.mktemp("model") / "tiny_ebc"
    save_model(path, MultiTaskSplitNet(config).eval())
    return (EdgeRunner.from_path(str(path), device="cpu"),
            ServerRunner.from_path(str(path), device="cpu"))


def test_ebc_packets_decode_to_exactly_ebs_tensor(runners):
    edge, server = runners
    for k in (0, 1):
        edge.configure(codec=f"eb-{k}/1")
        eb = server.admit(edge(RGB)).codes
        edge.configure(codec=f"ebc-{k}/1")
        packet = edge(RGB)
        assert packet.tensor.codec == f"ebc-{k}/1" and packet.tensor.data[0] == 0xEC
        np.testing.assert_array_equal(np.asarray(server.admit(packet).codes), np.asarray(eb))


def test_malformed_ebc_payloads_are_rejected_as_entropy_and_the_next_good_one_works(runners):
    edge, server = runners
    edge.configure(codec="ebc-1/1")
    packet = edge(RGB)
    data = packet.tensor.data
    n = 8 * 3 * 4
    hostile = [
        _hostile(packet, data=data[:-4]),                                     # truncated
        _hostile(packet, data=struct.pack("<BBI", 0xEB, 1, n) + data[6:]),    # eb's magic
        _hostile(packet, data=struct.pack("<BBI", 0xEC, 1, n - 1) + data[6:]),  # count
        _hostile(packet, codec="ebc-3/1", data=struct.pack("<BBI", 0xEC, 3, n) + data[6:]),
        _hostile(packet, data=bytes(np.random.default_rng(0).integers(0, 256, 64, np.uint8))),
        _hostile(packet, data=data[:6] + b"\xff" * 4 * 10_000),              # oversized
    ]
    for bad in hostile:
        with pytest.raises(PacketRejected) as info:
            server.admit(bad)
        assert info.value.reason == "entropy", str(info.value)
    np.testing.assert_array_equal(server(packet).depth, server(server.admit(packet)).depth)
