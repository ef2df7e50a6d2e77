"""On CUDA, the CUDA-graph edge path encodes exactly what the eager path encodes."""

import numpy as np
import pytest
import torch

from mtl_split_core.codec import decode
from mtl_split_core.runtime.edge import EdgeRunner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device, precision", [
    ("cuda", "fp32"), ("cuda", "fp16"),
    pytest.param("cuda:1", "fp16", marks=pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason="needs two CUDA devices"))])
def test_graph_equals_eager(device, precision):
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), np.uint8)
              for i in range(3)]
    graph = EdgeRunner.from_path("", device=device, precision=precision, cuda_graphs=True)
    eager = EdgeRunner.from_path("", device=device, precision=precision, cuda_graphs=False)
    outs = []
    for f in frames:  # several frames: the static buffers must be refilled every call
        a, b = graph(f), eager(f)
        # The graph letterboxes in its own kernels and runs channels_last, which may round
        # differently: one code step, rarely a hair more (the scales differ as well; the
        # H100 gave 1.0019 steps at most in fp16, run4/call1/cuda_tests2.txt).
        step = 1.01 * np.maximum(a.tensor.scale, b.tensor.scale)[:, None, None] + 1e-3
        diff = np.abs(decode(a.tensor) - decode(b.tensor))
        assert (diff <= step).all(), float((diff / step).max())
        assert (diff / step).mean() < 0.05  # per-channel min/max shift by float rounding only
        outs.append(decode(a.tensor))
        assert a.transform == b.transform and a.source_size == b.source_size == (640, 480)
    assert not np.allclose(outs[0], outs[1])  # a stale static buffer would repeat frame 0
    assert [size for _, _, size in graph._graphs] == [(480, 640)] and not eager._graphs


@pytest.mark.parametrize("codec", ["q4-zstd/1", "q8-zstd/1", "f16-zstd/1"])
def test_the_codecs_device_half_in_the_graph_encodes_what_encode_does(codec):
    from mtl_split_core.codec import encode
    from mtl_split_core.runtime.cuda_graph import CudaGraphEdge
    runner = EdgeRunner.from_path("", device="cuda", precision="fp16", codec=codec)
    fused = runner._graph_for((480, 640))
    assert fused is not None and fused.codec == codec
    plain = CudaGraphEdge(runner.model, runner.split, (480, 640), runner.input_size)
    for seed in range(3):  # the static buffers are refilled every call
        image = torch.from_numpy(np.random.default_rng(seed).integers(
            0, 256, (480, 640, 3), np.uint8))
        got, want = fused.encode(image, 3), encode(plain(image)[0].float(), codec, 3)
        assert got.shape == want.shape == fused.feature_shape
        assert got.data == want.data
        assert np.array_equal(got.scale, want.scale) and np.array_equal(got.offset, want.offset)


def test_each_split_codec_and_camera_size_gets_its_graph_kept_for_the_next_switch():
    runner = EdgeRunner.from_path("", device="cuda", precision="fp16", codec="q4-zstd/1")
    eager = EdgeRunner.from_path("", device="cuda", precision="fp16", codec="q4-zstd/1",
                                 cuda_graphs=False)
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (240, 320), (720, 1280), (480, 640), (100, 200)]
    for h, w in sizes:
        frame = rng.integers(0, 256, (h, w, 3), np.uint8)
        a, b = runner(frame), eager(frame)
        assert a.transform == b.transform
        step = 1.01 * np.maximum(a.tensor.scale, b.tensor.scale)[:, None, None] + 1e-3
        assert (np.abs(decode(a.tensor) - decode(b.tensor)) <= step).all()
    assert len(runner._graphs) == 4
    kept = runner._graphs[("s16", "q4-zstd/1", (100, 200))]
    runner.configure(codec="q8-zstd/1")
    assert runner(frame).tensor.codec == "q8-zstd/1"
    runner.configure(codec="q4-zstd/1")
    assert runner(frame).tensor.codec == "q4-zstd/1"
    assert runner._graphs[("s16", "q4-zstd/1", (100, 200))] is kept  # no new capture
    assert runner._graphs[("s16", "q8-zstd/1", (100, 200))].codec == "q8-zstd/1"
    for size in [(10, 20), (11, 20), (12, 20), (13, 20)]:  # the 9th combination: eager
        runner(np.zeros((*size, 3), np.uint8))
    assert len(runner._graphs) == 9 and runner._graphs[("s16", "q4-zstd/1", (13, 20))] is None
