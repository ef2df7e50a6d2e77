"""How the demo's frames differ from the test split: statistics of the ground truth, random
views rendered as gen-data renders them, and the demo's --seeds."""

import argparse

import numpy as np
import pytest

from mtl_split_tools import demo_views
from mtl_split_tools.demo import seed_list


def test_view_statistics_of_known_boxes():
    depth = np.full((100, 200), 4.0, np.float32)
    depth[:, 100:] = 9.0
    views = [(np.array([[0, 0, 50, 50], [120, 10, 130, 15]], np.float32), depth, 100),
             (np.zeros((0, 4), np.float32), depth, 100)]
    stats = demo_views.view_statistics(views, network_height=200)
    assert stats["frames"] == 2 and stats["with_objects"] == 0.5
    assert stats["objects_per_frame"] == 1.0
    assert stats["box_height_median"] == pytest.approx((0.5 + 0.05) / 2)
    # 0.05 of the image = 10 px at 200 network rows: small (< 12 px); 0.5 = 100 px: not.
    assert stats["small_boxes"] == 0.5
    assert stats["distance_median_m"] == pytest.approx((4.0 + 9.0) / 2)
    empty = demo_views.view_statistics([], network_height=200)
    assert empty["frames"] == 0 and empty["box_height_median"] is None


def test_random_views_are_the_scenes_gen_data_views(capfd):
    views, vfov = demo_views.random_views([0], per_seed=3)
    assert len(views) == 3 and vfov == (45.0, 70.0)
    stats = demo_views.view_statistics(views, network_height=240)
    # Random views face an object: most of them show one, 1.2-8 m away.
    assert stats["with_objects"] > 0.5 and 0.5 < stats["distance_median_m"] < 12
    assert "b3Warning" not in capfd.readouterr().out  # PyBullet's noise kept out of the demo
    lines = demo_views.comparison_lines(stats, stats, 60.0, vfov, 240, (640, 480))
    assert lines[0].startswith("| |") and any("60°" in line and "45–70°" in line
                                               for line in lines)
    assert "| rendered at | 640x480 | 320x240 |" in lines


def test_seed_list():
    assert seed_list("3") == [3] and seed_list("0,1,2") == [0, 1, 2]
    for bad in ("a", "1,1", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            seed_list(bad)
