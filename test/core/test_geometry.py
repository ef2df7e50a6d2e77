"""Camera geometry: pinhole back-projection, intrinsics scaling, 3D boxes, PointCloud2 bytes."""

import math

import numpy as np
import pytest

from mtl_split_core.geometry import (
    XYZRGB_FIELDS,
    Intrinsics,
    backproject,
    box_to_3d,
    box_to_center_size,
    center_size_to_box,
    median_depth_in_box,
    pack_xyzrgb,
    scale_boxes,
)

K = Intrinsics(fx=200.0, fy=220.0, cx=79.5, cy=59.5, width=160, height=120)


def test_from_camera_info_k_and_k_roundtrip():
    k = [525.0, 0.0, 319.5, 0.0, 530.0, 239.5, 0.0, 0.0, 1.0]
    intr = Intrinsics.from_camera_info_k(np.array(k), 640, 480)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (525.0, 530.0, 319.5, 239.5)
    assert (intr.width, intr.height) == (640, 480)
    assert intr.k == k
    with pytest.raises(ValueError):
        Intrinsics.from_camera_info_k(np.zeros(9), 640, 480)  # fx = 0: unknown camera
    with pytest.raises(ValueError):
        Intrinsics.from_camera_info_k([1.0, 2.0], 640, 480)


def test_default_for_has_the_requested_field_of_view_and_centre():
    intr = Intrinsics.default_for(320, 240, hfov_deg=60)
    assert intr.fx == intr.fy == pytest.approx(160 / math.tan(math.radians(30)))
    assert (intr.cx, intr.cy) == (159.5, 119.5)  # pixel-centre convention: W/2 - 0.5
    # The left edge of the image (u = -0.5) is 30 degrees off the axis.
    assert math.degrees(math.atan((-0.5 - intr.cx) / intr.fx)) == pytest.approx(-30)


def test_backproject_plane_matches_the_pinhole_model_by_hand():
    depth = np.full((120, 160), 2.5, np.float32)
    depth[0, 0] = 0.0
    depth[1, 1] = np.nan
    depth[2, 2] = np.inf
    points, (rows, cols) = backproject(depth, K)
    assert points.dtype == np.float32 and points.shape == (120 * 160 - 3, 3)
    assert np.all(points[:, 2] == 2.5)
    assert not np.any((rows == 0) & (cols == 0)) and not np.any((rows == 1) & (cols == 1))
    # Pixel (row 10, col 100): x = (100 - 79.5) * 2.5 / 200 = 0.25625,
    #                          y = (10 - 59.5) * 2.5 / 220 = -0.5625.
    i = np.flatnonzero((rows == 10) & (cols == 100))[0]
    np.testing.assert_allclose(points[i], [0.25625, -0.5625, 2.5], rtol=1e-6)
    # x right, y down (REP 103 optical frame).
    assert points[(rows == 60) & (cols == 159)][0, 0] > 0
    assert points[(rows == 119) & (cols == 80)][0, 1] > 0


def test_backproject_stride_gathers_matching_indices():
    depth = np.arange(1, 121 * 160 + 1, dtype=np.float32)[: 120 * 160].reshape(120, 160)
    points, (rows, cols) = backproject(depth, K, stride=4)
    assert len(points) == 30 * 40
    assert np.all(rows % 4 == 0) and np.all(cols % 4 == 0)
    np.testing.assert_array_equal(points[:, 2], depth[rows, cols])
    empty, (r, c) = backproject(np.zeros((8, 8), np.float32), K)
    assert empty.shape == (0, 3) and r.size == c.size == 0


def _plane_depth(intr: Intrinsics, n, d) -> np.ndarray:
    """Z-depth of the plane n . P = d seen through ``intr``: 1/Z is linear in (u, v)."""
    v, u = np.mgrid[0:intr.height, 0:intr.width].astype(np.float64)
    ray = n[0] * (u - intr.cx) / intr.fx + n[1] * (v - intr.cy) / intr.fy + n[2]
    return d / ray


def test_scaled_intrinsics_backproject_a_resized_depth_map_onto_the_same_plane():
    n = np.array([0.6, 0.3, 1.0])
    n /= np.linalg.norm(n)
    d = 3.0
    src = Intrinsics(fx=150.0, fy=150.0, cx=59.5, cy=44.5, width=120, height=90)
    depth = _plane_depth(src, n, d)
    # Downscale by 1/2 in x and 1/3 in y by averaging inverse depth over pixel blocks: exact
    # for a plane (1/Z is linear) and the same pixel alignment as cv2.resize INTER_AREA.
    small = 1.0 / (1.0 / depth).reshape(30, 3, 60, 2).mean(axis=(1, 3))
    intr = src.scaled(60 / 120, 30 / 90)
    assert (intr.width, intr.height) == (60, 30)
    np.testing.assert_allclose(_plane_depth(intr, n, d), small, rtol=1e-9)
    points, _ = backproject(small.astype(np.float32), intr)
    residual = np.abs(points.astype(np.float64) @ n - d)
    assert residual.max() < 1e-5
    # The naive cx * sx is half a pixel off: the same check must see that.
    naive = Intrinsics(src.fx / 2, src.fy / 3, src.cx / 2, src.cy / 3, 60, 30)
    bad, _ = backproject(small.astype(np.float32), naive)
    assert np.abs(bad.astype(np.float64) @ n - d).max() > 1e-3


