"""Camera geometry for the server's 3D outputs: intrinsics, back-projection, 3D boxes, clouds.

Frames follow REP 103/105: everything here is in the camera *optical* frame (x right, y down,
z forward) and depth is z-depth in metres (REP 118), not range along the ray.

Pixel coordinates follow OpenCV / ``sensor_msgs/CameraInfo``: integer coordinates are pixel
*centres* (a centred principal point is ``cx = W / 2 - 0.5``, as in ``sim/camera.py``). Boxes
are x1, y1, x2, y2 on pixel *edges* with x2/y2 exclusive (``sim/scene.py``), so the box
``[0, 0, W, H]`` is the whole image and its centre pixel is ``((x1 + x2) / 2 - 0.5, ...)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# sensor_msgs/PointField.FLOAT32
POINTFIELD_FLOAT32 = 7
# (name, offset, datatype, count) of the usual XYZRGB PointCloud2 layout; ``rgb`` holds the
# 0x00RRGGBB bits reinterpreted as a float32 (what PCL and RViz expect).
XYZRGB_FIELDS: tuple[tuple[str, int, int, int], ...] = (
    ("x", 0, POINTFIELD_FLOAT32, 1),
    ("y", 4, POINTFIELD_FLOAT32, 1),
    ("z", 8, POINTFIELD_FLOAT32, 1),
    ("rgb", 12, POINTFIELD_FLOAT32, 1),
)
XYZRGB_POINT_STEP = 16
# Little-endian, matching ``PointCloud2.is_bigendian = False`` on every platform.
_XYZRGB_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"],
                          "formats": ["<f4", "<f4", "<f4", "<u4"],
                          "offsets": [0, 4, 8, 12], "itemsize": XYZRGB_POINT_STEP})


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height`` (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_camera_info_k(cls, k: ArrayLike, width: int, height: int) -> Intrinsics:
        """From the row-major 3x3 ``CameraInfo.k`` (9 values); skew is ignored."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise ValueError(f"camera matrix k needs 9 values, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    @classmethod
    def default_for(cls, width: int, height: int, hfov_deg: float = 60.0) -> Intrinsics:
        """A centred, square-pixel camera with a horizontal field of view of ``hfov_deg``."""
        if not 1.0 <= hfov_deg <= 170.0:
            raise ValueError(f"horizontal field of view must be in [1, 170] deg, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls.centred(width, height, f)

    @classmethod
    def centred(cls, width: int, height: int, focal: float) -> Intrinsics:
        """A centred, square-pixel camera of focal length ``focal`` pixels."""
        return cls(focal, focal, width / 2.0 - 0.5, height / 2.0 - 0.5, int(width), int(height))

    def scaled(self, sx: float, sy: float) -> Intrinsics:
        """Intrinsics of this image resized by ``sx`` x ``sy`` (new size = round(W*sx), ...).

        A resize maps pixel *edges* linearly (edge 0 -> 0, edge W -> W*sx), so with centres at
        integer coordinates ``u' + 0.5 = sx * (u + 0.5)``, i.e. ``u' = sx*u + (sx - 1)/2``.
        Hence ``fx' = fx*sx`` and ``cx' = cx*sx + (sx - 1)/2`` (same for y). This is how
        cv2.resize (INTER_LINEAR / INTER_AREA) aligns pixels; the naive ``cx*sx`` is off by up
        to half a pixel, which shifts every back-projected point sideways.
        """
        if sx <= 0 or sy <= 0:
            raise ValueError(f"scale factors must be positive, got sx={sx} sy={sy}")
        return Intrinsics(self.fx * sx, self.fy * sy,
                          self.cx * sx + (sx - 1.0) / 2.0, self.cy * sy + (sy - 1.0) / 2.0,
                          max(1, round(self.width * sx)), max(1, round(self.height * sy)))

    @property
    def k(self) -> list[float]:
        """Row-major 3x3 matrix as ``sensor_msgs/CameraInfo.k``."""
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    def as_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "width": self.width, "height": self.height}


