"""Temporal codecs through the runners and the scheduler: the edge keeps one stream per
configuration, the server one reference per robot stream, a lost delta is refused with the
keyframe-request reason (``on_rejected``) and the requested keyframe restores the stream."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mtl_split_core.runtime.edge import EdgeRunner, check_codec, known_codec
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.rejections import Rejections
from mtl_split_core.runtime.scheduler import BatchScheduler, Stream
from mtl_split_core.runtime.server import PacketRejected, ServerRunner
from mtl_split_core.temporal_codec import NEEDS_KEYFRAME, TemporalDecoder, is_keyframe

CODEC = "t30-s20-q4-zstd/1"


@pytest.fixture(scope="module")
def server(model_dir):
    return ServerRunner.from_path(str(model_dir), device="cpu")


@pytest.fixture
def edge(model_dir):
    return EdgeRunner.from_path(str(model_dir), device="cpu", codec=CODEC)


def images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = base.copy()
        img[:24, :32] = (40 * i) % 255  # one corner changes
        out.append(img)
    return out


def test_codec_checks_accept_temporal_ids_over_the_models_codecs():
    assert known_codec(CODEC) and known_codec("t5-s0-eb-1/1")
    assert not known_codec("t30-s20-webp-q80/1") and not known_codec("t0-s1-q4-zstd/1")
    check_codec(CODEC, image=False)
    with pytest.raises(ConfigError):
        check_codec(CODEC, image=True)
    with pytest.raises(ConfigError):  # no entropy tables in the default feature codecs
        check_codec("t30-s20-eb-1/1", image=False)


def test_edge_stream_to_two_robot_streams_on_one_server(edge, server):
    """Each robot stream has its own reference: a second robot's frames do not disturb it."""
    robot_a, robot_b = TemporalDecoder(), TemporalDecoder()
    packets = [edge(img) for img in images(4)]
    assert [is_keyframe(p.tensor) for p in packets] == [True, False, False, False]
    for p in packets:
        a = server.admit(p, references=robot_a)
        assert a.codes.shape == tuple(p.tensor.shape)
    with pytest.raises(PacketRejected) as err:  # robot_b never saw the keyframe
        server.admit(packets[2], references=robot_b)
    assert err.value.reason == NEEDS_KEYFRAME


def test_lost_delta_keyframe_request_and_recovery(edge, server):
    streams = [Stream("robot")]
    refused: list[str] = []
    scheduler = BatchScheduler(server, streams, Rejections(logging.getLogger("test")),
                               lambda tag: str(tag),
                               on_rejected=lambda s, p, tag, err: refused.append(err.reason))
    frames = images(6)
    assert scheduler.admit(streams[0], edge(frames[0]), 0, 0.0) is not None
    edge(frames[1])  # lost on the way
    assert scheduler.admit(streams[0], edge(frames[2]), 2, 0.0) is None
    assert refused == [NEEDS_KEYFRAME]
    assert streams[0].rejected.total == 1
    edge.request_keyframe()
    key = edge(frames[3])
    assert is_keyframe(key.tensor)
    assert scheduler.admit(streams[0], key, 3, 0.0) is not None
    assert scheduler.admit(streams[0], edge(frames[4]), 4, 0.0) is not None
    assert refused == [NEEDS_KEYFRAME]


def test_frames_the_robot_serves_itself_decode_without_the_stream(edge, server):
    frames = images(3)
    remote = TemporalDecoder()
    server.admit(edge(frames[0]), references=remote)
    side = edge(frames[1], keyframe=True, streamed=False)
    assert is_keyframe(side.tensor)
    server.admit(side, references=TemporalDecoder())  # a fresh decoder: self-contained
    delta = edge(frames[2])
    assert not is_keyframe(delta.tensor)
    server.admit(delta, references=remote)  # the stream went on from frame 0


def test_a_configuration_change_restarts_the_stream(edge):
    edge(images(1)[0])
    assert not is_keyframe(edge(images(2)[1]).tensor)
    edge.configure(codec="t10-s30-q4-zstd/1")
    assert is_keyframe(edge(images(2)[1]).tensor)
    edge.configure(codec="q4-zstd/1")
    assert edge(images(1)[0]).tensor.codec == "q4-zstd/1"
