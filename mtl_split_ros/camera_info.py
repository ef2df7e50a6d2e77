"""A camera's camera_info made to fit the image it comes with (the edge, before it uses or
forwards it).

``CameraInfoFitter.for_image(info, width, height)`` returns the CameraInfo of the image as it
is — K (and P) rescaled when the driver resized the image without updating camera_info, ROI
and binning applied (REP 104), P's rectified camera when there is distortion — as a pinhole
camera_info of exactly the image's size, or None when the camera_info cannot describe the
image (then every output assumes the model's reference camera, as without camera_info). Each
situation is said once: a rescale and a distorted camera are logged once (warning); a
camera_info that does not fit is counted and logged rate-limited as a rejected input
(``camera_info_size``, ``camera_info`` for values out of bounds) with the reason.

A camera driver publishes a new camera_info with every image, the same but for its header: a
message whose contents equal the last one's is fitted as that one was (its header on the
fitted copy; a rejection counted again), so the frame does not wait for the fit (0.28 ms of
the edge's critical path on the 2-core CPU, docs/BENCHMARKS.md "One robot latency, CPU").
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from mtl_split_core.geometry import CameraFit, fit_camera
from mtl_split_core.runtime.packet import PacketRejected, check_camera_info
from mtl_split_ros.msg_factory import MessageFactory
from mtl_split_ros.outputs import camera_info_msg


def fit_camera_info(info: Any, image_size: tuple[int, int]) -> CameraFit:
    """``geometry.fit_camera`` for a sensor_msgs/CameraInfo (rclpy or rosbags) and an image of
    ``image_size`` (W, H). Raises PacketRejected for values out of bounds."""
    check_camera_info([float(v) for v in info.k], int(info.width), int(info.height),
                      d=[float(v) for v in info.d], r=[float(v) for v in info.r],
                      p=[float(v) for v in info.p])
    roi = info.roi
    return fit_camera(info.k, info.p, info.d, str(info.distortion_model),
                      (int(info.width), int(info.height)),
                      (int(info.binning_x), int(info.binning_y)),
                      (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)),
                      image_size)


def contents(info: Any) -> tuple[Any, ...]:
    """Every field of a CameraInfo the fit reads (all but the header), comparable."""
    roi = info.roi
    return (*(np.asarray(v, np.float64).tobytes() for v in (info.k, info.d, info.r, info.p)),
            str(info.distortion_model), int(info.width), int(info.height),
            int(info.binning_x), int(info.binning_y), int(roi.x_offset), int(roi.y_offset),
            int(roi.width), int(roi.height), bool(roi.do_rectify))


class CameraInfoFitter:
    """The newest camera_info, fitted to each image (module docstring). One per edge; called
    from its worker thread only. ``warn(text)`` logs once-only warnings; ``reject(reason,
    detail)`` counts and logs a rejected camera_info (runtime.rejections.Rejections)."""

    def __init__(self, factory: MessageFactory, warn: Callable[[str], None],
                 reject: Callable[[str, str], None]) -> None:
        self._factory, self._warn, self._reject = factory, warn, reject
        self._source: Any = None          # the camera_info last fitted (by identity)
        self._size: tuple[int, int] | None = None
        self._fitted: Any = None
        self._said: set[tuple[Any, ...]] = set()
        # (contents, size) of the last camera_info fitted, and what its fit said: rejected
        # (reason, detail) or not.
        self._key: tuple[Any, ...] | None = None
        self._rejected: tuple[str, str] | None = None

    def for_image(self, info: Any, width: int, height: int) -> Any:
        """The CameraInfo to use and forward for an image of ``width`` x ``height``, or None
        (no camera_info, or one that cannot describe the image)."""
        if info is None:
            return None
        if info is self._source and (width, height) == self._size:
            return self._fitted  # the same message and size: fitted (and said) already
        key = (contents(info), width, height)
        self._source, self._size = info, (width, height)
        if key == self._key:  # the same camera in a new message: as fitted before
            if self._rejected is not None:
                self._reject(*self._rejected)
            elif self._fitted is not None:
                self._fitted = copy.copy(self._fitted)  # (shares the unchanged arrays)
                self._fitted.header = info.header
            return self._fitted
        self._key, self._rejected = key, None
        self._fitted = self._fit(info, width, height)
        return self._fitted

    def _fit(self, info: Any, width: int, height: int) -> Any:
        try:
            fit = fit_camera_info(info, (width, height))
        except PacketRejected as err:
            self._rejected = (err.reason, f"{err}; using the model's reference camera")
            self._reject(*self._rejected)
            return None
        if fit.problem is not None:
            self._rejected = ("camera_info_size", f"{fit.problem}; using the model's "
                              f"reference camera (is the camera_info of this image?)")
            self._reject(*self._rejected)
            return None
        if fit.intrinsics is None:
            return None  # K unset: no calibration
        if fit.scaled_from is not None:
            self._once(("scaled", fit.scaled_from, (width, height)),
                       f"camera_info is for {fit.scaled_from[0]}x{fit.scaled_from[1]} pixels, "
                       f"the image is {width}x{height}: K and P are rescaled to the image "
                       f"(x {width / fit.scaled_from[0]:.4g})")
        if fit.distortion:
            self._once(("distortion", fit.distortion),
                       f"camera_info has {fit.distortion} distortion (non-zero D): the image "
                       f"is taken as rectified (image_proc's image_rect, intrinsics from P); "
                       f"a raw distorted image bends every 3D output")
        return camera_info_msg(self._factory, info.header, fit.intrinsics)

    def _once(self, key: tuple[Any, ...], text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._warn(text)