def test_box_to_3d_hand_computed():
    intr = Intrinsics(fx=100.0, fy=100.0, cx=49.5, cy=39.5, width=100, height=80)
    # Box edges x 60..80, y 20..60: centre pixel (69.5, 39.5), 20 x 40 px. At 2 m:
    # x = (69.5 - 49.5) * 2 / 100 = 0.4, y = 0, width 0.4 m, height 0.8 m, depth 0.6 m.
    center, size = box_to_3d([60, 20, 80, 60], 2.0, intr)
    np.testing.assert_allclose(center, [0.4, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(size, [0.4, 0.8, 0.6], atol=1e-12)
    # The whole image is centred on the optical axis.
    center, _ = box_to_3d([0, 0, 100, 80], 5.0, intr)
    np.testing.assert_allclose(center, [0.0, 0.0, 5.0], atol=1e-12)


def test_median_depth_in_box_ignores_invalid_pixels_and_background():
    depth = np.full((40, 40), 10.0, np.float32)   # far wall
    depth[10:30, 10:30] = 2.0                      # object
    depth[18:22, 18:22] = 0.0                      # hole in the prediction
    depth[12, 12] = np.nan
    # The box is mostly wall around its edges; the central half sees the object only.
    assert median_depth_in_box(depth, [4, 4, 36, 36]) == 2.0
    assert median_depth_in_box(depth, [4, 4, 36, 36], center_fraction=1.0) == 10.0
    assert median_depth_in_box(np.zeros((40, 40), np.float32), [0, 0, 40, 40]) == 0.0
    assert median_depth_in_box(depth, [100, 100, 120, 120]) == 0.0     # outside the image
    assert median_depth_in_box(depth, [20.2, 15.2, 20.4, 15.4]) == 2.0  # sub-pixel box
    values = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    assert median_depth_in_box(values, [0, 0, 4, 4], center_fraction=1.0) == 8.5


def test_pack_xyzrgb_byte_layout():
    points = np.array([[1.0, -2.0, 3.5], [0.25, 0.5, 8.0]], np.float32)
    colors = np.array([[255, 128, 1], [0, 0, 0]], np.uint8)
    data = pack_xyzrgb(points, colors)
    assert isinstance(data, bytes) and len(data) == 2 * 16
    as_f32 = np.frombuffer(data, dtype="<f4").reshape(2, 4)
    np.testing.assert_array_equal(as_f32[:, :3], points)
    rgb = np.frombuffer(data, dtype="<u4").reshape(2, 4)[:, 3]
    np.testing.assert_array_equal(rgb, [0xFF8001, 0])
    # The fields describe exactly this layout: 4 float32 at offsets 0, 4, 8, 12.
    assert [(n, o, d, c) for n, o, d, c in XYZRGB_FIELDS] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1)]
    assert pack_xyzrgb(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)) == b""
    with pytest.raises(ValueError):
        pack_xyzrgb(points, colors[:1])


def test_focal_y_reads_fy_and_treats_an_unset_matrix_as_none():
    from mtl_split_core.geometry import focal_y
    assert focal_y([100.0, 0, 40, 0, 120.0, 30, 0, 0, 1]) == 120.0
    assert focal_y([0.0] * 9) is None
    assert focal_y([]) is None


def test_box_center_size_round_trip_and_scaling():
    assert box_to_center_size([10, 20, 50, 80]) == (30.0, 50.0, 40.0, 60.0)
    assert center_size_to_box(30.0, 50.0, 40.0, 60.0) == (10.0, 20.0, 50.0, 80.0)
    boxes = np.array([[10, 20, 50, 80], [0, 0, 4, 2]], np.float32)
    scaled = scale_boxes(boxes, (0.5, 2.0))
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, [[5, 40, 25, 160], [0, 0, 2, 4]])
    assert scale_boxes(np.zeros((0, 4)), (2.0, 2.0)).shape == (0, 4)


# ------------------------------------------------------------------ camera_info and image
def _k(fx, fy, cx, cy):
    return [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]


def _p(fx, fy, cx, cy):
    return [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]


