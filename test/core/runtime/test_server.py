"""ServerRunner: depth follows the camera's focal length through the letterbox."""

import dataclasses

import numpy as np
import pytest

from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.packet import MAX_IMAGE_SIDE, MAX_TEXT_BYTES
from mtl_split_core.runtime.server import PacketRejected, ServerRunner


def test_depth_scales_with_the_source_focal_times_the_letterbox_scale(model_dir):
    edge = EdgeRunner.from_path(str(model_dir), device="cpu")
    server = ServerRunner.from_path(str(model_dir), device="cpu")
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    packet = edge(rgb)
    assert packet.transform[1] == pytest.approx(0.5)  # 128x96 -> 64x48
    reference = server(packet).depth
    # fy 400 source px = 200 model px = twice the reference focal: twice the depth.
    doubled = server(packet, focal_px=400.0).depth
    np.testing.assert_allclose(doubled, reference * 2.0, rtol=1e-5)
    np.testing.assert_allclose(server(packet, focal_px=200.0).depth, reference, rtol=1e-5)


@pytest.fixture(scope="module")
def runners(model_dir):
    edge = EdgeRunner.from_path(str(model_dir), device="cpu")
    server = ServerRunner.from_path(str(model_dir), device="cpu")
    rgb = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return edge(rgb), server


@pytest.mark.parametrize("offset", [(1000.0, 1000.0), (1e30, 1e30), (-1e6, -1e6)])
def test_a_source_outside_the_network_input_is_rejected_before_decoding(runners, offset):
    """Issue 17: such offsets used to crop to nothing and kill the server's worker."""
    packet, server = runners
    hostile = dataclasses.replace(packet, transform=(*packet.transform[:2], *offset),
                                  tensor=dataclasses.replace(packet.tensor, data=b"junk"))
    with pytest.raises(PacketRejected) as info:
        server(hostile)
    assert info.value.reason == "transform" and "outside the 64x48 network input" in str(
        info.value)


@pytest.mark.parametrize("change, reason", [
    ({"model_id": "m" * (MAX_TEXT_BYTES + 1)}, "model_id"),
    ({"source_size": (MAX_IMAGE_SIDE + 1, 96)}, "source_size"),
    ({"transform": (1e30, 1e30, 0.0, 0.0)}, "transform"),
    ({"edge_ms": float("nan")}, "edge_ms"),
    ({"split_index": 4}, "split"),
    ({"model_fingerprint": "0" * 12}, "fingerprint"),
])
def test_every_bound_is_checked_by_the_runner(runners, change, reason):
    packet, server = runners
    with pytest.raises(PacketRejected) as info:
        server(dataclasses.replace(packet, **change))
    assert info.value.reason == reason


@pytest.mark.parametrize("tensor_change, reason", [
    ({"data": b"\x00" * 64}, "payload"),
    ({"codec": "q9-magic/1"}, "codec"),
])
def test_admit_decodes_so_an_undecodable_packet_is_rejected_on_arrival(runners, tensor_change,
                                                                       reason):
    """The server node queues only what ``admit`` returns (issue 17's soak)."""
    packet, server = runners
    decoded = server.admit(packet)
    assert decoded.codes.shape == tuple(packet.tensor.shape)
    np.testing.assert_array_equal(server(decoded).depth, server(packet).depth)
    with pytest.raises(PacketRejected) as info:
        server.admit(dataclasses.replace(packet, tensor=dataclasses.replace(packet.tensor,
                                                                            **tensor_change)))
    assert info.value.reason == reason


def test_a_source_partly_inside_gives_finite_outputs_of_the_overlap(runners):
    packet, server = runners
    sx, sy = packet.transform[:2]
    result = server(dataclasses.replace(packet, transform=(sx, sy, -40.0, 30.0)), focal_px=1e6)
    # The 64x48 image shifted by (-40, 30): columns 0..24 and rows 30..48 of the input.
    assert result.depth.shape == (48 - 30, 64 - 40)
    assert np.isfinite(result.depth).all() and np.isfinite(result.boxes).all()
    assert np.isfinite(result.scores).all()


def test_the_valid_path_crops_the_letterboxed_image(runners):
    """The content box of an edge packet is what the server cropped before the bounds."""
    packet, server = runners
    assert server.check(packet) == (0, 0, 64, 48)
    wide = server(packet)
    assert wide.depth.shape == (48, 64) and wide.segmentation.shape == (48, 64)
