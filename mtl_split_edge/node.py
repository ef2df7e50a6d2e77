"""Edge node: camera image in, compressed split features out (runs on the robot).

Subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` and ``camera_info``; publishes
``mtl_split/features`` (mtl_split/SplitFeatures) with the image's header and camera_info, and
``/diagnostics``. A worker thread runs the network; while it is busy only the newest frame is
kept (older ones are counted as drops), so latency never builds up behind a queue. Frames the
middleware reports lost before they reach the node are counted apart (``lost_in_dds``). A
watchdog replaces the worker when it stalls or dies (``stall_timeout``; mtl_split_ros.watchdog);
the /diagnostics level reflects the last ``diagnostics_window`` seconds.

Run-time parameters (``ros2 param set``): split, codec, zstd_level, diagnostics_period; the
others are read-only.
"""

from __future__ import annotations

import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mtl_split.msg import SplitFeatures
from mtl_split_core.auth import KeyFileError, Signer
from mtl_split_core.codec import CODECS, ZSTD_LEVELS
from mtl_split_core.runtime.backends import BACKENDS, OrtOptions
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.stats import RateMeter, RollingStats
from mtl_split_ros.features_auth import load_keys, sign
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb
from mtl_split_ros.node_support import (
    RUNTIME_PARAMS,
    SUPERVISION_PARAMS,
    LatestSlot,
    OutputGate,
    Rejections,
    diagnostic_array,
    diagnostic_status,
    handle_isolated,
    run_node,
    watchdog_period,
)
from mtl_split_ros.params import Param, ParameterError, declare_all, in_range
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.qos_events import SubscriptionHealth
from mtl_split_ros.watchdog import SupervisedWorker

PARAMS = [
    Param("model", "", "Model folder or card; '' = the packaged default model."),
    Param("split", "", "Split point name (s4, s8, s16, s32) or index (0, 1, ...); '' = the "
          "model's default.", dynamic=True, types=(str, int)),
    *RUNTIME_PARAMS,
    Param("codec", "", "Feature codec; '' = the model's default.", ("",) + CODECS,
          dynamic=True),
    Param("zstd_level", 3, "zstd compression level.", check=in_range(*ZSTD_LEVELS), dynamic=True),
    Param("backend", "torch", "Inference runtime: torch, or onnxruntime (the files of "
          "`mtl-split export`; CUDA/TensorRT providers when installed).", BACKENDS),
    Param("onnx_dir", "", "Folder of the ONNX export for backend onnxruntime; '' = the model "
          "folder's onnx/."),
    Param("engine_cache", "", "TensorRT engine cache folder (onnxruntime's TensorRT provider); "
          "'' = none."),
    Param("cuda_graphs", True, "On CUDA, replay the edge network as one CUDA graph (4-8x "
          "faster for this launch-bound prefix; ignored on CPU)."),
    Param("input_transport", "raw", "raw: sensor_msgs/Image on 'image'; compressed: "
          "sensor_msgs/CompressedImage on 'image/compressed'.", ("raw", "compressed")),
    Param("input_qos", "reliable", "QoS of the image subscription (history depth 1). reliable "
          "gets every frame of a reliable camera driver (the usual default); sensor_data / "
          "best_effort match best-effort drivers.", QOS_PROFILES),
    Param("output_qos", "reliable", "QoS of the features publisher.", QOS_PROFILES),
    Param("auth_key_file", "", "Key file: sign every feature message with HMAC-SHA256 "
          "(docs/SECURITY.md); '' = unsigned."),
    Param("auth_key_id", "", "Key of auth_key_file that signs; '' = its first key."),
    *SUPERVISION_PARAMS,
]


