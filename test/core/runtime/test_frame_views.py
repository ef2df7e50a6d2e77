"""Frame views: the colours and point grid made with the batch are the bytes the host-side
functions make (viz.colorize_segmentation, geometry.backproject + pack_xyzrgb), and a batch
makes each view only for the frames that want it."""

import numpy as np
import pytest
import torch

from mtl_split_core.geometry import Intrinsics, backproject, pack_xyzrgb
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.frame_views import (
    NO_VIEWS,
    ViewRequest,
    color_table,
    colorize,
    frame_point_cloud,
    map_camera,
)
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.viz import class_palette, colorize_segmentation


def _maps(seed=0, h=30, w=41):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.2, 30.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.2] = 0.0  # invalid: 0, NaN, inf, negative
    depth[0, :4] = [np.nan, np.inf, -1.0, 0.0]
    ids = rng.integers(0, 12, (h, w)).astype(np.uint8)
    ids[1, :2] = [255, 11]  # beyond an 8-class palette: clipped to its last colour
    return depth, ids


@pytest.mark.parametrize("stride", [1, 3, 4])
@pytest.mark.parametrize("coloured", [True, False])
def test_the_point_cloud_is_the_bytes_backproject_and_pack_give(stride, coloured):
    depth, ids = _maps()
    camera = Intrinsics(35.5, 33.25, 20.3, 14.9, 41, 30)
    palette = class_palette(8)
    points, (rows, cols) = backproject(depth, camera, stride=stride)
    colors = (palette[np.clip(ids[rows, cols], 0, 7)] if coloured
              else np.full((len(points), 3), 200, np.uint8))
    cloud = frame_point_cloud(depth, ids if coloured else None, camera, palette, stride)
    assert cloud.dtype == np.float32 and cloud.shape == (len(points), 4)
    assert cloud.tobytes() == pack_xyzrgb(points, colors)


def test_colours_are_colorize_segmentation():
    _, ids = _maps(1)
    palette = class_palette(8)
    table = torch.from_numpy(color_table(palette))
    out = colorize(torch.from_numpy(np.stack([ids, ids[::-1]])), table).numpy()
    assert out.dtype == np.uint8 and out.shape == (2, *ids.shape, 3)
    assert (out[0] == colorize_segmentation(ids, palette)).all()
    assert (out[1] == colorize_segmentation(ids[::-1], palette)).all()


def test_the_map_camera_without_a_camera_info_is_the_60_degree_guess():
    guess = Intrinsics.default_for(640, 480)
    assert map_camera(None, (640, 480), (48, 64)) == guess.scaled(0.1, 0.1)
    known = Intrinsics(500.0, 500.0, 320.0, 240.0, 640, 480)
    assert map_camera(known, (640, 480), (240, 320)) == known.scaled(0.5, 0.5)


def test_a_batch_makes_each_view_for_the_frames_that_want_it(model_dir):
    edge = EdgeRunner.from_path(model_dir, device="cpu")
    server = ServerRunner.from_path(model_dir, device="cpu")
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (96, 128, 3), np.uint8),
              rng.integers(0, 255, (60, 128, 3), np.uint8),   # another crop: its own group
              rng.integers(0, 255, (96, 128, 3), np.uint8)]
    k = [300.0, 0, 64, 0, 300.0, 48, 0, 0, 1]
    items = [server.admit(edge(rgb), k if i != 1 else None) for i, rgb in enumerate(frames)]
    views = [ViewRequest(frozenset({"segmentation"}), 2), NO_VIEWS,
             ViewRequest(cloud_stride=3)]
    results = server.run_batch(items, views=views)
    palette = class_palette(len(server.card["segmentation_classes"]))
    first, second, third = results
    assert (first.colors["segmentation"]
            == colorize_segmentation(first.segmentation, palette)).all()
    assert not second.colors and second.cloud is None and second.cloud_stride == 0
    assert not third.colors
    for result, item, stride in ((first, items[0], 2), (third, items[2], 3)):
        camera = server.map_camera(item, result.depth.shape)  # reference camera without K
        expected = frame_point_cloud(result.depth, result.segmentation, camera, palette,
                                     stride)
        assert result.cloud_stride == stride and len(result.cloud) > 0
        assert result.cloud.tobytes() == expected.tobytes()
    # The views change nothing else: the same fields as a batch without them.
    for plain, viewed in zip(server.run_batch(items), results):
        assert (plain.segmentation == viewed.segmentation).all()
        np.testing.assert_array_equal(plain.depth, viewed.depth)
        np.testing.assert_array_equal(plain.boxes, viewed.boxes)
