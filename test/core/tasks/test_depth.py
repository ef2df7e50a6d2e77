"""The depth loss is scale-aware and ignores invalid pixels; the head honours the focal."""

import math

import torch

from mtl_split_core.model import ModelConfig
from mtl_split_core.tasks import get_task
from mtl_split_core.tasks.depth import depth_loss


def test_depth_loss_is_scale_aware_and_ignores_invalid():
    gt = torch.full((1, 4, 4), 2.0)
    gt[0, 0, 0] = 0.0
    assert depth_loss(torch.full((1, 1, 4, 4), 2.0), gt) == 0
    assert math.isclose(float(depth_loss(torch.full((1, 1, 4, 4), 4.0), gt)), math.log(2),
                        rel_tol=1e-6)


def test_depth_head_rescales_by_focal_over_reference():
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48),
                         depth_reference_focal=100.0)
    head = get_task("depth").build_head(8, config).eval()
    y = torch.randn(2, 8, 6, 8)
    with torch.no_grad():
        ref = head(y, (48, 64))["depth"]
        scaled = head(y, (48, 64), torch.tensor([200.0, 50.0]))["depth"]
    assert ref.shape == (2, 1, 48, 64) and (ref > 0).all()
    torch.testing.assert_close(scaled, ref * torch.tensor([2.0, 0.5]).view(-1, 1, 1, 1))


def test_frames_with_unknown_intrinsics_get_the_reference_focal():
    import numpy as np

    from mtl_split_core.tasks.depth import frame_focals

    k = np.zeros((3, 9))
    k[:, 4] = (80.0, np.nan, 120.0)
    k[1] = np.nan  # a NaN row: intrinsics unknown
    assert frame_focals(k, 100.0).tolist() == [80.0, 100.0, 120.0]
    assert frame_focals(k, None) is None  # no reference: the head ignores the focal length
    assert frame_focals(None, 100.0) is None and frame_focals(np.zeros((0, 9)), 100.0) is None
