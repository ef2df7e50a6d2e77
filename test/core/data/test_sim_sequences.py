"""data/sim_sequences.py: labelled 30 fps sequences and the npz that carries them."""

import numpy as np
import pytest

from mtl_split_core.data.sim_sequences import (
    load_frames,
    poses_at_fps,
    render_sequences,
    save_frames,
)
from mtl_split_core.errors import InputError
from mtl_split_core.plan.profile import load_profile_sequences


class _Line:
    """A trajectory whose waypoints step 1 m in x each (4 Hz), facing yaw 3.0 then -3.0."""

    def __init__(self):
        self.i = 0

    def next(self):
        self.i += 1
        return (float(self.i), 0.0, 1.0, 3.0 if self.i % 2 else -3.0, 0.0)


def test_poses_at_30_fps_interpolate_between_waypoints_the_short_way():
    poses = list(poses_at_fps(_Line(), 9))
    # 4 Hz waypoints at 30 fps: 7.5 frames per leg, x advances 4/30 m a frame.
    assert [p[0] for p in poses[:3]] == pytest.approx([1.0, 1 + 4 / 30, 1 + 8 / 30])
    assert poses[8][0] == pytest.approx(2.0 + 2 / 30)  # past the second waypoint
    # yaw 3.0 -> -3.0 turns through pi (0.28 rad), not through 0 (6 rad)
    assert all(abs(p[3]) >= 3.0 - 1e-9 for p in poses[:8])


def test_rendered_sequences_are_labelled_and_round_trip_through_the_npz(tmp_path):
    data, groups = render_sequences([5, 6], 3, (128, 96), (64, 48))
    assert groups == [0, 0, 0, 1, 1, 1]
    assert data["images"].shape == (6, 48, 64, 3) and data["seg"].shape == (6, 48, 64)
    assert data["k"].shape == (6, 9) and len(data["boxes"]) == 6
    # Consecutive frames of one sequence are close; the two sequences are other scenes.
    diff = [np.abs(data["images"][i].astype(int) - data["images"][i + 1]).mean()
            for i in range(5)]
    assert max(diff[0], diff[1], diff[3], diff[4]) < diff[2]
    path = tmp_path / "seq.npz"
    save_frames({**data, "group_of": np.asarray(groups)}, path)
    back = load_frames(path)
    assert back["group_of"].tolist() == groups
    assert np.array_equal(back["images"], data["images"])
    assert np.allclose(back["depth"], data["depth"], rtol=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(back["boxes"], data["boxes"]))
    streams = load_profile_sequences(path)
    assert streams["groups"] == groups and streams["about"]["sequences"] == 2
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="not a labelled frames npz"):
        load_profile_sequences(tmp_path / "bad.npz")
