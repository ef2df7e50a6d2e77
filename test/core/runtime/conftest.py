"""A tiny untrained model (64x48, one 8-channel bottleneck at s16, float16 codec, a depth
reference focal) that the runner tests share."""

import pytest
import torch

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         bottlenecks={"s16": 8}, codec="f16-zstd/1",
                         depth_reference_focal=100.0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(config).eval())
    return str(path)
