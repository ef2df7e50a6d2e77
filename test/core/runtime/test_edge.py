"""EdgeRunner.configure: split, codec and zstd level change between frames, atomically; split
input uploads the model-input image."""

import threading

import numpy as np
import pytest

from mtl_split_core.image_codec import DEFAULT_IMAGE_CODEC, decode_image, model_input_image
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
from mtl_split_core.runtime.edge import EdgeRunner, known_codec
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.packet import INPUT_SPLIT_INDEX
from support.entropy_blocks import default_with_fewer_tables


@pytest.fixture(scope="module")
def runner():
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8}))
    card = {"name": "tiny", "fingerprint": "f" * 16, "default_split": "s16",
            "codec": "q8-zstd/1", "input_size": [128, 96]}
    return EdgeRunner(net.eval(), card, device="cpu")


FRAME = np.zeros((96, 128, 3), np.uint8)


def test_configure_changes_the_next_frame(runner):
    assert (runner(FRAME).split_index, runner.codec) == (2, "q8-zstd/1")
    runner.configure(split=1, codec="f16-zstd/1", zstd_level=5)
    packet = runner(FRAME)
    assert packet.split_index == 1 and packet.tensor.codec == "f16-zstd/1"
    assert runner.zstd_level == 5
    runner.configure(split="", codec="")  # '' = the model's defaults
    assert (runner.split, runner.codec, runner.zstd_level) == ("s16", "q8-zstd/1", 5)


@pytest.mark.parametrize("change", [dict(split="s99"), dict(split=9), dict(codec="gzip"),
                                    dict(zstd_level=0), dict(split=1, codec="gzip")])
def test_a_bad_change_changes_nothing(runner, change):
    before = (runner.split, runner.codec, runner.zstd_level)
    with pytest.raises(ConfigError):
        runner.configure(**change)
    assert (runner.split, runner.codec, runner.zstd_level) == before


def test_frames_use_one_configuration_while_it_changes(runner):
    shapes = {}
    for index in (1, 2):
        runner.configure(split=index)
        shapes[index] = runner(FRAME).tensor.shape
    assert shapes[1] != shapes[2]
    errors, stop = [], threading.Event()

    def flip():
        i = 0
        while not stop.is_set():
            runner.configure(split=i % 2 + 1)
            i += 1
    t = threading.Thread(target=flip)
    t.start()
    try:
        for _ in range(20):
            packet = runner(FRAME)
            if packet.tensor.shape != shapes[packet.split_index]:
                errors.append((packet.split_index, packet.tensor.shape))
    finally:
        stop.set()
        t.join()
    runner.configure(split="")
    assert not errors


def test_split_input_uploads_the_model_input_image_and_back(runner):
    """Split input: the letterboxed frame as an image file, no network; a codec of the other
    kind (kept or '') becomes the new split's default."""
    yy, xx = np.mgrid[0:120, 0:128]
    frame = np.stack([xx * 2, yy * 2, xx + yy], -1).astype(np.uint8)  # smooth, like a scene
    runner.configure(split="input")
    assert (runner.split, runner.split_index, runner.codec) == ("input", INPUT_SPLIT_INDEX,
                                                                DEFAULT_IMAGE_CODEC)
    packet = runner(frame)
    assert packet.split_index == INPUT_SPLIT_INDEX and packet.tensor.shape == (3, 96, 128)
    assert packet.tensor.codec == DEFAULT_IMAGE_CODEC and packet.nbytes == len(packet.tensor.data)
    image, transform = model_input_image(frame, (128, 96))
    assert packet.transform == transform
    decoded = decode_image(packet.tensor.data, packet.tensor.codec, (128, 96))
    assert np.abs(decoded.astype(int) - image).mean() < 3  # lossy, but this image
    runner.configure(codec="jpeg-q90/1")
    assert runner(frame).tensor.codec == "jpeg-q90/1"
    runner.configure(split="s8")  # the image codec does not go with features: the default
    assert (runner.split, runner.codec) == ("s8", "q8-zstd/1")
    assert runner(frame).tensor.codec == "q8-zstd/1"
    runner.configure(split="input", codec="webp-q60/1")
    assert runner(frame).tensor.codec == "webp-q60/1"
    runner.configure(split="", codec="")
    assert (runner.split, runner.codec) == ("s16", "q8-zstd/1")


@pytest.mark.parametrize("change", [dict(split="input", codec="q4-zstd/1"),
                                    dict(split="s8", codec="webp-q80/1"),
                                    dict(split="input", codec="webp-q101/1")])
def test_a_codec_of_the_wrong_kind_changes_nothing(runner, change):
    before = (runner.split, runner.codec)
    with pytest.raises(ConfigError) as info:
        runner.configure(**change)
    assert info.value.args and (runner.split, runner.codec) == before
    assert known_codec("webp-q80/1") and known_codec("q4-zstd/1") and not known_codec("png")


def test_a_read_only_frame_is_encoded_as_it_is():
    """A camera image read from the received bytes is a read-only view (image_cdr): encoded
    like the same pixels in a writable array, and the bytes are left as they were."""
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8}))
    card = {"name": "tiny", "fingerprint": "f" * 16, "default_split": "s16",
            "codec": "q8-zstd/1", "input_size": [128, 96]}
    runner = EdgeRunner(net.eval(), card, device="cpu")
    pixels = np.random.default_rng(3).integers(0, 256, (120, 160, 3), np.uint8)
    received = pixels.tobytes()
    view = np.frombuffer(received, np.uint8).reshape(pixels.shape)
    assert not view.flags.writeable
    assert runner(view).tensor.data == runner(pixels).tensor.data
    assert received == pixels.tobytes()


def test_a_conditional_temporal_codec_without_its_tables_is_a_config_error(tmp_path):
    """t<N>-c<H>-ebc-<k>/1 needs the card's temporal tables: a card with ebc tables only
    (models/default's without its temporal ones) refuses it as a bad setting, and nothing
    changes."""
    runner = EdgeRunner.from_path(str(default_with_fewer_tables(tmp_path / "ebc", context=True)),
                                  device="cpu")
    before = (runner.split, runner.codec, runner.zstd_level)
    with pytest.raises(ConfigError) as info:
        runner.configure(codec="t30-c0-ebc-3/1")
    assert info.value.parameter == "codec" and "t30-c0-ebc-3/1" in str(info.value)
    assert (runner.split, runner.codec, runner.zstd_level) == before
    runner.configure(codec="t30-s50-ebc-3/1")  # the skipping kind needs no such tables
    assert runner.codec == "t30-s50-ebc-3/1"


def test_a_camera_size_whose_graph_cannot_be_captured_runs_eagerly():
    # On the CPU every capture fails ("CUDA graphs need a CUDA device"), as an op that cannot
    # be captured would on a GPU: the frame is encoded eagerly, the reason kept.
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8})).eval()
    card = {"name": "tiny", "fingerprint": "f" * 16, "default_split": "s16",
            "codec": "q4-zstd/1", "input_size": [128, 96]}
    graphs, eager = EdgeRunner(net, card, device="cpu"), EdgeRunner(net, card, device="cpu")
    graphs._use_graph = True
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), np.uint8)
    for _ in range(2):  # tried once per size
        a, b = graphs(frame), eager(frame)
        assert a.tensor.data == b.tensor.data and a.transform == b.transform
        assert np.array_equal(a.tensor.scale, b.tensor.scale)
    key = ("s16", "q4-zstd/1", (120, 160))
    assert list(graphs.graph_refused) == [key] and "CUDA" in graphs.graph_refused[key]
    assert graphs._graphs == {key: None}
