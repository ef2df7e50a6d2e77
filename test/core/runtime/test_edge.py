"""EdgeRunner.configure: split, codec and zstd level change between frames, atomically."""

import threading

import numpy as np
import pytest

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError


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
