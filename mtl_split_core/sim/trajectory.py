"""A smooth camera path through a scene, for the sim camera node and the link benchmark."""

from __future__ import annotations

import math

from mtl_split_core.sim.scene import SimScene

FRAMES_PER_LEG = 8  # frames between two trajectory waypoints
Pose = tuple[float, float, float, float, float]  # x, y, height, yaw, pitch (SimScene poses)


class Trajectory:
    """Linear moves between random waypoints (each facing an object), turning the short way.

    Deterministic for a scene seed: the waypoints come from ``scene.random_pose()``.
    """

    def __init__(self, scene: SimScene):
        self.scene = scene
        self.a, self.b = scene.random_pose(), scene.random_pose()
        self.i = 0

    def next(self) -> Pose:
        """The next pose: waypoint ``a`` first, ``b`` after ``FRAMES_PER_LEG`` frames."""
        t = self.i / FRAMES_PER_LEG
        a, b = self.a, self.b
        dyaw = (b[3] - a[3] + math.pi) % (2 * math.pi) - math.pi  # shortest turn
        pose = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t,
                a[3] + dyaw * t, a[4] + (b[4] - a[4]) * t)
        self.i += 1
        if self.i > FRAMES_PER_LEG:
            self.a, self.b, self.i = self.b, self.scene.random_pose(), 1
        return pose