# Without camera_info and without a model reference focal (a model whose depth ignores the
# focal length), 3D outputs assume this horizontal field of view: the one guess, here only.
GUESS_HFOV_DEG = 60.0


def reference_camera(width: int, height: int, reference_focal: float | None,
                     model_px_per_source_px: float) -> Intrinsics:
    """The camera every output assumes for a ``width`` x ``height`` source image without a
    camera_info: the model's reference camera (``depth_reference_focal``, in model-input
    pixels, so ``reference_focal / model_px_per_source_px`` source pixels; centred, square
    pixels) — the camera depth is predicted for, so camera_info, points and markers agree
    with depth. A model without a reference focal: a ``GUESS_HFOV_DEG`` view."""
    if reference_focal is not None and reference_focal > 0 and model_px_per_source_px > 0:
        return Intrinsics.centred(width, height, reference_focal / model_px_per_source_px)
    return Intrinsics.default_for(width, height, GUESS_HFOV_DEG)


def camera_intrinsics(k: ArrayLike | None, width: int, height: int,
                      reference_focal: float | None, model_px_per_source_px: float
                      ) -> Intrinsics:
    """A camera_info's K (row-major 9 values, fx and fy > 0) for the image, else
    ``reference_camera``. K must already describe this image (``fit_camera``)."""
    values = np.zeros(9) if k is None else np.asarray(k, dtype=np.float64).reshape(-1)
    if values.size == 9 and values[0] > 0 and values[4] > 0:
        return Intrinsics.from_camera_info_k(values, width, height)
    return reference_camera(width, height, reference_focal, model_px_per_source_px)


SIZE_TOLERANCE_PX = 1.0  # a uniform rescale may round each side by up to this


@dataclass(frozen=True)
class CameraFit:
    """How a camera_info applies to an image (``fit_camera``).

    ``intrinsics``: the pinhole camera of the image (None: no usable camera_info — unset K,
    or ``problem``); ``scaled_from``: the calibrated size K was rescaled from (None when it
    was for the image's size); ``distortion``: the distortion model with non-zero
    coefficients ('' when none) — then P, the rectified camera, is used where set."""

    intrinsics: Intrinsics | None
    problem: str | None = None
    scaled_from: tuple[int, int] | None = None
    distortion: str = ""


