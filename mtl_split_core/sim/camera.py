"""Pinhole camera for the simulator: OpenGL matrices, intrinsics, depth-buffer conversion.

Frames: the camera looks along its optical axis; intrinsics use pixel-centre coordinates
(pixel (0, 0) centre is at x = 0). PyBullet's TinyRenderer does not sample pixel centres:
fitting rendered depth of known geometry gives cx = W / 2 and cy = H / 2 - 1 (measured for
even and odd sizes), so those are the intrinsics we report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class SimCamera:
    width: int
    height: int
    vfov_deg: float
    near: float = 0.05
    far: float = 80.0

    @property
    def fy(self) -> float:
        return (self.height / 2) / math.tan(math.radians(self.vfov_deg) / 2)

    @property
    def fx(self) -> float:  # square pixels
        return self.fy

    @property
    def cx(self) -> float:
        return self.width / 2

    @property
    def cy(self) -> float:
        return self.height / 2 - 1

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 intrinsic matrix as in sensor_msgs/CameraInfo.k."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def projection_matrix(self, pybullet: ModuleType) -> list[float]:
        """OpenGL projection matrix for this camera (pybullet is passed in: a client module)."""
        return pybullet.computeProjectionMatrixFOV(self.vfov_deg, self.width / self.height,
                                                   self.near, self.far)

    def depth_from_buffer(self, buffer: np.ndarray) -> np.ndarray:
        """OpenGL depth buffer in [0, 1] -> metric z-depth (m) along the optical axis (REP 118).

        Pixels at the far plane (nothing hit) become 0 = invalid.
        """
        d = np.asarray(buffer, dtype=np.float64)
        z = self.far * self.near / (self.far - (self.far - self.near) * d)
        z[d >= 1.0 - 1e-7] = 0.0
        return z.astype(np.float32)


def look_at(position: Sequence[float] | np.ndarray, yaw: float, pitch: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eye, target and up vectors for a camera at ``position`` (world z up) with heading
    ``yaw`` (rad, about z) and ``pitch`` (rad, negative looks down)."""
    eye = np.asarray(position, dtype=np.float64)
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch),
                        math.sin(pitch)])
    return eye, eye + forward, np.array([0.0, 0.0, 1.0])
