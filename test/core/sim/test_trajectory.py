"""The sim camera's path: deterministic, smooth, through its waypoints, turning the short way."""

import math

import numpy as np

from mtl_split_core.sim.scene import SimScene
from mtl_split_core.sim.trajectory import FRAMES_PER_LEG, Trajectory


def _poses(seed, n):
    """n poses and the waypoints the path was heading for, in order."""
    with SimScene(seed, 64, 48) as scene:
        traj = Trajectory(scene)
        waypoints, poses = [traj.a, traj.b], []
        for _ in range(n):
            poses.append(traj.next())
            if traj.b != waypoints[-1]:
                waypoints.append(traj.b)
    return waypoints[:3], poses


def test_same_seed_same_path_and_legs_end_on_their_waypoints():
    n = 2 * FRAMES_PER_LEG + 1
    (a, b, c), poses = _poses(5, n)
    assert _poses(5, n)[1] == poses
    assert _poses(6, n)[1] != poses
    np.testing.assert_allclose(poses[0], a)
    # Frame FRAMES_PER_LEG reaches b (yaw up to a full turn), then the next leg heads to c.
    np.testing.assert_allclose(poses[FRAMES_PER_LEG][:3], b[:3])
    assert math.isclose(math.cos(poses[FRAMES_PER_LEG][3] - b[3]), 1.0)
    np.testing.assert_allclose(poses[2 * FRAMES_PER_LEG][:3], c[:3])
    # Steps are small and even within a leg: no jumps between frames.
    p = np.array(poses)
    step = np.linalg.norm(np.diff(p[:, :3], axis=0), axis=1)
    leg = np.linalg.norm(np.subtract(b[:3], a[:3])) / FRAMES_PER_LEG
    np.testing.assert_allclose(step[:FRAMES_PER_LEG], leg, rtol=1e-9)


def test_yaw_turns_the_short_way():
    with SimScene(0, 64, 48) as scene:
        traj = Trajectory(scene)
        traj.a = (0.0, 0.0, 1.0, math.radians(170), 0.0)
        traj.b = (1.0, 0.0, 1.0, math.radians(-170), 0.0)
        yaws = [traj.next()[3] for _ in range(FRAMES_PER_LEG + 1)]
    # From 170° to -170° is +20° through 180°, not -340°.
    assert all(0 < d < math.radians(3) for d in np.diff(yaws))
    assert math.isclose(yaws[-1], math.radians(190))