class EdgeNode(Node):
    def __init__(self):
        super().__init__("mtl_split_edge")
        self.cfg = declare_all(self, PARAMS, apply=self._apply)
        self.signer = self._signer()  # before the model: a bad key file fails fast
        window = self.cfg["diagnostics_window"]
        self.rejections = Rejections(self.get_logger(), window_s=window)
        self.latency = RollingStats()
        self.rate = RateMeter()
        self.bytes_per_frame = RollingStats()
        self.camera_info = None
        self.slot = LatestSlot(window_s=window)
        self.gate = OutputGate()
        self.health = SubscriptionHealth(self)

        self.pub = self.create_publisher(SplitFeatures, "mtl_split/features",
                                         qos_from_name(self.cfg["output_qos"]))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Depth 1 + the newest-frame slot: never a backlog. With reliable QoS a large image is
        # still delivered whole (best effort loses fragments of big samples under load).
        in_qos = qos_from_name(self.cfg["input_qos"])
        image_type, self.image_topic = ((CompressedImage, "image/compressed")
                                        if self.cfg["input_transport"] == "compressed"
                                        else (Image, "image"))
        self.create_subscription(image_type, self.image_topic, self.slot.put, in_qos,
                                 event_callbacks=self.health.callbacks(self.image_topic, in_qos))
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, in_qos,
                                 event_callbacks=self.health.callbacks("camera_info", in_qos))
        self.diag_timer = self.create_timer(self.cfg["diagnostics_period"],
                                            self._publish_diagnostics)

        # The model loads after publishers and subscriptions exist: DDS discovery (matching
        # the camera and the server) goes on meanwhile, which shortens a restart.
        try:
            self.runner = EdgeRunner.from_path(
                self.cfg["model"], split=self.cfg["split"], device=self.cfg["device"],
                precision=self.cfg["precision"], codec=self.cfg["codec"] or None,
                zstd_level=self.cfg["zstd_level"], cuda_graphs=self.cfg["cuda_graphs"],
                backend=self.cfg["backend"], onnx=OrtOptions(
                    folder=self.cfg["onnx_dir"], engine_cache=self.cfg["engine_cache"]))
        except ConfigError as err:
            raise ParameterError(str(err)) from err
        if self.runner.device.type == "cuda":
            # One frame through the network now (CUDA's lazy start-up), so the first camera
            # frame is not the slow one. Not on CPU: there the first frame costs little more
            # than any other, and a warm-up frame only delays the first output of a restart.
            width, height = self.runner.input_size
            self.runner(np.zeros((height, width, 3), np.uint8))

        self.worker = SupervisedWorker("edge-worker", self._work, self.slot.waiting_s, self.gate,
                                       self.get_logger(), self.cfg["stall_timeout"], window)
        self.worker.start()
        self.watchdog_timer = self.create_timer(watchdog_period(self.cfg["stall_timeout"]),
                                                self.worker.check)
        self.get_logger().info(
            f"edge ready: model {self.runner.card.get('name')} ({self.runner.card['fingerprint']}),"
            f" split {self.runner.split}, codec {self.runner.codec}, device {self.runner.device}"
            + ("" if self.signer is None else f", signing with key {self.signer.key_id}"))

    def _signer(self) -> Signer | None:
        ring = load_keys(self.cfg["auth_key_file"], self.get_logger())
        if ring is None:
            if self.cfg["auth_key_id"]:
                raise ParameterError("parameter 'auth_key_id' needs 'auth_key_file'")
            return None
        try:
            return Signer(ring, self.cfg["auth_key_id"])
        except KeyFileError as err:
            raise ParameterError(f"parameter 'auth_key_id': {err}") from None

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _apply(self, changes: dict) -> None:
        """Run-time parameter changes (validated by params.py; see PARAMS)."""
        try:  # absent: unchanged; '' = the model's default, as at start-up
            self.runner.configure(split=changes.get("split"), codec=changes.get("codec"),
                                  zstd_level=changes.get("zstd_level"))
        except ConfigError as err:
            raise ParameterError(str(err)) from err
        if "diagnostics_period" in changes:
            self.destroy_timer(self.diag_timer)
            self.diag_timer = self.create_timer(changes["diagnostics_period"],
                                                self._publish_diagnostics)

    def _work(self) -> None:
        """One worker step (SupervisedWorker loops it): the newest frame, if any."""
        msg = self.slot.take()
        if msg is not None:
            handle_isolated(self._process, msg, self.rejections)

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
        if self.signer is not None:  # last: the tag covers every other field
            sign(out, self.signer)
        if not self.gate.run(self.pub.publish, out):
            return
        self.latency.add(out.edge_ms)
        self.bytes_per_frame.add(packet.nbytes)
        self.rate.tick()

    def _publish_diagnostics(self) -> None:
        values = {
            "fps": self.rate.fps(), "edge_ms_p50": self.latency.p50,
            "edge_ms_p95": self.latency.p95, "bytes_per_frame_p50": self.bytes_per_frame.p50,
            "frames": self.latency.count, "drops": self.slot.dropped,
            "drops_recent": self.slot.recent_drops(),
            "lost_in_dds": self.health.lost(self.image_topic),
            **self.rejections.values(), **self.worker.values(),
            "split": self.runner.split, "codec": self.runner.codec,
        }
        self.diag_pub.publish(diagnostic_array(self, [diagnostic_status(
            f"{self.get_name()}: edge", self.get_fully_qualified_name(), values,
            warn=self.rejections.problem(), error=self.worker.problem())]))

    def close(self) -> None:
        """Stop the worker (before the node and context go): nothing is published after."""
        self.slot.close()
        self.worker.stop(timeout=10)
        self.gate.close()


def main(args=None) -> int:
    return run_node(EdgeNode, args)
