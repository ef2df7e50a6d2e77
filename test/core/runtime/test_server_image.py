"""ServerRunner at split input (image upload): an image packet gives what local inference on
the decoded image gives; hostile image packets are rejected on arrival with their reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtl_split_core.image_codec import DEFAULT_IMAGE_CODEC, decode_image, encode_image
from mtl_split_core.plan.profile import load_jpeg_frames
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.packet import INPUT_SPLIT_INDEX
from mtl_split_core.runtime.server import PacketRejected, ServerRunner
from mtl_split_core.tasks import PostprocessContext, get_task

FRAMES = Path(__file__).resolve().parents[3] / "bench" / "frames.npz"


@pytest.fixture(scope="module")
def packaged():
    """The packaged model on real sim frames (an untrained heatmap has plateaus whose peak is
    decided by the last bit): the edge at split input, the server (one load of the model:
    the edge runs the server's)."""
    server = ServerRunner.from_path("", device="cpu", score_threshold=0.1)
    edge = EdgeRunner(server.model, server.card, split="input", device="cpu")
    return edge, server, load_jpeg_frames(FRAMES)


@torch.inference_mode()
def local_inference(server: ServerRunner, image: np.ndarray, crop, focal=None) -> dict:
    """The whole network on the model-input image (what the robot would run itself): the
    outputs inside ``crop`` and the detections of the detection task's own post-processing."""
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0
    out = server.model(x, server.card["default_split"], focal=focal)
    x0, y0, x1, y1 = crop
    dets = get_task("detection").postprocess(out, PostprocessContext(
        score_threshold=0.1, max_detections=server.max_detections))[0]
    boxes = np.asarray(dets["boxes"], np.float64)  # clipped to the image, as the server does
    boxes[:, 0::2], boxes[:, 1::2] = boxes[:, 0::2].clip(x0, x1), boxes[:, 1::2].clip(y0, y1)
    return {"depth": out["depth"][0, 0, y0:y1, x0:x1].numpy(),
            "segmentation": out["segmentation"][0, :, y0:y1, x0:x1].argmax(0).numpy(),
            "scores": dets["scores"], "boxes_model": boxes}


@pytest.mark.parametrize("size", [(640, 480), (320, 160)])
def test_an_image_packet_equals_local_inference_on_the_decoded_image(packaged, size):
    edge, server, frames = packaged
    packet = edge(cv2.resize(frames[0], size))
    assert packet.split_index == INPUT_SPLIT_INDEX and packet.tensor.codec == DEFAULT_IMAGE_CODEC
    assert packet.tensor.shape == (3, 240, 320) and len(packet.tensor.scale) == 0
    assert packet.nbytes == len(packet.tensor.data) < 320 * 240 * 3 / 10
    image = decode_image(packet.tensor.data, packet.tensor.codec, (320, 240))
    crop = server.check(packet)
    result = server(packet)
    local = local_inference(server, image, crop)
    np.testing.assert_allclose(result.depth, local["depth"], rtol=1e-5, atol=1e-5)
    assert (result.segmentation == local["segmentation"]).mean() > 0.999
    np.testing.assert_allclose(np.sort(result.scores), np.sort(local["scores"]), atol=1e-5)
    assert len(result.scores) > 0  # real detections were compared
    # Boxes are mapped back to source pixels: model px = source px * scale + offset.
    sx, sy, ox, oy = packet.transform
    back = result.boxes * [sx, sy, sx, sy] + [ox, oy, ox, oy]
    order = np.argsort(-result.scores, kind="stable")
    local_order = np.argsort(-local["scores"], kind="stable")
    np.testing.assert_allclose(back[order], local["boxes_model"][local_order], atol=1e-3)


def test_image_and_feature_packets_batch_apart_and_equal_one_at_a_time(packaged):
    edge, server, frames = packaged
    features = EdgeRunner(server.model, server.card, split="s16", device="cpu")
    items = [server.admit(runner(rgb)) for runner, rgb in
             zip((edge, features, edge, features, edge), frames)]
    focals = [None, None, 300.0, None, None]
    batched = server.run_batch(items, focals)
    assert [r.timings_ms["batch"] for r in batched] == [2, 2, 1, 2, 2]
    for item, focal, result in zip(items, focals, batched):
        single = server(item, focal_px=focal)
        np.testing.assert_allclose(result.depth, single.depth, rtol=1e-4, atol=1e-5)
        assert (result.segmentation == single.segmentation).mean() > 0.999
        np.testing.assert_allclose(np.sort(result.scores), np.sort(single.scores), atol=1e-4)


@pytest.fixture(scope="module")
def image_packet(model_dir):
    server = ServerRunner.from_path(str(model_dir), device="cpu")
    edge = EdgeRunner(server.model, server.card, split="input", device="cpu")
    rgb = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return edge(rgb), server


def _with(packet, **tensor_change):
    return dataclasses.replace(packet, tensor=dataclasses.replace(packet.tensor, **tensor_change))


def test_hostile_image_packets_are_rejected_on_arrival_with_their_reason(image_packet):
    packet, server = image_packet
    assert server.admit(packet).codes.shape == (3, 48, 64)
    small = encode_image(np.zeros((24, 32, 3), np.uint8), DEFAULT_IMAGE_CODEC)
    jpeg = encode_image(np.zeros((48, 64, 3), np.uint8), "jpeg-q90/1")
    cases = [
        (_with(packet, codec="q4-zstd/1"), "codec"),       # a feature codec on an image
        (_with(packet, codec="webp-q0/1"), "codec"),
        (_with(packet, shape=(3, 96, 128)), "shape"),     # not the model input's size
        (_with(packet, shape=(8, 3, 4)), "shape"),
        (_with(packet, scale=np.ones(3, np.float32)), "payload"),
        (_with(packet, data=packet.tensor.data[:40]), "upload_corrupt"),
        (_with(packet, data=b""), "upload_bytes"),
        (_with(packet, data=np.random.default_rng(0).bytes(500)), "upload_format"),
        (_with(packet, data=jpeg), "upload_format"),
        (_with(packet, data=small), "upload_size"),
        (dataclasses.replace(packet, split_index=200), "split"),
    ]
    for hostile, reason in cases:
        with pytest.raises(PacketRejected) as info:
            server.admit(hostile)
        assert info.value.reason == reason, (reason, str(info.value))
    np.testing.assert_array_equal(server(packet).depth, server(server.admit(packet)).depth)


def test_a_feature_packet_at_the_input_index_is_rejected(image_packet):
    _, server = image_packet
    features = EdgeRunner(server.model, server.card, device="cpu")(
        np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(PacketRejected) as info:
        server.admit(dataclasses.replace(features, split_index=INPUT_SPLIT_INDEX))
    assert info.value.reason == "shape"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_image_packets_on_cuda_graphs_equal_eager(packaged):
    """On CUDA an image packet replays a graph of the whole network (edge prefix and the
    default split's server half): the same results as eager, padded batch (3 -> 4) included."""
    _, _, frames = packaged
    edge = EdgeRunner.from_path("", split="input", device="cuda", precision="fp16")
    graph = ServerRunner.from_path("", device="cuda", precision="fp16", score_threshold=0.0)
    eager = ServerRunner.from_path("", device="cuda", precision="fp16", score_threshold=0.0,
                                   cuda_graphs=False)
    graph.capture_graphs(["input"])
    assert {key[0] for key in graph._graphs._graphs} == {"input"}
    items = [graph.admit(edge(rgb)) for rgb in frames[:3]]
    for item, result in zip(items, graph.run_batch(items, [None] * 3)):
        single = eager(item)
        np.testing.assert_allclose(result.depth, single.depth, rtol=1e-2, atol=1e-2)
        assert (result.segmentation == single.segmentation).mean() > 0.99
