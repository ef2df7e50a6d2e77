"""Letterbox keeps aspect ratio and maps coordinates both ways exactly."""

import numpy as np
import pytest
import torch

from mtl_split_core.preprocess import PAD_VALUE, letterbox, letterbox_params, to_model, to_source


def test_identity_when_size_matches():
    img = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    x, t = letterbox(img, (320, 240))
    assert t == (1.0, 1.0, 0.0, 0.0)
    assert np.allclose(x, img.transpose(2, 0, 1) / 255.0)


@pytest.mark.parametrize("src, pad_axis",
                         [((640, 360), "y"), ((300, 400), "x"), ((641, 479), None)])
def test_aspect_ratio_and_padding(src, pad_axis):
    img = np.full((src[1], src[0], 3), 255, np.uint8)
    x, (sx, sy, ox, oy) = letterbox(img, (320, 240))
    assert x.shape == (3, 240, 320)
    assert abs(sx - sy) < 0.01
    if pad_axis == "y":
        assert oy > 0 and ox == 0 and np.allclose(x[:, 0, :], PAD_VALUE)
    if pad_axis == "x":
        assert ox > 0 and oy == 0 and np.allclose(x[:, :, 0], PAD_VALUE)
    assert np.allclose(x[:, int(oy) + 1, int(ox) + 1], 1.0)


def test_box_round_trip():
    t, _ = letterbox_params((640, 360), (320, 240))
    box = np.array([[10.5, 20.25, 300.0, 359.0]])
    assert np.allclose(to_source(to_model(box, t), t), box)


def test_tensor_path_on_device_matches_numpy():
    img = np.random.default_rng(1).integers(0, 256, (100, 150, 3), np.uint8)
    from mtl_split_core.preprocess import letterbox_tensor
    a, ta = letterbox_tensor(torch.from_numpy(img), (64, 48))
    b, tb = letterbox(img, (64, 48))
    assert ta == tb and np.array_equal(a.numpy(), b)


def test_empty_source_rejected():
    with pytest.raises(ValueError, match="empty"):
        letterbox_params((0, 10), (32, 32))
