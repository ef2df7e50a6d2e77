"""Edge node: camera image in, compressed split features out (runs on the robot).

Subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` and ``camera_info``; publishes
``mtl_split/features`` (mtl_split/SplitFeatures) with the image's header and camera_info, and
``/diagnostics``. A worker thread runs the network; while it is busy only the newest frame is
kept (older ones are counted as drops), so latency never builds up behind a queue. Frames the
middleware reports lost before they reach the node are counted apart (``lost_in_dds``). A
watchdog replaces the worker when it stalls or dies (``stall_timeout``; mtl_split_ros.watchdog);
the /diagnostics level reflects the last ``diagnostics_window`` seconds.

Link adaptation (docs/ADAPTIVE.md): the server answers every features message on
``mtl_split/link_feedback``; from it the edge measures its link, picks split and codec
(``adaptive``: codec / split_codec) and, when the server stops answering for ``fallback_after``
seconds, runs the rest of the network itself and publishes the server's outputs on the same
topics (``link_mode: local`` on /diagnostics), probing the server until it answers again. One
set of outputs per frame: a frame sent as features gets the server's outputs, the others the
robot's own. A probe is a features message marked ``probe``: the server answers it and
publishes nothing, and the robot serves that frame itself, so probing costs no outputs.

Run-time parameters (``ros2 param set``): split, codec, zstd_level, diagnostics_period; the
others are read-only. With ``adaptive`` on, a split/codec set by hand is held for a while, then
the controller may move on; the parameters keep the value set by hand, /diagnostics shows the
one in use.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.auth import KeyFileError, Signer
from mtl_split_core.codec import CODECS, ENTROPY_CODECS, ZSTD_LEVELS
from mtl_split_core.errors import InputError
from mtl_split_core.geometry import focal_y
from mtl_split_core.locations import data_dirs
from mtl_split_core.plan.planner import load_accuracy_drops
from mtl_split_core.plan.profile import load_profile
from mtl_split_core.runtime.adaptive import ADAPTIVE_MODES, Controller, LinkAdaptation
from mtl_split_core.runtime.backends import OrtOptions
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.packet import FeaturePacket
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.runtime.stats import RateMeter, RollingStats
from mtl_split_ros import outputs
from mtl_split_ros.features_auth import load_keys, sign, stamp_ns
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.node_main import run_node
from mtl_split_ros.node_support import (
    RUNTIME_PARAMS,
    SUPERVISION_PARAMS,
    LatestSlot,
    OutputGate,
    Rejections,
    diagnostic_array,
    diagnostic_status,
    executor_param,
    handle_isolated,
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
    executor_param("single"),
    Param("codec", "", "Feature codec; '' = the model's default (eb-<k>/1: a model with "
          "entropy tables).", ("",) + CODECS + ENTROPY_CODECS, dynamic=True),
    Param("zstd_level", 3, "zstd compression level.", check=in_range(*ZSTD_LEVELS), dynamic=True),
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
    # types: an unquoted `off` (-p adaptive:=off, launch arguments) arrives as YAML false.
    Param("adaptive", "off", "Link adaptation: off (split and codec as set), codec (the codec "
          "follows the measured link), split_codec (split and codec follow it). The local "
          "fallback works in every mode.", types=(str, bool),
          check=lambda v: None if v is False or v in ADAPTIVE_MODES
          else f"expected one of: {', '.join(ADAPTIVE_MODES)}"),
    Param("latency_budget_ms", 100.0, "End-to-end latency the adaptation keeps within; no "
          "option within it = run locally.", check=in_range(1.0, 60000.0)),
    Param("fallback_after", 0.5, "Seconds a features message may go unanswered by the server "
          "before the edge runs the whole network itself; 0 = never.",
          check=in_range(0.0, 3600.0)),
    Param("probe_period", 0.5, "While running locally: seconds between probe frames sent to "
          "the server (its answer brings split computing back).", check=in_range(0.01, 3600.0)),
    Param("robot_profile", "cpu2_robot.json", "Profile of this robot (`mtl-split profile` "
          "JSON): a path, or the name of a packaged profile (bench/profiles). Read when "
          "adaptive is on."),
    Param("server_profile", "h100_server.json", "Profile of the server, as robot_profile."),
    Param("accuracy_file", "", "Accuracy of the model's options (`mtl-split eval --out` "
          "JSON, one run or several in one list), as robot_profile: the controller prefers "
          "the more accurate of options with as many fps; '' = more codec bits count as more "
          "accurate. Read when adaptive is on."),
    Param("max_accuracy_drop", 1.0, "Never choose an option that loses more than this "
          "fraction of the model's best accuracy (worst of mAP@0.5, mIoU, delta<1.25 in "
          "accuracy_file); 1 = no floor.", check=in_range(0.0, 1.0)),
    *SUPERVISION_PARAMS,
]
PROFILE_DIRS = ("bench/profiles", "profiles")  # source-tree and share/mtl_split subfolders
MESSAGES = RclpyMessages()


class EdgeNode(Node):
    def __init__(self):
        super().__init__("mtl_split_edge")
        self.cfg = declare_all(self, PARAMS, apply=self._apply)
        self.executor_kind = self.cfg["executor"]  # for run_node
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
        self.camera_rate = RateMeter()  # frames arriving: caps the fps the controller plans for
        self.local_rate = RateMeter()   # frames whose outputs the edge published itself
        # Serialises a run-time split/codec change with the worker's per-frame choice, so a
        # frame planned before the change cannot configure the runner back.
        self._config_lock = threading.Lock()

        self.pub = self.create_publisher(SplitFeatures, "mtl_split/features",
                                         qos_from_name(self.cfg["output_qos"]))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Depth 1 + the newest-frame slot: never a backlog. With reliable QoS a large image is
        # still delivered whole (best effort loses fragments of big samples under load).
        in_qos = qos_from_name(self.cfg["input_qos"])
        image_type, self.image_topic = ((CompressedImage, "image/compressed")
                                        if self.cfg["input_transport"] == "compressed"
                                        else (Image, "image"))
        self.create_subscription(image_type, self.image_topic, self._on_image, in_qos,
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
        self._start_link_adaptation()
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
            + ("" if self.signer is None else f", signing with key {self.signer.key_id}")
            + f", adaptive {adaptive_mode(self.cfg['adaptive'])}, fallback after "
            f"{self.cfg['fallback_after']:g} s")

    def _start_link_adaptation(self) -> None:
        """Link feedback, the controller (unless ``adaptive: off``) and the local fallback: a
        ServerRunner on the edge's own model publishing the server's outputs on the same topics
        (created now, so subscribers are matched before a fallback)."""
        cfg, card = self.cfg, self.runner.card
        controller = None
        mode = adaptive_mode(cfg["adaptive"])
        if mode != "off":
            robot, server = (read_profile(cfg[name], name)
                             for name in ("robot_profile", "server_profile"))
            try:
                controller = Controller(
                    robot, server, served_splits(card, self.runner.split_names),
                    self.runner.split, self.runner.codec, mode=mode,
                    latency_budget_ms=cfg["latency_budget_ms"],
                    accuracy=read_accuracy(cfg["accuracy_file"]),
                    max_accuracy_drop=cfg["max_accuracy_drop"])
            except ConfigError as err:
                raise ParameterError(f"{err} (adaptive: {mode})") from None
        self.adapt = LinkAdaptation(self.runner.split, self.runner.codec, controller,
                                    cfg["fallback_after"], cfg["probe_period"])
        self.local = ServerRunner(self.runner.model, card, device=cfg["device"],
                                  precision=cfg["precision"])  # shares the model's weights
        self.style = outputs.OutputStyle.from_card(card)
        self.local_pubs = {
            suffix: self.create_publisher(MESSAGES.message_class(msgtype),
                                          outputs.output_prefix("mtl_split/features") + suffix,
                                          qos_from_name("reliable", depth=5))
            for suffix, msgtype in outputs.output_types(self.style).items()}
        self.create_subscription(
            LinkFeedback, "mtl_split/link_feedback",
            lambda m: handle_isolated(self._on_feedback, m, self.rejections),
            qos_from_name("reliable", depth=10))

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

    def _on_image(self, msg) -> None:
        self.camera_rate.tick()
        self.slot.put(msg)

    def _on_feedback(self, msg: LinkFeedback) -> None:
        # Unknown stamps (another robot's, forged), duplicates and bad fields are counted
        # inside (feedback_<verdict> on /diagnostics) and change nothing.
        self.adapt.feedback(stamp_ns(msg), msg.status, msg.server_ms, time.monotonic())

    def _apply(self, changes: dict) -> None:
        """Run-time parameter changes (validated by params.py; see PARAMS)."""
        with self._config_lock:
            before = (self.runner.split, self.runner.codec)
            try:  # absent: unchanged; '' = the model's default, as at start-up
                self.runner.configure(split=changes.get("split"), codec=changes.get("codec"),
                                      zstd_level=changes.get("zstd_level"))
                if "split" in changes or "codec" in changes:
                    self.adapt.configure(self.runner.split, self.runner.codec, time.monotonic())
            except ConfigError as err:  # e.g. an option the controller has no profile for
                self.runner.configure(split=before[0], codec=before[1])
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
        converted = time.perf_counter()
        with self._config_lock:
            plan = self.adapt.frame(time.monotonic(), self.camera_rate.fps())
            for event in plan.events:  # each decision / transition once
                self.get_logger().info(f"link: {event}")
            if (plan.split, plan.codec) != (self.runner.split, self.runner.codec):
                self.runner.configure(split=plan.split, codec=plan.codec)
        began = time.perf_counter()
        packet = self.runner(rgb)
        # Measured, not taken from the profile: the controller rates the options with it.
        self.adapt.edge_time((converted - start) * 1e3, (time.perf_counter() - began) * 1e3)
        if plan.send:  # REMOTE: the server's outputs; a probe: the server answers only
            self._send_features(packet, msg.header, start, probe=plan.probe)
        if plan.local:  # LOCAL (probe or not): the robot serves this frame itself
            self._serve_locally(packet, msg.header)

    def _send_features(self, packet: FeaturePacket, header, start: float, probe: bool) -> None:
        out = packet_to_msg(packet, header, self.camera_info, probe=probe)
        out.edge_ms = (time.perf_counter() - start) * 1e3  # include image conversion
        if self.signer is not None:  # last: the tag covers every other field
            sign(out, self.signer)
        if not self.gate.run(self._send, out, packet.nbytes):
            return
        self.latency.add(out.edge_ms)
        self.bytes_per_frame.add(packet.nbytes)
        self.rate.tick()

    def _send(self, out: SplitFeatures, nbytes: int) -> None:
        # Recorded first: the answer must never find its frame unknown.
        self.adapt.sent(stamp_ns(out), nbytes, time.monotonic())
        self.pub.publish(out)

    def _serve_locally(self, packet: FeaturePacket, header) -> None:
        """The server's part on the robot, published as the server would (outputs.assemble);
        only outputs someone subscribes to are computed: the robot is the slow side."""
        wanted = {suffix for suffix, pub in self.local_pubs.items()
                  if pub.get_subscription_count() > 0}
        info = self.camera_info or CameraInfo()
        result = self.local(packet, focal_px=focal_y(info.k))
        messages = outputs.assemble(result, packet.source_size, header, info, self.style,
                                    wanted, MESSAGES)
        if self.gate.run(self._publish_local, messages):
            self.local_rate.tick()

    def _publish_local(self, messages: dict) -> None:
        for suffix, message in messages.items():
            self.local_pubs[suffix].publish(message)

    def _publish_diagnostics(self) -> None:
        values = {
            "fps": self.rate.fps(), "edge_ms_p50": self.latency.p50,
            "edge_ms_p95": self.latency.p95, "bytes_per_frame_p50": self.bytes_per_frame.p50,
            "frames": self.latency.count, "drops": self.slot.dropped,
            "drops_recent": self.slot.recent_drops(),
            "lost_in_dds": self.health.lost(self.image_topic),
            **self.rejections.values(), **self.worker.values(),
            "split": self.runner.split, "codec": self.runner.codec,
            **self.adapt.values(time.monotonic()), "local_fps": self.local_rate.fps(),
        }
        # WARN while running locally: the outputs are the robot's own (link_mode: local).
        warn = "; ".join(p for p in (self.adapt.problem(), self.rejections.problem()) if p)
        self.diag_pub.publish(diagnostic_array(self, [diagnostic_status(
            f"{self.get_name()}: edge", self.get_fully_qualified_name(), values,
            warn=warn or None, error=self.worker.problem())]))

    def close(self) -> None:
        """Stop the worker (before the node and context go): nothing is published after."""
        self.slot.close()
        self.worker.stop(timeout=10)
        self.gate.close()


def adaptive_mode(value: str | bool) -> str:
    """The ``adaptive`` parameter as one of ADAPTIVE_MODES (YAML false is 'off')."""
    return "off" if value is False else str(value)


def find_data_file(name_or_path: str, param: str) -> Path:
    """A path, or the name of a packaged file (bench/profiles)."""
    dirs = data_dirs(*PROFILE_DIRS)
    path = Path(name_or_path).expanduser()
    found = path if path.is_file() else next(
        (d / name_or_path for d in dirs if (d / name_or_path).is_file()), None)
    if found is None:
        raise ParameterError(f"parameter '{param}' = {name_or_path!r}: no such file (as a "
                             f"path, or by name in: {', '.join(str(d) for d in dirs)})")
    return found


def read_profile(name_or_path: str, param: str) -> dict:
    """A profile from a path or the name of a packaged one (bench/profiles)."""
    try:
        return load_profile(find_data_file(name_or_path, param))
    except InputError as err:
        raise ParameterError(f"parameter '{param}': {err}") from None


def read_accuracy(name_or_path: str) -> dict[str, float] | None:
    """'split codec' -> accuracy drop from parameter ``accuracy_file`` (None when '')."""
    if not name_or_path:
        return None
    try:
        return load_accuracy_drops(find_data_file(name_or_path, "accuracy_file"))
    except InputError as err:
        raise ParameterError(f"parameter 'accuracy_file' = {name_or_path!r}: {err}") from None


def served_splits(card: dict, split_names: list[str]) -> list[str]:
    """The splits the model was trained to serve: the card's ``trained.splits`` (a model
    trained over several splits), else its one trained split, else its default split. The
    controller never picks a split outside this list."""
    trained = card.get("trained") or {}
    splits = trained.get("splits") or [trained.get("split") or card["default_split"]]
    return [s for s in split_names if s in splits] or [card["default_split"]]


def main(args=None) -> int:
    return run_node(EdgeNode, args)
