"""Simulated robot camera: drives a camera through a generated PyBullet scene.

Publishes ``image`` (rgb8), ``camera_info`` and, with ``publish_ground_truth``,
``gt/depth`` (32FC1 metres), ``gt/segmentation`` (mono8 class ids) and ``gt/detections``
(visible-extent boxes) — all with one header per frame. Stamps come from the node clock, so ``use_sim_time`` makes it follow /clock.
"""

from __future__ import annotations

import math

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from mtl_split.msg import Detection2D, Detection2DArray
from mtl_split_core.classes import DETECTION_CLASSES
from mtl_split_core.sim.camera import SimCamera
from mtl_split_core.sim.scene import SimScene
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.node_support import run_node
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
]
FRAMES_PER_LEG = 8  # frames between two trajectory waypoints


class Trajectory:
    """Smooth camera path: linear moves between random waypoints (each facing an object)."""

    def __init__(self, scene: SimScene):
        self.scene = scene
        self.a, self.b = scene.random_pose(), scene.random_pose()
        self.i = 0

    def next(self):
        t = self.i / FRAMES_PER_LEG
        a, b = self.a, self.b
        dyaw = (b[3] - a[3] + math.pi) % (2 * math.pi) - math.pi  # shortest turn
        pose = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t,
                a[3] + dyaw * t, a[4] + (b[4] - a[4]) * t)
        self.i += 1
        if self.i > FRAMES_PER_LEG:
            self.a, self.b, self.i = self.b, self.scene.random_pose(), 1
        return pose


def camera_info(camera: SimCamera, header) -> CameraInfo:
    info = CameraInfo(header=header, width=camera.width, height=camera.height,
                      distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = camera.k
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class SimCameraNode(Node):
    def __init__(self):
        super().__init__("mtl_split_sim_camera")
        self.cfg = declare_all(self, PARAMS)
        self.scene = SimScene(self.cfg["seed"], self.cfg["width"], self.cfg["height"])
        self.camera = SimCamera(self.cfg["width"], self.cfg["height"], self.cfg["vfov_deg"])
        self.trajectory = Trajectory(self.scene)
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
        self.pub_info.publish(camera_info(self.camera, header))
        if self.pub_depth is not None:
            self.pub_depth.publish(fill_image(Image(header=header), frame.depth, "32FC1"))
            self.pub_seg.publish(fill_image(Image(header=header), frame.seg, "mono8"))
            dets = Detection2DArray(header=header)
            for (x1, y1, x2, y2), c in zip(frame.boxes.tolist(), frame.labels.tolist()):
                dets.detections.append(Detection2D(
                    class_id=c, class_name=DETECTION_CLASSES[c], score=1.0,
                    center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2, size_x=x2 - x1,
                    size_y=y2 - y1))
            self.pub_dets.publish(dets)
        self.pub_image.publish(fill_image(Image(header=header), frame.rgb, "rgb8"))
        self.count += 1

    def close(self) -> None:
        self.scene.close()


def main(args=None) -> int:
    return run_node(SimCameraNode, args)