def _fit(k, size, image, p=(0.0,) * 12, d=(), model="", binning=(0, 0), roi=(0, 0, 0, 0)):
    from mtl_split_core.geometry import fit_camera
    return fit_camera(k, p, d, model, size, binning, roi, image)


def test_a_camera_info_of_the_image_is_used_as_is():
    fit = _fit(_k(500, 510, 319.5, 239.5), (640, 480), (640, 480))
    assert fit.intrinsics == Intrinsics(500, 510, 319.5, 239.5, 640, 480)
    assert fit.problem is None and fit.scaled_from is None and fit.distortion == ""
    # Size not filled in (0 x 0): taken as the image's.
    assert _fit(_k(500, 510, 319.5, 239.5), (0, 0), (640, 480)).intrinsics.width == 640
    assert _fit([0.0] * 9, (640, 480), (640, 480)).intrinsics is None  # K unset


def test_a_uniformly_scaled_image_gets_a_rescaled_k():
    """A driver publishing 640x480 with the camera_info of its 1280x960 calibration: K halves
    (pixel centres: cx' = cx / 2 - 0.25), not used as is (depth 2x off, issue #24)."""
    fit = _fit(_k(1000, 1000, 639.5, 479.5), (1280, 960), (640, 480))
    assert fit.scaled_from == (1280, 960) and fit.problem is None
    assert fit.intrinsics == Intrinsics(500, 500, 319.5, 239.5, 640, 480)
    # 1920x1080 -> 640x360: a factor of 1/3, sides exact.
    third = _fit(_k(1500, 1500, 959.5, 539.5), (1920, 1080), (640, 360)).intrinsics
    assert third.fx == pytest.approx(500) and third.cx == pytest.approx(319.5)
    # Odd sizes round: 1001x751 -> 500x375 (x 0.4995, y 0.4993) is still a uniform scale.
    assert _fit(_k(900, 900, 500, 375), (1001, 751), (500, 375)).problem is None


def test_any_other_size_mismatch_is_a_problem():
    fit = _fit(_k(1000, 1000, 639.5, 359.5), (1280, 720), (640, 480))
    assert fit.intrinsics is None
    assert "camera_info is for 1280x720 pixels, the image is 640x480" in fit.problem


def test_roi_and_binning_make_the_published_image_camera():
    # A 2x2-binned 1280x960 camera publishes 640x480 (REP 104): the same as a rescale.
    fit = _fit(_k(1000, 1000, 639.5, 479.5), (1280, 960), (640, 480), binning=(2, 2))
    assert fit.intrinsics == Intrinsics(500, 500, 319.5, 239.5, 640, 480)
    assert fit.scaled_from is None
    # A 320x240 region at (100, 50): the principal point moves, the focal length stays.
    fit = _fit(_k(1000, 1000, 639.5, 479.5), (1280, 960), (320, 240), roi=(100, 50, 320, 240))
    assert fit.intrinsics == Intrinsics(1000, 1000, 539.5, 429.5, 320, 240)


def test_distortion_takes_the_rectified_camera_from_p():
    d = [-0.2, 0.05, 0.0, 0.0, 0.0]
    fit = _fit(_k(1000, 1000, 640, 480), (1280, 960), (1280, 960), p=_p(950, 955, 630, 470),
               d=d, model="plumb_bob")
    assert fit.distortion == "plumb_bob"
    assert (fit.intrinsics.fx, fit.intrinsics.fy, fit.intrinsics.cx) == (950, 955, 630)
    # No P: K. Zero coefficients: no distortion.
    assert _fit(_k(1000, 1000, 640, 480), (1280, 960), (1280, 960), d=d,
                model="equidistant").intrinsics.fx == 1000
    assert _fit(_k(1000, 1000, 640, 480), (1280, 960), (1280, 960), d=[0.0] * 5,
                model="plumb_bob").distortion == ""


def test_without_camera_info_every_output_assumes_the_reference_camera():
    """The camera depth is predicted for: reference_focal model pixels, i.e. reference /
    scale source pixels; the 60 degree guess only for a model without a reference."""
    from mtl_split_core.geometry import GUESS_HFOV_DEG, camera_intrinsics, reference_camera
    ref = reference_camera(640, 480, 218.97, 0.5)  # a 320x240 model on 640x480 images
    assert ref == Intrinsics(437.94, 437.94, 319.5, 239.5, 640, 480)
    assert camera_intrinsics(None, 640, 480, 218.97, 0.5) == ref
    assert camera_intrinsics([0.0] * 9, 640, 480, 218.97, 0.5) == ref
    assert camera_intrinsics(_k(500, 500, 319.5, 239.5), 640, 480, 218.97, 0.5).fx == 500
    guess = reference_camera(640, 480, None, 0.5)
    assert guess == Intrinsics.default_for(640, 480, GUESS_HFOV_DEG)
