"""ServerRunner.run_batch: one network call per split, the same results as one at a time."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtl_split_core.plan.profile import load_jpeg_frames
from mtl_split_core.runtime.cuda_graph import SERVER_BUCKETS, batch_bucket
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner

FRAMES = Path(__file__).resolve().parents[3] / "bench" / "frames.npz"


def _frames(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), np.uint8) for w, h in sizes]


def _detections(result):
    """(score, class, box) rows in a canonical order (equal scores: top-k order is free)."""
    rows = np.column_stack([result.scores, result.class_ids, result.boxes])
    return rows[np.lexsort(np.round(rows, 3).T[::-1])]


def assert_same(batched, single):
    np.testing.assert_allclose(batched.depth, single.depth, rtol=1e-4, atol=1e-5)
    # Segmentation is an argmax: a near tie may flip under a different summation order.
    assert (batched.segmentation == single.segmentation).mean() > 0.999
    assert batched.segmentation.shape == single.segmentation.shape
    a, b = _detections(batched), _detections(single)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    assert batched.output_scale == single.output_scale


def test_a_mixed_batch_equals_one_at_a_time():
    """The packaged model on real sim frames (bench/frames.npz; an untrained heatmap has
    plateaus whose peak is decided by the last bit): two splits, four source sizes (each its
    own letterbox, crop and transform), focal lengths given and not — every result as if the
    frame had come alone."""
    server = ServerRunner.from_path("", device="cpu", score_threshold=0.1)
    # The edges run the server's loaded model (one load of the packaged model, not three).
    edges = {s: EdgeRunner(server.model, server.card, split=s, device="cpu")
             for s in ("s8", "s16")}
    sizes = [(640, 480), (320, 160), (200, 320), (320, 240), (480, 200), (640, 480)]
    splits = ["s8", "s16", "s16", "s8", "s16", "s16"]
    focals = [None, 400.0, 150.0, None, 90.0, 400.0]
    frames = [cv2.resize(rgb, size) for rgb, size in zip(load_jpeg_frames(FRAMES), sizes)]
    items = [server.admit(edges[s](rgb)) for s, rgb in zip(splits, frames)]
    batched = server.run_batch(items, focals)
    assert len(batched) == len(items)
    for item, focal, result, size in zip(items, focals, batched, sizes):
        assert_same(result, server(item, focal_px=focal))
        assert (result.boxes[:, 2] <= size[0]).all() and (result.boxes[:, 3] <= size[1]).all()
    # Groups: (s8, no focal) = 2 frames, (s16, focal) = 4 frames.
    assert [r.timings_ms["batch"] for r in batched] == [2, 4, 4, 2, 4, 4]
    assert sum(len(r.scores) for r in batched) >= 6  # real detections were compared


def test_the_focal_length_is_per_frame(model_dir):
    server = ServerRunner.from_path(model_dir, device="cpu")
    edge = EdgeRunner(server.model, server.card, device="cpu")
    item = server.admit(edge(_frames([(128, 96)])[0]))
    # The same frame thrice: fy 200 source px = 100 model px = the reference focal.
    ref, doubled, none = server.run_batch([item] * 3, [200.0, 400.0, None])
    np.testing.assert_allclose(doubled.depth, ref.depth * 2.0, rtol=1e-5)
    np.testing.assert_allclose(none.depth, ref.depth, rtol=1e-5)


def test_an_empty_batch_and_mismatched_arguments(model_dir):
    server = ServerRunner.from_path(model_dir, device="cpu")
    assert server.run_batch([], []) == []
    with pytest.raises(ValueError, match="focal"):
        server.run_batch([], [None])


def test_buckets():
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 8, 9, 31, 32)] == [1, 2, 4, 8, 8, 16, 32, 32]
    assert SERVER_BUCKETS[-1] == 32
    with pytest.raises(ValueError):
        batch_bucket(33)


CUDA_CASES = [
    pytest.param("cuda", "fp32", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")),
    pytest.param("cuda", "fp16", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")),
    # A server on the second GPU (one server per GPU): captured on that GPU's streams.
    pytest.param("cuda:1", "fp16", marks=pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason="needs two CUDA devices")),
]


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matmuls in full precision. cuDNN's default TF32 rounds to ~1e-3,
    differently for a batch and for one frame (they get different algorithms): on the H100 the
    depth of a graph batch and of one eager frame differed by 0.15% with it, not at all
    without it (bench/results/fleet_gpu_speed/run4/call1/tf32.txt)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.usefixtures("exact_fp32")
@pytest.mark.parametrize("device, precision", CUDA_CASES)
def test_cuda_graph_batches_equal_eager_one_at_a_time(device, precision):
    """The default model on CUDA: graphs per (split, bucket), padded batches (3 -> 4, 5 -> 8),
    refilled every call (a stale static buffer would repeat the first batch)."""
    edge = EdgeRunner.from_path("", device=device, precision=precision)
    graph = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.0)
    eager = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.0,
                                   cuda_graphs=False)
    assert graph._graphs is not None and eager._graphs is None
    graph.capture_graphs([graph.card["default_split"]])  # what the server node does at start
    assert len(graph._graphs._graphs) == 6  # one per batch size bucket
    sizes = [(640, 480), (320, 240), (1280, 720), (480, 640), (640, 480)]
    frames = load_jpeg_frames(FRAMES)
    for first, n in ((0, 3), (3, 5), (8, 1)):
        items = [graph.admit(edge(cv2.resize(rgb, size)))
                 for rgb, size in zip(frames[first:first + n], sizes)]
        focals = [500.0] * n
        for item, result in zip(items, graph.run_batch(items, focals)):
            single = eager(item, focal_px=500.0)
            tol = 1e-2 if precision == "fp16" else 1e-4
            np.testing.assert_allclose(result.depth, single.depth, rtol=tol, atol=tol)
            assert (result.segmentation == single.segmentation).mean() > 0.99
            np.testing.assert_allclose(result.scores[:5], single.scores[:5], atol=tol)


@pytest.mark.usefixtures("exact_fp32")
@pytest.mark.parametrize("device, precision", CUDA_CASES)
def test_one_contexts_post_processing_runs_in_the_networks_graph(device, precision):
    """Frames of one camera geometry share a context: the tasks' device post-processing is
    captured with the server half (one graph per bucket and context), the results equal the
    eager runner's, and a second batch refills the graph (no stale rows)."""
    edge = EdgeRunner.from_path("", device=device, precision=precision)
    graph = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.0)
    eager = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.0,
                                   cuda_graphs=False)
    frames = load_jpeg_frames(FRAMES)
    tol = 1e-2 if precision == "fp16" else 1e-4
    seen = []
    for first in (0, 4):
        items = [graph.admit(edge(rgb)) for rgb in frames[first:first + 4]]
        for item, result in zip(items, graph.run_batch(items, [500.0] * 4)):
            single = eager(item, focal_px=500.0)
            np.testing.assert_allclose(result.depth, single.depth, rtol=tol, atol=tol)
            assert (result.segmentation == single.segmentation).mean() > 0.99
            np.testing.assert_allclose(result.scores[:5], single.scores[:5], atol=tol)
            seen.append(result.depth)
    fused = [key for key in graph._graphs._graphs if key[3] is not None]
    assert fused and all(key[1] == 4 for key in fused)  # bucket 4, this camera's context
    assert not np.allclose(seen[0], seen[4])  # the second batch is not the first one again
