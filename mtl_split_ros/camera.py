"""sensor_msgs/CameraInfo -> the source camera the core works with (``geometry.Intrinsics``).

Duck-typed (rclpy or rosbags messages), so bag tools use it without rclpy. The features'
camera_info fields are checked against the input bounds (features_msg) before this runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_split_core.geometry import Intrinsics


def camera_intrinsics(camera_info: Any, source_size: tuple[int, int]) -> Intrinsics | None:
    """The camera of a ``source_size`` (W, H) image from its camera_info's K, or None when
    there is no camera_info or K is unset (all zero: an unknown camera)."""
    if camera_info is None:
        return None
    k = np.asarray(camera_info.k, dtype=np.float64).reshape(-1)
    if k.size == 9 and k[0] > 0 and k[4] > 0:
        return Intrinsics.from_camera_info_k(k, *source_size)
    return None
