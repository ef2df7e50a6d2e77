"""Simulator: determinism, metric depth against geometry, box-from-mask rules."""

import math

import numpy as np
import pytest

from mtl_split_core.sim.camera import SimCamera
from mtl_split_core.sim.generate import generate_dataset, scene_split
from mtl_split_core.sim.scene import (
    MIN_BOX_SIDE,
    MIN_VISIBLE_PIXELS,
    SimScene,
    boxes_from_instances,
)


def test_same_seed_same_bytes():
    with SimScene(3, 96, 72) as a, SimScene(3, 96, 72) as b:
        fa, fb = a.render(), b.render()
    assert np.array_equal(fa.rgb, fb.rgb) and np.array_equal(fa.seg, fb.seg)
    assert np.array_equal(fa.depth, fb.depth) and np.array_equal(fa.boxes, fb.boxes)


def test_depth_of_the_ground_matches_geometry():
    # Camera h metres above the ground, pitched by p (< 0: down). The ray through pixel row v
    # is forward + y_n * down with y_n = (v - cy) / fy; it hits the ground after
    # t = h / (-sin p + y_n cos p) units of optical axis, which is the z-depth.
    h, pitch = 1.2, math.radians(-35)
    cam = SimCamera(65, 49, 50.0)
    with SimScene(0, 65, 49) as scene:
        # Look at a corner of the yard with nothing placed there: only ground in the centre.
        frame = scene.render((9.8, 9.8, h, math.radians(45), pitch), cam)
    y_n = (24 - cam.cy) / cam.fy
    assert frame.seg[24, 32] == 1  # ground
    assert frame.depth[24, 32] == pytest.approx(h / (-math.sin(pitch) + y_n * math.cos(pitch)),
                                                rel=0.002)


def test_depth_buffer_conversion_edges():
    cam = SimCamera(4, 4, 60.0, near=0.1, far=50.0)
    d = cam.depth_from_buffer(np.array([[0.0, 1.0]]))
    assert d[0, 0] == pytest.approx(0.1) and d[0, 1] == 0.0  # near plane; nothing hit


def test_box_rules_visible_extent_and_drops():
    ids = np.full((40, 40), -1)
    ids[5:15, 10:30] = 7                  # object 7: 10 x 20 px -> kept, exclusive x2/y2
    ids[20:22, 0:20] = 8                  # object 8: 2 px tall -> dropped (side rule)
    ids[30:34, 30:34] = 9                 # object 9: 16 px < MIN_VISIBLE_PIXELS -> dropped
    ids[10:12, 12:14] = 3                 # occluder in front of object 7 (not detectable)
    boxes, labels = boxes_from_instances(ids, {7: 2, 8: 4, 9: 5})
    assert MIN_BOX_SIDE > 2 and MIN_VISIBLE_PIXELS > 16
    assert boxes.tolist() == [[10, 5, 30, 15]] and labels.tolist() == [2]


def test_dataset_split_by_scene_and_format(tmp_path):
    index = generate_dataset(tmp_path, frames=6, size=(64, 48), frames_per_scene=3, workers=1,
                             progress=False)
    assert len(index["images"]) == 6
    by_scene = {}
    for img in index["images"]:
        by_scene.setdefault(img["scene"], set()).add(img["split"])
        assert img["split"] == scene_split(img["scene"])
        for sub, ext in (("rgb", "jpg"), ("depth", "png"), ("seg", "png")):
            assert (tmp_path / sub / f"{img['file_name']}.{ext}").exists()
    assert all(len(s) == 1 for s in by_scene.values())
    assert {scene_split(s) for s in range(200)} == {"train", "val", "test"}


def test_the_novel_style_is_a_different_world_with_the_same_ground_truth_rules(tmp_path):
    """The novel style (for fine-tuning demos) changes the look and the camera mount, keeps the
    labels exact, and cleans up its texture files."""
    with SimScene(4, 96, 72) as plain, SimScene(4, 96, 72, style="novel") as novel:
        heights = [novel.random_pose()[2] for _ in range(20)]
        texture_dir = novel._texture_dir
        a, b = plain.render(), novel.render()
        again = novel.render((9.8, 9.8, 1.2, math.radians(45), math.radians(-35)),
                             SimCamera(65, 49, 50.0))
    assert all(1.6 <= h <= 2.4 for h in heights), heights
    assert not np.array_equal(a.rgb, b.rgb)
    # The ground is checkered: two clearly different colours on an empty patch of ground.
    ground = again.rgb[again.seg == 1].astype(int)
    assert len(ground) > 200 and np.ptp(ground, axis=0).max() > 30
    assert texture_dir is not None and not texture_dir.exists()
    with pytest.raises(ValueError, match="unknown scene style 'noir'"):
        SimScene(0, 32, 24, style="noir")
