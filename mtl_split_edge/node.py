"""Edge node: camera image in, compressed split features out (runs on the robot).

Subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` and ``camera_info``; publishes
``mtl_split/features`` (mtl_split/SplitFeatures) with the image's header and camera_info, and
``/diagnostics``. A worker thread runs the network; while it is busy only the newest frame is
kept (older ones are counted as drops), so latency never builds up behind a queue. Frames the
middleware reports lost before they reach the node are counted apart (``lost_in_dds``), and so
are frames the camera sent that never arrived, from the gaps in their header stamps
(``camera_missed``; mtl_split_core.runtime.camera_gaps). A
watchdog replaces the worker when it stalls or dies (``stall_timeout``; mtl_split_ros.watchdog);
the /diagnostics level reflects the last ``diagnostics_window`` seconds.

Link adaptation (docs/ADAPTIVE.md): the server answers every features message on
``mtl_split/link_feedback``; from it the edge measures its link, picks split and codec
(``adaptive``: codec / split_codec) and, until a server has answered and whenever the server
stops answering for ``fallback_after`` seconds (or 3x the answers' recent p99 delay, when
longer), runs the rest of the network itself and publishes the server's outputs on the same
topics (``link_mode: local`` on /diagnostics), probing the server until it answers again. One
set of outputs per frame: a frame sent as features gets the server's outputs, the others the
robot's own. A probe is a features message marked ``probe``: the server answers it and
publishes nothing, and the robot serves that frame itself, so probing costs no outputs.

In a pool (``pool: true``, docs/POOL.md) the edge names no server: it reads the servers'
announcements on ``pool_topic``, sends each frame's features to the server its ``PoolView``
chooses (``/<robot>/mtl_split/to/<server>/features``, the robot being the node's namespace)
and keeps a matched publisher to the next choice (the standby). A server silent for
``pool_silence_s``, or leaving a frame unanswered for ``pool_answer_timeout_s``, or refusing
this robot, is left for the standby at once (the link state is re-bound to it); the robot
runs locally, without probes, only while no server has room.

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
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.auth import KeyFileError, Signer, Verifier
from mtl_split_core.codec import CODECS, ZSTD_LEVELS, EncodedTensor, model_codecs
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.locations import data_dirs
from mtl_split_core.plan.planner import card_accuracy_drops, load_accuracy_drops
from mtl_split_core.plan.profile import load_profile, served_splits
from mtl_split_core.runtime.adaptive import ADAPTIVE_MODES, Controller, LinkAdaptation
from mtl_split_core.runtime.backends import OrtOptions
from mtl_split_core.runtime.camera_gaps import CameraGaps
from mtl_split_core.runtime.edge import EdgeRunner, known_codec
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.latest_slot import LatestSlot
from mtl_split_core.runtime.output_gate import OutputGate
from mtl_split_core.runtime.packet import FeaturePacket
from mtl_split_core.runtime.pool_announcement import POOL_TOPIC, Announcement, robot_name
from mtl_split_core.runtime.pool_view import PoolView
from mtl_split_core.runtime.rejections import Rejections, run_isolated
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.runtime.stats import RateMeter, RollingStats
from mtl_split_core.temporal_codec import KeyframeRequests
from mtl_split_ros import outputs, pool_msg
from mtl_split_ros.camera_info import CameraInfoFitter
from mtl_split_ros.diagnostics import diagnostic_array, diagnostic_status, status_name
from mtl_split_ros.features_auth import load_keys, sign, stamp_ns
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_cdr import read_image
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb
from mtl_split_ros.isolation import describe_header, handle_isolated
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.node_main import run_node
from mtl_split_ros.node_params import RUNTIME_PARAMS, SUPERVISION_PARAMS, executor_param
from mtl_split_ros.params import Param, ParameterError, declare_all, in_range
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.qos_events import SubscriptionHealth
from mtl_split_ros.watchdog import SupervisedWorker, watchdog_period

PARAMS = [
    Param("model", "", "Model folder or card; '' = the packaged default model."),
    Param("split", "", "Split point name (s4, s8, s16, s32) or index (0, 1, ...), or input "
          "(upload the model-input image, no network on the robot); '' = the model's default.",
          dynamic=True, types=(str, int)),
    *RUNTIME_PARAMS,
    executor_param("events"),
    Param("codec", "", f"Feature codec ({', '.join(CODECS)}; eb-<k>/1: a model with entropy "
          f"tables; t<N>-s<T>-<codec>/1: temporal, a keyframe every N frames), or at split "
          f"input an image codec like webp-q80/1; '' = the model's default.", dynamic=True,
          check=lambda v: None if v == "" or known_codec(v) else
          f"not accepted; expected '', one of {', '.join(CODECS)}, a temporal codec like "
          f"t30-s20-q4-zstd/1 or an image codec like webp-q80/1"),
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
          "before the edge runs the whole network itself (at least 3x the recent p99 of the "
          "answers' delay); until a server has answered the edge serves locally too. 0 = "
          "never (and no local outputs at start).",
          check=in_range(0.0, 3600.0)),
    Param("probe_period", 0.5, "While running locally: seconds between probe frames sent to "
          "the server (its answer brings split computing back).", check=in_range(0.01, 3600.0)),
    Param("robot_profile", "cpu2_robot.json", "Profile of this robot (`mtl-split profile` "
          "JSON): a path, or the name of a packaged profile (bench/profiles). Read when "
          "adaptive is on."),
    Param("server_profile", "h100_server.json", "Profile of the server, as robot_profile."),
    Param("accuracy_file", "", "Accuracy of the model's options (`mtl-split eval --out` "
          "JSON, one run or several in one list, or a model card), as robot_profile: the "
          "controller prefers the more accurate of options with as many fps; '' = the model "
          "card's metrics (`mtl-split eval --into-card`), or without them more codec bits "
          "count as more accurate. Read when adaptive is on."),
    Param("max_accuracy_drop", 1.0, "Never choose an option that loses more than this "
          "fraction of the model's best accuracy (worst of mAP@0.5, mIoU, delta<1.25 in "
          "accuracy_file); 1 = no floor.", check=in_range(0.0, 1.0)),
    # The pool (docs/POOL.md).
    Param("pool", False, "Choose a server from the pool's announcements (the node's namespace "
          "names the robot); false = publish on mtl_split/features for a server that lists "
          "it."),
    Param("pool_topic", POOL_TOPIC, "Topic the pool's announcements arrive on."),
    Param("pool_silence_s", 0.6, "A server whose announcements stop this long is gone.",
          check=in_range(0.05, 60.0)),
    Param("pool_answer_timeout_s", 0.5, "A frame unanswered this long: leave that server for "
          "another (at most fallback_after, so the pool moves before the fallback).",
          check=in_range(0.05, 60.0)),
    *SUPERVISION_PARAMS,
]
NO_EVENTS = PublisherEventCallbacks(use_default_callbacks=False)
PUBLISHER_GRACE_S = 10.0  # a pool publisher no longer current or standby is kept this long
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
        self.camera_info = None  # the newest, as received; fitted to each image by self.camera
        self.camera = CameraInfoFitter(MESSAGES, self.get_logger().warning, self.rejections)
        self.slot = LatestSlot(window_s=window)
        self.gate = OutputGate()
        self.health = SubscriptionHealth(self)
        self.camera_rate = RateMeter()  # frames arriving: caps the fps the controller plans for
        self.camera_gaps = CameraGaps()  # frames the camera sent that never arrived (stamps)
        self.local_rate = RateMeter()   # frames whose outputs the edge published itself
        # Serialises a run-time split/codec change with the worker's per-frame choice, so a
        # frame planned before the change cannot configure the runner back.
        self._config_lock = threading.Lock()
        self.keyframes = KeyframeRequests()  # which NEED_KEYFRAME answers ask for a new one

        self.features_qos = qos_from_name(self.cfg["output_qos"])  # depth 1: no burst
        # In a pool: one publisher per server input topic in use (current and standby).
        self.pool_pubs: dict = {}
        self.pub = None if self.cfg["pool"] else self.create_publisher(
            SplitFeatures, "mtl_split/features", self.features_qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Depth 1 + the newest-frame slot: never a backlog. With reliable QoS a large image is
        # still delivered whole (best effort loses fragments of big samples under load).
        in_qos = qos_from_name(self.cfg["input_qos"])
        image_type, self.image_topic = ((CompressedImage, "image/compressed")
                                        if self.cfg["input_transport"] == "compressed"
                                        else (Image, "image"))
        # Raw images arrive as their serialized bytes (image_cdr.read_image): rclpy's
        # deserialization copied a 640x480 frame twice into a new message on the frame's
        # critical path (docs/BENCHMARKS.md, "One robot latency, CPU").
        self.create_subscription(image_type, self.image_topic, self._on_image, in_qos,
                                 event_callbacks=self.health.callbacks(self.image_topic, in_qos),
                                 raw=image_type is Image)
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
        # '' = the model's default: `ros2 param get` shows the one that runs (s16, q4-zstd/1).
        self.cfg.show_effective({"split": self.runner.split, "codec": self.runner.codec})
        self._start_link_adaptation()
        self.view = self._join_pool()
        if self.runner.device.type == "cuda":
            # One frame through the network now (CUDA's lazy start-up, cuDNN's choices), so
            # the first camera frame is not the slow one; it still captures the CUDA graph of
            # its own size (EdgeRunner keeps one per split, codec and camera size). Not on CPU:
            # there the first frame costs little more than any other, and a warm-up frame only
            # delays the first output of a restart.
            width, height = self.runner.input_size
            self.runner(np.zeros((height, width, 3), np.uint8), streamed=False)

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
                    codecs=model_codecs(tables_of(self.runner.model.config.entropy)),
                    accuracy=read_accuracy(cfg["accuracy_file"], card),
                    max_accuracy_drop=cfg["max_accuracy_drop"],
                    log=self.get_logger().info)
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
            for suffix, msgtype in outputs.output_types(self.style).items()
            if suffix not in outputs.latched(self.style)}  # (the server's, once per robot)
        self.create_subscription(
            LinkFeedback, "mtl_split/link_feedback",
            lambda m: handle_isolated(self._on_feedback, m, self.rejections),
            qos_from_name("reliable", depth=10))

    def _join_pool(self) -> PoolView | None:
        """The pool's view and its announcements (None without ``pool``)."""
        cfg = self.cfg
        if not cfg["pool"]:
            return None
        if 0 < cfg["fallback_after"] < cfg["pool_answer_timeout_s"]:
            raise ParameterError(f"parameter 'pool_answer_timeout_s' = "
                                 f"{cfg['pool_answer_timeout_s']:g} must be at most "
                                 f"fallback_after ({cfg['fallback_after']:g}): the pool moves "
                                 "to another server before the robot falls back to local")
        try:
            robot = robot_name(self.get_namespace())
        except ValueError as err:
            raise ParameterError(f"parameter 'pool': {err}") from None
        view = PoolView(robot, self.runner.card["fingerprint"],
                        silence_s=cfg["pool_silence_s"],
                        answer_timeout_s=cfg["pool_answer_timeout_s"])
        verifier = None if self.ring is None else Verifier(self.ring)
        pool_msg.subscribe(self, cfg["pool_topic"], verifier, self._on_announcement)
        self.pool_server: str | None = None  # where the last frame's choice pointed
        self.pool_unwanted: dict[str, float] = {}  # publisher topic -> unwanted since
        return view

    def _on_announcement(self, ann: Announcement | None, verdict: str, msg) -> None:
        if ann is not None:
            assert self.view is not None
            self.view.announce(ann, time.monotonic())
        else:  # forged, unsigned or out of bounds: counted, and never a candidate
            self.rejections(f"pool_{verdict}", f"announcement of {str(msg.server_id)[:64]!r} "
                            f"({describe_header(msg.header)}) rejected: {verdict}")

    def _choose_server(self, now: float) -> tuple[str | None, str | None]:
        """The pool's choice for this frame (under _config_lock): its input topic, and why no
        server can take the frame now (None: one can). A server's publisher must be matched:
        a frame published before the match would be lost and count against the server."""
        assert self.view is not None
        fps = self.camera_rate.fps()
        self.view.set_stream(None, None, fps if fps > 0 else None)
        choice = self.view.choose(now)
        for event in choice.events:
            self.get_logger().info(f"pool: {event}")
        wanted = {t for t in (choice.input_topic, choice.standby_topic) if t is not None}
        for topic in wanted - self.pool_pubs.keys():
            # Created in the worker thread: no event handlers, so the executor's wait set
            # gains nothing behind its back (the server's subscription warns of a QoS clash).
            self.pool_pubs[topic] = self.create_publisher(
                SplitFeatures, topic, self.features_qos, event_callbacks=NO_EVENTS)
        for topic in wanted:
            self.pool_unwanted.pop(topic, None)
        # A publisher no longer wanted is kept PUBLISHER_GRACE_S (a server briefly out of the
        # ranking comes back matched); KEEP_LAST 1 volatile: it holds no backlog meanwhile.
        for topic in self.pool_pubs.keys() - wanted:
            if now - self.pool_unwanted.setdefault(topic, now) >= PUBLISHER_GRACE_S:
                del self.pool_unwanted[topic]
                self.destroy_publisher(self.pool_pubs.pop(topic))
        if choice.server != self.pool_server:
            if choice.server is not None and self.pool_server is not None:
                self.adapt.rebind(now)  # the old server's frames and measurements are stale
            # A temporal codec: the new server holds no reference; start it with a keyframe.
            self.runner.request_keyframe()
            self.pool_server = choice.server
        topic = choice.input_topic
        if topic is None:
            return None, "no pool server has room"
        if self.pool_pubs[topic].get_subscription_count() == 0:
            return topic, f"pool server {choice.server} not matched yet"
        return topic, None

    def _signer(self) -> Signer | None:
        self.ring = ring = load_keys(self.cfg["auth_key_file"], self.get_logger())
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
        if isinstance(msg, bytes):  # a raw Image, serialized
            run_isolated(self._read_image, msg, self.rejections,
                         lambda raw: f"{len(raw)} bytes on {self.image_topic}")
            return
        self._take_image(msg)

    def _read_image(self, raw: bytes) -> None:
        try:
            msg = read_image(raw)
        except ImageDecodeError as err:
            self.rejections(err.reason, f"{err} ({len(raw)} bytes on {self.image_topic})")
            return
        self._take_image(msg)

    def _take_image(self, msg) -> None:
        handle_isolated(self._count_camera_gaps, msg, self.rejections)
        self.slot.put(msg)

    def _count_camera_gaps(self, msg) -> None:
        self.camera_gaps.add(msg.header.frame_id, stamp_ns(msg), time.monotonic())

    def _on_feedback(self, msg: LinkFeedback) -> None:
        # Unknown stamps (another robot's, forged), duplicates and bad fields are counted
        # inside (feedback_<verdict> on /diagnostics) and change nothing.
        now = time.monotonic()
        self.adapt.feedback(stamp_ns(msg), msg.status, msg.server_ms, now)
        if msg.status == LinkFeedback.NEED_KEYFRAME and self.keyframes.refused(stamp_ns(msg)):
            self.runner.request_keyframe()
        if self.view is not None:  # whichever server answers: the stamp says which
            self.view.answered(stamp_ns(msg), now)

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
            self.rejections(err.reason, f"{err} ({describe_header(msg.header)})")
            return
        converted = time.perf_counter()
        # The camera_info as it applies to this image (rescaled, rectified camera), or None.
        info = self.camera.for_image(self.camera_info, rgb.shape[1], rgb.shape[0])
        with self._config_lock:
            now = time.monotonic()
            topic, no_server = None, None
            if self.view is not None:
                topic, no_server = self._choose_server(now)
            plan = self.adapt.frame(now, self.camera_rate.fps(), no_server=no_server)
            for event in plan.events:  # each decision / transition once
                self.get_logger().info(f"link: {event}")
            if (plan.split, plan.codec) != (self.runner.split, self.runner.codec):
                self.runner.configure(split=plan.split, codec=plan.codec)
        began = time.perf_counter()
        # A temporal codec: a frame the robot serves itself is self-contained, one not sent
        # leaves the server's stream alone (runtime/edge.py).
        packet = self.runner(rgb, keyframe=plan.local, streamed=plan.send)
        # Measured, not taken from the profile: the controller rates the options with it.
        self.adapt.edge_time((converted - start) * 1e3, (time.perf_counter() - began) * 1e3)
        if plan.send:  # REMOTE: the server's outputs; a probe: the server answers only
            self._send_features(packet, msg.header, info, start, plan.probe, topic)
        if plan.local:  # LOCAL (probe or not): the robot serves this frame itself
            self._serve_locally(packet, msg.header, info)

    def _send_features(self, packet: FeaturePacket, header, info: CameraInfo | None,
                       start: float, probe: bool, topic: str | None) -> None:
        # send_fps: the camera's rate, what this edge sends while served (a pool server counts
        # a new robot's demand with it until it has measured it, docs/POOL.md).
        out = packet_to_msg(packet, header, info, probe=probe, send_fps=self.camera_rate.fps())
        out.edge_ms = (time.perf_counter() - start) * 1e3  # include image conversion
        if self.signer is not None:  # last: the tag covers every other field
            sign(out, self.signer)
        if not self.gate.run(self._send, out, packet.nbytes, packet.tensor, topic):
            return
        self.latency.add(out.edge_ms)
        self.bytes_per_frame.add(packet.nbytes)
        self.rate.tick()

    def _send(self, out: SplitFeatures, nbytes: int, tensor: EncodedTensor, topic: str | None
              ) -> None:
        # Recorded first: the answer must never find its frame unknown.
        now = time.monotonic()
        self.adapt.sent(stamp_ns(out), nbytes, now)
        self.keyframes.sent(stamp_ns(out), tensor)
        if self.view is None:
            self.pub.publish(out)
            return
        self.view.sent(stamp_ns(out), now)
        self.pool_pubs[topic].publish(out)

    def _serve_locally(self, packet: FeaturePacket, header, info: CameraInfo | None) -> None:
        """The server's part on the robot, published as the server would (outputs.assemble);
        only outputs someone subscribes to are computed: the robot is the slow side."""
        wanted = {suffix for suffix, pub in self.local_pubs.items()
                  if pub.get_subscription_count() > 0}
        result = self.local(self.local.admit(packet, None if info is None else info.k))
        messages = outputs.assemble(result, header, self.style, wanted, MESSAGES)
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
            **self.camera_gaps.values(time.monotonic()),
            **self.rejections.values(), **self.worker.values(),
            "split": self.runner.split, "codec": self.runner.codec,
            # split x codec x camera size combinations whose CUDA graph could not be captured
            "cuda_graphs_refused": len(self.runner.graph_refused),
            "keyframes_sent": self.keyframes.keyframes_sent,
            "keyframe_requests": self.keyframes.requests,
            **self.adapt.values(time.monotonic()), "local_fps": self.local_rate.fps(),
            **({} if self.view is None else self.view.values(time.monotonic())),
        }
        # WARN while running locally: the outputs are the robot's own (link_mode: local).
        warn = "; ".join(p for p in (self.adapt.problem(), self.rejections.problem()) if p)
        self.diag_pub.publish(diagnostic_array(self, [diagnostic_status(
            status_name(self, "edge"), self.get_fully_qualified_name(), values,
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


def read_accuracy(name_or_path: str, card: dict) -> dict[str, float] | None:
    """'split codec' -> accuracy drop from parameter ``accuracy_file``; '' = the model
    card's own metrics (`mtl-split eval --into-card`), None when it has none."""
    if not name_or_path:
        return card_accuracy_drops(card)
    try:
        return load_accuracy_drops(find_data_file(name_or_path, "accuracy_file"))
    except InputError as err:
        raise ParameterError(f"parameter 'accuracy_file' = {name_or_path!r}: {err}") from None


def main(args=None) -> int:
    return run_node(EdgeNode, args)
