"""The sim camera node publishes image, camera_info and ground truth with identical headers."""

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop

pytestmark = pytest.mark.ros
CAMERA = ("from mtl_split_tools.sim_camera_node import main; import sys; sys.exit(main())")


def test_sim_camera_headers_and_ground_truth():
    rclpy.init()
    node = rclpy.create_node("sim_camera_test")
    got = {}
    topics = {"image": Image, "camera_info": CameraInfo, "gt/depth": Image,
              "gt/segmentation": Image, "gt/detections": Detection2DArray}
    for name, mtype in topics.items():
        node.create_subscription(mtype, name, lambda m, n=name: got.setdefault(n, []).append(m),
                                 qos_from_name("reliable", depth=10))
    args = ["-c", CAMERA, "--ros-args", "-p", "width:=160", "-p", "height:=120",
            "-p", "rate:=5.0", "-p", "frame_id:=sim_cam"]
    try:
        with python_process(args) as cam:
            for _ in range(600):
                rclpy.spin_once(node, timeout_sec=0.1)
                if all(len(got.get(n, [])) >= 3 for n in topics):
                    break
                assert cam.poll() is None, stop(cam)
            stop(cam)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert all(got.get(n) for n in topics), got.keys()
    stamps = {n: {(m.header.stamp.sec, m.header.stamp.nanosec) for m in got[n]} for n in topics}
    common = set.intersection(*stamps.values())
    assert common, "no frame has all five messages with one stamp"
    image = got["image"][0]
    assert (image.encoding, image.width, image.height) == ("rgb8", 160, 120)
    assert image.header.frame_id == "sim_cam"
    info = got["camera_info"][0]
    assert (info.width, info.height) == (160, 120) and info.k[0] > 0
    depth = np.frombuffer(got["gt/depth"][0].data, np.float32)
    assert got["gt/depth"][0].encoding == "32FC1" and (depth >= 0).all() and depth.max() > 0
    seg = np.frombuffer(got["gt/segmentation"][0].data, np.uint8)
    assert seg.max() < 11 and len(np.unique(seg)) >= 2
