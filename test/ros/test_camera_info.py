"""camera_info.py: the edge's camera_info fitted to each image — rescaled and said once,
rectified camera for a distorted one (said once), a mismatch or bad values rejected with a
reason (counted each time a new camera_info does not fit)."""

import pytest
from sensor_msgs.msg import CameraInfo

from mtl_split_ros.camera_info import CameraInfoFitter
from mtl_split_ros.msg_factory import RclpyMessages

pytestmark = pytest.mark.ros


def _info(width, height, fx, cx, cy, d=(), p=None, model="plumb_bob"):
    info = CameraInfo(width=width, height=height, distortion_model=model)
    info.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
    info.d = list(d)
    if p is not None:
        info.p = p
    info.header.frame_id = "camera"
    return info


@pytest.fixture
def fitter():
    said = {"warn": [], "reject": []}
    f = CameraInfoFitter(RclpyMessages(), said["warn"].append,
                         lambda reason, detail: said["reject"].append((reason, detail)))
    return f, said


def test_a_half_resolution_image_gets_the_rescaled_camera_said_once(fitter):
    f, said = fitter
    info = _info(1280, 960, 1000.0, 639.5, 479.5)
    out = f.for_image(info, 640, 480)
    assert (out.width, out.height) == (640, 480) and out.header.frame_id == "camera"
    assert list(out.k) == [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    assert list(out.p[:3]) == [500.0, 0.0, 319.5] and out.p[5] == 500.0
    assert f.for_image(info, 640, 480) is out  # same message, same image: fitted already
    f.for_image(_info(1280, 960, 1000.0, 639.5, 479.5), 640, 480)  # the next camera_info
    assert len(said["warn"]) == 1 and "K and P are rescaled" in said["warn"][0]
    assert "1280x960" in said["warn"][0] and said["reject"] == []


def test_a_distorted_camera_is_said_once_and_p_is_used(fitter):
    f, said = fitter
    p = [900.0, 0.0, 630.0, 0.0, 0.0, 900.0, 470.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    for _ in range(3):
        out = f.for_image(_info(1280, 960, 1000.0, 640.0, 480.0, d=[-0.2, 0.1, 0, 0, 0], p=p),
                          1280, 960)
    assert out.k[0] == 900.0 and list(out.d) == [0.0] * 5  # the rectified pinhole camera
    assert len(said["warn"]) == 1 and "plumb_bob distortion" in said["warn"][0]
    assert "image_rect" in said["warn"][0]


def test_what_cannot_describe_the_image_is_rejected_with_a_reason(fitter):
    f, said = fitter
    assert f.for_image(_info(1280, 720, 1000.0, 639.5, 359.5), 640, 480) is None
    assert said["reject"][0][0] == "camera_info_size"
    assert "not a uniform scale" in said["reject"][0][1]
    bad = _info(640, 480, float("nan"), 319.5, 239.5)
    assert f.for_image(bad, 640, 480) is None and said["reject"][1][0] == "camera_info"
    assert f.for_image(None, 640, 480) is None
    unset = _info(640, 480, 0.0, 0.0, 0.0)
    unset.k = [0.0] * 9  # a driver without calibration: no camera, nothing to reject
    assert f.for_image(unset, 640, 480) is None and len(said["reject"]) == 2


def test_a_new_message_of_the_same_camera_is_fitted_as_the_last_with_its_own_header(fitter):
    """Drivers send a new camera_info per image: the same contents are not fitted again, the
    result carries the new message's header; a rejected one is counted again each time;
    another camera (any field) is fitted anew."""
    f, said = fitter
    first = f.for_image(_info(1280, 960, 1000.0, 639.5, 479.5), 640, 480)
    again = _info(1280, 960, 1000.0, 639.5, 479.5)
    again.header.frame_id, again.header.stamp.sec = "camera2", 7
    out = f.for_image(again, 640, 480)
    assert out is not first and out.header == again.header and first.header.frame_id == "camera"
    assert list(out.k) == list(first.k) and (out.width, out.height) == (640, 480)
    assert len(said["warn"]) == 1 and said["reject"] == []
    other = f.for_image(_info(1280, 960, 1000.0, 640.0, 479.5), 640, 480)
    assert other.k[2] == 319.75  # another principal point: fitted anew
    assert f.for_image(_info(1280, 960, 1000.0, 640.0, 479.5), 1280, 960).k[2] == 640.0
    for _ in range(3):
        assert f.for_image(_info(1280, 720, 1000.0, 639.5, 359.5), 640, 480) is None
    assert [r for r, _ in said["reject"]] == ["camera_info_size"] * 3
    nan = [_info(640, 480, float("nan"), 319.5, 239.5) for _ in range(2)]
    assert all(f.for_image(i, 640, 480) is None for i in nan)
    assert [r for r, _ in said["reject"]][3:] == ["camera_info"] * 2
    good = f.for_image(_info(640, 480, 500.0, 319.5, 239.5), 640, 480)
    assert good is not None and good.k[0] == 500.0
