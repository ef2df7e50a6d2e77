"""TorchScriptServer and ServerRunner(torchscript=True): the traced server half gives eager's
outputs for any batch size, with and without focal lengths, at every split."""

import time
from pathlib import Path

import pytest
import torch

from mtl_split_core.plan.profile import load_jpeg_frames
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.model_files import load_model_param
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.runtime.torchscript import TorchScriptServer

from .test_server_batch import assert_same

FRAMES = Path(__file__).resolve().parents[3] / "bench" / "frames.npz"


@pytest.fixture(scope="module")
def own_heads_dir(tmp_path_factory):
    """The runners' tiny model with a whole server half of its own at s4 (per_split_heads,
    per_split_server: its own neck, heads and backbone stages after s4)."""
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("own") / "tiny"
    save_model(path, MultiTaskSplitNet(ModelConfig(
        backbone="mobilenetv3_small", input_size=(64, 48), bottlenecks={"s16": 8},
        codec="f16-zstd/1", depth_reference_focal=100.0, per_split_heads=("s4",),
        per_split_server=("s4",))).eval())
    return str(path)


@pytest.fixture(scope="module", params=["model_dir", "own_heads_dir"])
def prepared(request):
    """(model, input size, TorchScriptServer, splits) with both splits traced, with and without
    focal lengths: once per model, not once per test. The focal cases call disjoint traces
    (``(split, focal given)`` keys), so each trace still meets its first call in its own test."""
    model, card = load_model_param(request.getfixturevalue(request.param))
    size = tuple(card["input_size"])
    script = TorchScriptServer(model, size)
    splits = ("s16", model.split_names[0])  # with a bottleneck, and without
    script.prepare(list(splits))
    return model, size, script, splits


@pytest.mark.parametrize("focal", [None, 150.0])
def test_the_traces_give_eagers_outputs_at_any_batch_size(prepared, focal):
    model, size, script, splits = prepared
    gen = torch.Generator().manual_seed(3)
    for split in splits:
        for n in (1, 3):  # traced at 2: other sizes run the same trace
            z = torch.randn(n, *model.split_shape(split, size), generator=gen)
            f = None if focal is None else torch.full((n,), focal)
            with torch.inference_mode():
                got, want = script(z, split, f), model.server(z, split, focal=f)
            assert sorted(got) == sorted(want)
            for name in want:
                assert got[name].shape == want[name].shape
                torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_the_server_runner_on_traces_equals_eager():
    """The packaged model on real frames (bench/frames.npz), a batch with and without focal
    lengths: the same results as the eager server (detections, segmentation, depth)."""
    traced = ServerRunner.from_path("", device="cpu", score_threshold=0.1, torchscript=True)
    # The edge and the eager reference run the same loaded model (nothing here changes its
    # weights; the traces are frozen copies): one load of the packaged model, not three.
    edge = EdgeRunner(traced.model, traced.card, device="cpu")
    eager = ServerRunner(traced.model, traced.card, device="cpu", score_threshold=0.1)
    assert traced._script is not None and eager._script is None
    traced._script.prepare([traced.card["default_split"]])  # now, not in the background
    assert traced._script.ready(traced.card["default_split"], True)
    items = [eager.admit(edge(rgb)) for rgb in load_jpeg_frames(FRAMES)[:4]]
    focals = [None, 400.0, None, 300.0]
    for got, want in zip(traced.run_batch(items, focals), eager.run_batch(items, focals)):
        assert_same(got, want)
    assert sum(len(r.scores) for r in traced.run_batch(items)) >= 4


def test_a_split_met_first_in_a_batch_runs_eager_while_it_is_traced(model_dir):
    model, card = load_model_param(model_dir)
    script = TorchScriptServer(model, tuple(card["input_size"]))
    z = torch.randn(2, *model.split_shape("s16", tuple(card["input_size"])))
    with torch.inference_mode():
        first, want = script(z, "s16"), model.server(z, "s16")
    for name in want:
        torch.testing.assert_close(first[name], want[name])
    deadline = time.monotonic() + 120
    while not (script.ready("s16", True) and script.ready("s16", False)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    # Both focal variants of the split are traced (the other is likely to come too).
    assert script.ready("s16", False) and script.ready("s16", True) and not script.failed
    with torch.inference_mode():
        traced = script(z, "s16")
    for name in want:
        torch.testing.assert_close(traced[name], want[name], rtol=1e-4, atol=1e-4)


def test_traces_only_when_asked(model_dir):
    assert ServerRunner.from_path(model_dir, device="cpu")._script is None


def test_close_waits_for_the_background_traces(model_dir):
    model, card = load_model_param(model_dir)
    script = TorchScriptServer(model, tuple(card["input_size"]))
    script.prepare_in_background(["s16"])
    script.close()  # a process may end right after: no trace is left running
    assert script.ready("s16", False) and script.ready("s16", True) and not script.failed
