"""Edge node: camera image in, compressed split features out (runs on the robot).

Subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` and ``camera_info``; publishes
``mtl_split/features`` (mtl_split/SplitFeatures) with the image's header and camera_info, and
``/diagnostics``. A worker thread runs the network; while it is busy only the newest frame is
kept (older ones are counted as drops), so latency never builds up behind a queue.
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mtl_split.msg import SplitFeatures
from mtl_split_core.codec import CODECS
from mtl_split_core.runtime.device import PRECISIONS
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.stats import LatencyStats, RateMeter
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb
from mtl_split_ros.node_support import (LatestSlot, Rejections, diagnostic_array,
                                        diagnostic_status, run_node)
from mtl_split_ros.params import Param, ParameterError, declare_all, in_range, positive
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name

PARAMS = [
    Param("model", "", "Model folder or card; '' = the packaged default model."),
    Param("split", "", "Split point name (s4, s8, s16, s32) or index; '' = the model's default."),
    Param("device", "auto", "auto (CUDA if present, else CPU), cpu, cuda or cuda:N."),
    Param("precision", "fp32", "Network precision (fp16 only on CUDA).", PRECISIONS),
    Param("codec", "", "Feature codec; '' = the model's default.", ("",) + CODECS),
    Param("zstd_level", 3, "zstd compression level.", check=in_range(1, 22)),
    Param("cuda_graphs", True, "On CUDA, replay the edge network as one CUDA graph (4-8x "
          "faster for this launch-bound prefix; ignored on CPU)."),
    Param("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
          "sensor_msgs/CompressedImage on 'image/compressed'.", ("raw", "compressed")),
    Param("input_qos", "sensor_data", "QoS of the image subscription.", QOS_PROFILES),
    Param("output_qos", "reliable", "QoS of the features publisher.", QOS_PROFILES),
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", check=positive),
]


class EdgeNode(Node):
    def __init__(self):
        super().__init__("mtl_split_edge")
        self.cfg = declare_all(self, PARAMS)
        try:
            self.runner = EdgeRunner.from_path(
                self.cfg["model"], split=self.cfg["split"], device=self.cfg["device"],
                precision=self.cfg["precision"], codec=self.cfg["codec"] or None,
                zstd_level=self.cfg["zstd_level"], cuda_graphs=self.cfg["cuda_graphs"])
        except ConfigError as err:
            raise ParameterError(str(err)) from err

        self.rejections = Rejections(self.get_logger())
        self.latency = LatencyStats()
        self.rate = RateMeter()
        self.bytes_per_frame = LatencyStats()
        self.camera_info = None
        self.slot = LatestSlot()

        self.pub = self.create_publisher(SplitFeatures, "mtl_split/features",
                                         qos_from_name(self.cfg["output_qos"]))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        in_qos = qos_from_name(self.cfg["input_qos"])
        if self.cfg["input_transport"] == "compressed":
            self.create_subscription(CompressedImage, "image/compressed", self.slot.put, in_qos)
        else:
            self.create_subscription(Image, "image", self.slot.put, in_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos)
        self.create_timer(self.cfg["diagnostics_period"], self._publish_diagnostics)

        self._worker = threading.Thread(target=self._work, name="edge-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"edge ready: model {self.runner.card.get('name')} ({self.runner.card['fingerprint']}),"
            f" split {self.runner.split}, codec {self.runner.codec}, device {self.runner.device}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _work(self) -> None:
        while not self.slot.closed:
            msg = self.slot.take()
            if msg is not None:
                self._process(msg)

    def _process(self, msg) -> None:
        start = time.perf_counter()
        try:
            rgb = image_to_rgb(msg)
        except ImageDecodeError as err:
            self.rejections("bad_image", f"{err} (frame {msg.header.frame_id or '?'})")
            return
        packet = self.runner(rgb)
        out = packet_to_msg(packet, msg.header, self.camera_info)
        out.edge_ms = (time.perf_counter() - start) * 1e3  # include image conversion
        self.pub.publish(out)
        self.latency.add(out.edge_ms)
        self.bytes_per_frame.add(packet.nbytes)
        self.rate.tick()

    def _publish_diagnostics(self) -> None:
        values = {
            "fps": self.rate.fps(), "edge_ms_p50": self.latency.p50,
            "edge_ms_p95": self.latency.p95, "bytes_per_frame_p50": self.bytes_per_frame.p50,
            "frames": self.latency.count, "drops": self.slot.dropped,
            "rejected": self.rejections.total, **{f"rejected_{k}": v for k, v in
                                                  self.rejections.counts.items()},
            "split": self.runner.split, "codec": self.runner.codec,
        }
        warn = "rejecting input" if self.rejections.total else None
        self.diag_pub.publish(diagnostic_array(self, [diagnostic_status(
            f"{self.get_name()}: edge", self.get_fully_qualified_name(), values, warn)]))

    def close(self) -> None:
        self.slot.close()
        self._worker.join(timeout=5)


def main(args=None) -> int:
    return run_node(EdgeNode, args)
