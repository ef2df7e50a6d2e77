"""A node that gathers the pipeline's inputs, ground truth and outputs by image stamp."""

from __future__ import annotations

import time
from collections import defaultdict

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_ros.image_msg import image_to_array, image_to_rgb
from mtl_split_ros.qos import qos_from_name


def stamp_key(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Collector(Node):
    """Stores, per frame stamp: the input image, ground truth, features and outputs."""

    def __init__(self, prefix: str = "mtl_split/"):
        super().__init__("mtl_split_demo_collector")
        self.frames: dict[int, dict] = defaultdict(dict)
        self.diagnostics: dict[str, dict] = {}
        rel = qos_from_name("reliable", depth=10)
        sub = self.create_subscription
        sub(Image, "image", lambda m: self._put(m, "image", image_to_rgb(m)), rel)
        sub(CompressedImage, "image/compressed",
            lambda m: self._put(m, "image", image_to_rgb(m)), rel)
        sub(Image, "gt/depth", lambda m: self._put(m, "gt_depth", image_to_array(m)), rel)
        sub(Image, "gt/segmentation", lambda m: self._put(m, "gt_seg", image_to_array(m)), rel)
        sub(Detection2DArray, "gt/detections", lambda m: self._put(m, "gt_dets", m), rel)
        sub(SplitFeatures, prefix + "features", self._on_features, rel)
        sub(Detection2DArray, prefix + "detections", lambda m: self._put(m, "dets", m), rel)
        sub(Image, prefix + "segmentation",
            lambda m: self._put(m, "seg", image_to_array(m)), rel)
        sub(Image, prefix + "depth", lambda m: self._put(m, "depth", image_to_array(m)), rel)
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos_profile_sensor_data)

    def _put(self, msg, key, value) -> None:
        entry = self.frames[stamp_key(msg.header)]
        entry[key] = value
        entry.setdefault("arrival", {})[key] = time.time()
        entry["stamp_s"] = stamp_key(msg.header) / 1e9

    def _on_features(self, msg: SplitFeatures) -> None:
        nbytes = len(msg.data) + 4 * (len(msg.scale) + len(msg.offset))
        self._put(msg, "features", {"bytes": nbytes, "edge_ms": float(msg.edge_ms),
                                    "shape": list(msg.shape), "codec": msg.codec})

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def complete(self, ground_truth: bool = True) -> list[dict]:
        """Frames that have the input, every output and (if asked) the ground truth."""
        need = {"image", "features", "dets", "seg", "depth"}
        if ground_truth:
            need |= {"gt_seg", "gt_depth", "gt_dets"}
        return [f for _, f in sorted(self.frames.items()) if need <= f.keys()]
