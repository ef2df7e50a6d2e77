"""ServerRunner: depth follows the camera's focal length through the letterbox."""

import numpy as np
import pytest
import torch

from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         bottlenecks={"s16": 8}, codec="f16-zstd/1",
                         depth_reference_focal=100.0)
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_model(path, MultiTaskSplitNet(config).eval())
    return path


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