def fit_camera(k: ArrayLike, p: ArrayLike, d: ArrayLike, distortion_model: str,
               size: tuple[int, int], binning: tuple[int, int],
               roi: tuple[int, int, int, int], image_size: tuple[int, int]) -> CameraFit:
    """The camera_info (K, P, D, model, calibrated ``size`` W x H, ``binning`` x/y, ``roi`` x,
    y, w, h, as in sensor_msgs/CameraInfo) applied to an image of ``image_size`` (W, H).

    REP 104: ROI, then binning, turn the calibrated camera into the one of the published
    image. If the result still has another size than the image, but the image is a uniform
    scale of it (each side within ``SIZE_TOLERANCE_PX`` of one factor: a driver that resizes
    without updating camera_info), K is rescaled (pixel-centre convention,
    ``Intrinsics.scaled``); any other mismatch is a ``problem`` (intrinsics None). A size of
    0 x 0 (not filled in) is taken as the image's. With distortion (non-zero D) the image
    is expected to be the rectified one (image_proc), whose camera is P's left 3x3; K when P
    is unset."""
    k = np.asarray(k, np.float64).reshape(-1)
    p = np.asarray(p, np.float64).reshape(-1)
    d = np.asarray(d, np.float64).reshape(-1)
    if k.size != 9 or not (k[0] > 0 and k[4] > 0):
        return CameraFit(None)  # no calibration
    distortion = ""
    if d.size and np.any(np.abs(d) > 1e-12):
        distortion = distortion_model or "unknown model"
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if distortion and p.size == 12 and p[0] > 0 and p[5] > 0:
        fx, fy, cx, cy = p[0], p[5], p[2], p[6]
    image_w, image_h = (int(v) for v in image_size)
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0:
        width, height = image_w, image_h
    x, y, roi_w, roi_h = (int(v) for v in roi)
    if roi_w > 0 and roi_h > 0:
        cx, cy, width, height = cx - x, cy - y, roi_w, roi_h
    bin_x, bin_y = max(1, int(binning[0])), max(1, int(binning[1]))
    if bin_x > 1 or bin_y > 1:  # pixel centres: u' + 0.5 = (u + 0.5) / bin
        fx, cx, width = fx / bin_x, (cx + 0.5) / bin_x - 0.5, width // bin_x
        fy, cy, height = fy / bin_y, (cy + 0.5) / bin_y - 0.5, height // bin_y
    if min(width, height) < 1:
        return CameraFit(None, f"camera_info size {size[0]}x{size[1]} with roi {tuple(roi)} "
                               f"and binning {tuple(binning)} leaves no image", None, distortion)
    camera = Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height)
    if (width, height) == (image_w, image_h):
        return CameraFit(camera, None, None, distortion)
    scale = image_w / width
    if abs(height * scale - image_h) > SIZE_TOLERANCE_PX:
        return CameraFit(None, f"camera_info is for {width}x{height} pixels, the image is "
                               f"{image_w}x{image_h}: not a uniform scale of it (x "
                               f"{image_w / width:.4g}, y {image_h / height:.4g})", None,
                         distortion)
    scaled = camera.scaled(image_w / width, image_h / height)
    return CameraFit(dataclasses.replace(scaled, width=image_w, height=image_h), None,
                     (width, height), distortion)


