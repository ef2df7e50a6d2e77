"""Simulated robot camera: drives a camera through a generated PyBullet scene.

Publishes ``image`` (rgb8), ``camera_info`` and, with ``publish_ground_truth``,
``gt/depth`` (32FC1 metres), ``gt/segmentation`` (mono8 class ids) and ``gt/detections``
(visible-extent boxes) — all with one header per frame. Stamps come from the node clock, so
``use_sim_time`` makes it follow /clock. The camera moves along ``sim.trajectory.Trajectory``.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from mtl_split_core.geometry import Intrinsics
from mtl_split_core.sim.camera import SimCamera
from mtl_split_core.sim.scene import SimScene
from mtl_split_core.sim.styles import STYLES
from mtl_split_core.sim.trajectory import Trajectory
from mtl_split_ros import outputs
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.node_main import run_node
from mtl_split_ros.params import Param, declare_all, in_range, positive
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name

PARAMS = [
    Param("rate", 4.0, "Frames per second.", check=positive),
    Param("width", 640, "Image width (px).", check=in_range(32, 4096)),
    Param("height", 480, "Image height (px).", check=in_range(32, 4096)),
    Param("seed", 0, "Scene and trajectory seed (same seed, same frames)."),
    Param("frames", 0, "Stop publishing after this many frames; 0 = never.",
          check=in_range(0, 10 ** 9)),
    Param("frame_id", "camera_optical_frame", "frame_id of every header."),
    Param("publish_ground_truth", True, "Also publish gt/depth and gt/segmentation."),
    Param("output_qos", "reliable", "QoS of all publishers.", QOS_PROFILES),
    Param("min_subscribers", 0, "Hold the first frame until 'image' has this many "
          "subscribers (so a run of N frames is not lost to DDS discovery).",
          check=in_range(0, 1000)),
    Param("vfov_deg", 60.0, "Vertical field of view (deg).", check=in_range(10.0, 150.0)),
    Param("style", "default", "Scene style: default (what the shipped model saw) or novel "
          "(checker ground, dusk light, camera 1.6-2.4 m high).", tuple(STYLES)),
]


class SimCameraNode(Node):
    def __init__(self):
        super().__init__("mtl_split_sim_camera")
        self.cfg = declare_all(self, PARAMS)
        self.scene = SimScene(self.cfg["seed"], self.cfg["width"], self.cfg["height"],
                              style=self.cfg["style"])
        self.camera = SimCamera(self.cfg["width"], self.cfg["height"], self.cfg["vfov_deg"])
        self.trajectory = Trajectory(self.scene)
        c = self.camera
        self.intrinsics = Intrinsics(c.fx, c.fy, c.cx, c.cy, c.width, c.height)
        self.messages = RclpyMessages()
        # A history of 10: ground-truth consumers (evaluation) must not lose frames.
        qos = qos_from_name(self.cfg["output_qos"], depth=10)
        self.pub_image = self.create_publisher(Image, "image", qos)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos)
        self.pub_depth = self.pub_seg = None
        if self.cfg["publish_ground_truth"]:
            self.pub_depth = self.create_publisher(Image, "gt/depth", qos)
            self.pub_seg = self.create_publisher(Image, "gt/segmentation", qos)
            self.pub_dets = self.create_publisher(Detection2DArray, "gt/detections", qos)
        self.count = 0
        self.timer = self.create_timer(1.0 / self.cfg["rate"], self._tick)
        self.get_logger().info(f"sim camera: {self.cfg['width']}x{self.cfg['height']} at "
                               f"{self.cfg['rate']} Hz, seed {self.cfg['seed']}")

    def _tick(self) -> None:
        if self.cfg["frames"] and self.count >= self.cfg["frames"]:
            self.timer.cancel()
            self.get_logger().info(f"published {self.count} frames; done")
            return
        if self.count == 0 and \
                self.pub_image.get_subscription_count() < self.cfg["min_subscribers"]:
            return
        frame = self.scene.render(self.trajectory.next(), self.camera)
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.cfg["frame_id"]
        f = self.messages
        self.pub_info.publish(outputs.camera_info_msg(f, header, self.intrinsics))
        if self.pub_depth is not None:
            self.pub_depth.publish(outputs.image(f, header, frame.depth, "32FC1"))
            self.pub_seg.publish(outputs.image(f, header, frame.seg, "mono8"))
            self.pub_dets.publish(outputs.detection_array(
                f, header, frame.boxes, frame.labels, np.ones(len(frame.labels))))
        self.pub_image.publish(outputs.image(f, header, frame.rgb, "rgb8"))
        self.count += 1

    def close(self) -> None:
        self.scene.close()


def main(args=None) -> int:
    return run_node(SimCameraNode, args)