def focal_y(k: ArrayLike) -> float | None:
    """fy of a row-major ``CameraInfo.k`` (9 values), or None when it is unset (zeros)."""
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    return float(k[4]) if k.size == 9 and k[4] > 0 else None


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """True where depth is a usable measurement (finite and > 0; 0 = invalid per REP 118)."""
    depth = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def backproject(depth: np.ndarray, intrinsics: Intrinsics, stride: int = 1
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Points ``(N, 3) float32`` in the optical frame for the valid pixels of ``depth``.

    Every ``stride``-th row and column is used (stride 2 = a quarter of the points). Also returns
    the ``(rows, cols)`` index arrays of those pixels, so colours or class ids can be gathered
    with ``image[rows, cols]``. ``intrinsics`` must describe the depth map's own resolution.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    stride = int(stride)
    sub = depth[::stride, ::stride]
    rows, cols = np.nonzero(valid_depth_mask(sub))
    rows, cols = rows * stride, cols * stride
    z = depth[rows, cols].astype(np.float32)
    fx, fy, cx, cy = (np.float32(v) for v in (intrinsics.fx, intrinsics.fy, intrinsics.cx,
                                              intrinsics.cy))
    points = np.empty((z.size, 3), np.float32)
    points[:, 0] = (cols.astype(np.float32) - cx) * (z / fx)
    points[:, 1] = (rows.astype(np.float32) - cy) * (z / fy)
    points[:, 2] = z
    return points, (rows, cols)


def box_to_3d(box: Iterable[float], depth_m: float, intrinsics: Intrinsics
              ) -> tuple[np.ndarray, np.ndarray]:
    """Lift a 2D box (x1, y1, x2, y2 edges, pixels) to an axis-aligned 3D box at ``depth_m``.

    Returns ``(center, size)``, each ``(3,) float64`` xyz in metres in the optical frame. The
    box's front face spans the 2D box at the given depth (similar triangles); its extent along
    z is unknown from one view, so ``size z`` is the mean of the metric width and height (a
    roughly cube-like object), and ``center z = depth_m``: the depth is taken as the object's
    centre, which is what a median over the box estimates for a convex object.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    z = float(depth_m)
    # Edge coordinates -> pixel-centre coordinates of the box centre.
    u = (x1 + x2) / 2.0 - 0.5
    v = (y1 + y2) / 2.0 - 0.5
    width = abs(x2 - x1) * z / intrinsics.fx
    height = abs(y2 - y1) * z / intrinsics.fy
    center = np.array([(u - intrinsics.cx) * z / intrinsics.fx,
                       (v - intrinsics.cy) * z / intrinsics.fy, z])
    size = np.array([width, height, (width + height) / 2.0])
    return center, size


def box_to_center_size(box: Iterable[float]) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) edges -> (center_x, center_y, size_x, size_y), as in Detection2D."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def center_size_to_box(center_x: float, center_y: float, size_x: float,
                       size_y: float) -> tuple[float, float, float, float]:
    """The inverse of ``box_to_center_size``."""
    return (center_x - size_x / 2, center_y - size_y / 2, center_x + size_x / 2,
            center_y + size_y / 2)


def scale_boxes(boxes: ArrayLike, scale: tuple[float, float]) -> np.ndarray:
    """``(K, 4) float32`` boxes multiplied by ``(sx, sy)``: e.g. source pixels -> map pixels."""
    sx, sy = scale
    return np.asarray(boxes, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)


def median_depth_in_box(depth: np.ndarray, box: Iterable[float],
                        center_fraction: float = 0.5) -> float:
    """Median of the valid depths in the central part of a box; 0.0 if none is valid.

    Only the central ``center_fraction`` of the box's width and height is used (0.5 = the
    middle quarter of its area): the corners of an axis-aligned box around a non-box-shaped
    object are mostly background, which would pull the median to the far wall. The window is
    at least one pixel and clipped to the image; a box fully outside gives 0.0.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if not 0.0 < center_fraction <= 1.0:
        raise ValueError(f"center_fraction must be in (0, 1], got {center_fraction}")
    x1, y1, x2, y2 = (float(v) for v in box)
    cxe, cye = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    hw, hh = abs(x2 - x1) * center_fraction / 2.0, abs(y2 - y1) * center_fraction / 2.0
    h, w = depth.shape
    c0, c1 = _pixel_span(cxe - hw, cxe + hw, w)
    r0, r1 = _pixel_span(cye - hh, cye + hh, h)
    if c0 >= c1 or r0 >= r1:
        return 0.0
    patch = depth[r0:r1, c0:c1]
    values = patch[valid_depth_mask(patch)]
    return float(np.median(values)) if values.size else 0.0


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixels [a, b) whose centres lie in the edge interval [lo, hi]; at least the pixel at
    the interval's middle, clipped to [0, size)."""
    a, b = math.ceil(lo - 0.5), math.floor(hi - 0.5) + 1
    if b <= a:
        a = math.floor((lo + hi) / 2.0)
        b = a + 1
    return max(0, a), min(size, b)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """``(N, 3) uint8`` RGB -> ``(N,) uint32`` 0x00RRGGBB (the bits of the PointCloud2 ``rgb``)."""
    c = np.asarray(colors, dtype=np.uint8).astype(np.uint32)
    return (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]


def pack_xyzrgb(points: np.ndarray, colors: np.ndarray) -> bytes:
    """PointCloud2 ``data`` for points ``(N, 3)`` and colours ``(N, 3) uint8``.

    16 bytes per point, little-endian: x, y, z float32 then ``rgb`` (0x00RRGGBB stored in a
    float32 slot, see ``XYZRGB_FIELDS``). Use ``point_step = 16`` and ``row_step = 16 * N``.
    """
    points = np.asarray(points)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {points.shape}")
    if colors.shape != points.shape:
        raise ValueError(f"colors must be (N, 3) like points {points.shape}, got {colors.shape}")
    out = np.empty(points.shape[0], _XYZRGB_DTYPE)
    out["x"], out["y"], out["z"] = points[:, 0], points[:, 1], points[:, 2]
    out["rgb"] = pack_rgb(colors)
    return out.tobytes()
