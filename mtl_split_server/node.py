"""Server node: split features in; the tasks' outputs (detections, segmentation, depth, RViz
views) out.

For every feature topic (one per robot) it publishes, next to it and with the input's header,
the outputs the running tasks declare (mtl_split_ros/outputs.py: ``detections``
(vision_msgs/Detection2DArray), ``detections_3d``, ``label_info`` (once, transient local),
``detections/markers``, ``segmentation``, ``segmentation/color``, ``depth`` (32FC1 metres, REP
118), ``points``, plus ``camera_info`` (of the output maps) and ``annotated``). An output is
built only while it has a subscriber; an optional one has a ``publish_<suffix>`` switch. Every
features message it served (outputs published) or dropped (replaced before it ran or was
published) is answered with a ``LinkFeedback`` on ``link_feedback`` next to the features: the
edge measures its link from it (docs/ADAPTIVE.md); a temporal codec's delta refused for its
lost reference is answered NEED_KEYFRAME (each robot's stream keeps its own reference). A
probe (``SplitFeatures.probe``: the edge is serving itself and measures the link) is checked,
run and answered like any frame, but gets no outputs. The /diagnostics level reflects the last
``diagnostics_window`` seconds.

In a pool (``server_id`` set, docs/POOL.md) the server serves no listed topics: it announces
itself on ``pool_topic`` every ``pool_period`` (signed with ``auth_key_file``'s first key when
set), discovers the robots' input topics ``/<robot>/mtl_split/to/<server_id>/features`` at run
time, takes a robot only while it has room (``ServerAdmission``: a refused robot's frames are
not run and its edge reads why in the announcement), publishes each robot's outputs on
``/<robot>/mtl_split/...`` as a fixed server would, and reports an ERROR when another process
announces its id.

This module is wiring: the scheduling (admission, newest-frame slots, batches, hand-over to the
publisher thread) is ``mtl_split_core.runtime.scheduler.BatchScheduler``; each of its two
threads runs under a watchdog (``stall_timeout``; mtl_split_ros.watchdog).

Run-time parameters (``ros2 param set``): score_threshold, max_detections, point_stride,
diagnostics_period, max_batch, batch_wait_ms; the others are read-only.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from mtl_split.msg import LinkFeedback, ServerAnnouncement, SplitFeatures
from mtl_split_core.auth import AuthRejected, Signer, Verifier
from mtl_split_core.runtime.backends import OrtOptions
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.frame_views import ViewRequest
from mtl_split_core.runtime.model_files import read_model_card_param
from mtl_split_core.runtime.packet import FeaturePacket, PacketRejected
from mtl_split_core.runtime.pool_admission import ServerAdmission
from mtl_split_core.runtime.pool_announcement import (
    MAX_FPS,
    MAX_ROBOTS,
    POOL_TOPIC,
    SERVER_ID,
    Announcement,
    announced_fingerprints,
    default_input_topic,
    output_prefix,
    robot_of_topic,
)
from mtl_split_core.runtime.rejections import Rejections, run_isolated
from mtl_split_core.runtime.scheduler import (
    Arrived,
    BatchScheduler,
    Finished,
    Frame,
    Stream,
    Unpacked,
)
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.tasks import task_names
from mtl_split_core.temporal_codec import NEEDS_KEYFRAME, is_temporal
from mtl_split_ros import features_auth, outputs, pool_msg
from mtl_split_ros.diagnostics import diagnostic_array, diagnostic_status, status_name
from mtl_split_ros.features_cdr import Envelope, read_envelope
from mtl_split_ros.features_msg import packet_of_serialized
from mtl_split_ros.feedback_cdr import link_feedback_cdr
from mtl_split_ros.isolation import describe_stamp
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.node_main import SERVER_PUBLICATION_MODE, run_node
from mtl_split_ros.node_params import RUNTIME_PARAMS, SUPERVISION_PARAMS, executor_param
from mtl_split_ros.params import Param, ParameterError, declare_all, in_range
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.qos_events import SubscriptionHealth
from mtl_split_ros.watchdog import SupervisedWorker, watchdog_period

# One switch per optional output the registered tasks declare (generated: outputs.py).
OUTPUT_SWITCHES = [Param(outputs.publish_param(spec.suffix), True,
                         f"Publish {spec.suffix} (built only while subscribed).")
                   for spec in outputs.declared_outputs(task_names()) if spec.optional]
PARAMS = [
    Param("model", "", "Model folder or card; must be the edge's model. '' = packaged default."),
    *RUNTIME_PARAMS,
    executor_param("events"),
    Param("feature_topics", ["mtl_split/features"], "Feature topics, one per robot; outputs "
          "are published next to each (…/features -> …/detections).",
          check=lambda v: None if v and all(t.endswith("features") for t in v)
          else "must be a non-empty list of topics ending in 'features'"),
    Param("tasks", ["detection", "segmentation", "depth"], "Heads to run.",
          check=lambda v: None if v and set(v) <= set(task_names()) else
          f"must be a non-empty list of registered tasks: {', '.join(task_names())}"),
    Param("score_threshold", 0.3, "Minimum detection score.", check=in_range(0.0, 1.0),
          dynamic=True),
    Param("max_detections", 50, "Maximum detections per image.", check=in_range(1, 1000),
          dynamic=True),
    Param("point_stride", 4, "Publish every Nth pixel (both directions) as a point.",
          check=in_range(1, 64), dynamic=True),
    *OUTPUT_SWITCHES,
    Param("input_qos", "reliable", "QoS of the feature subscriptions (match the edge).",
          QOS_PROFILES),
    Param("output_qos", "reliable", "QoS of the output publishers.", QOS_PROFILES),
    Param("auth_key_file", "", "Key file: accept only feature messages signed with one of its "
          "keys (docs/SECURITY.md); '' = no check (signatures ignored)."),
    Param("max_batch", 8, "Most robots whose newest frames run through the network as one "
          "batch (1 = one frame at a time).", check=in_range(1, 32), dynamic=True),
    Param("batch_wait_ms", 0.0, "Once a frame is there, wait up to this long for other robots' "
          "frames to fill the batch; 0 = take what is there.", check=in_range(0.0, 1000.0),
          dynamic=True),
    Param("cuda_graphs", True, "On CUDA, run each batch as a CUDA graph captured per split "
          "and batch size (1, 2, 4, ... 32; padded to the next)."),
    Param("torchscript", False, "On the CPU (backend torch, fp32), run the network as frozen "
          "TorchScript traces (faster than eager, same outputs within 1e-4; traced in the "
          "background, eager until ready; shutdown waits for a trace in progress). Off by "
          "default until a full CI run shows that wait holds."),
    Param("gil_switch_interval_ms", 1.0, "Python's thread switch interval for this process "
          "(sys.setswitchinterval): how long a thread that wants the GIL waits before the "
          "holder must give it up; the receive, inference and publish threads share one GIL.",
          check=in_range(0.1, 100.0)),
    Param("auth_max_age_s", 5.0, "Signed messages whose header stamp is further than this from "
          "the server's clock are rejected; 0 = no stamp window (sequence check only).",
          check=in_range(0.0, 3600.0)),
    # The pool (docs/POOL.md).
    Param("server_id", "", "Id in the server pool (unique: A-Z a-z 0-9 _, a letter first); "
          "'' = no pool: serve feature_topics.",
          check=lambda v: None if v == "" or SERVER_ID.fullmatch(v) else
          "expected '' or 1-64 of A-Z a-z 0-9 _, a letter first"),
    Param("pool_topic", POOL_TOPIC, "Topic the pool's announcements go on."),
    Param("pool_period", 0.25, "Seconds between announcements (edges call a server silent "
          "after their pool_silence_s).", check=in_range(0.02, 10.0)),
    Param("capacity_fps", 0.0, "Frames/s this process serves; 0 = measured (batch timings "
          "taken at max_batch, lowered while frames are dropped unrun).",
          check=in_range(0.0, MAX_FPS)),
    Param("pool_headroom", 0.9, "Take a new robot while the load plus its demand fits this "
          "share of the capacity.", check=in_range(0.05, 1.0)),
    Param("pool_max_robots", 64, "Most robots served at once.", check=in_range(1, MAX_ROBOTS)),
    Param("pool_new_robot_fps", 30.0, "Frames/s a new robot that announces no rate "
          "(SplitFeatures.send_fps 0) is assumed to send until its rate is measured (2 s).",
          check=in_range(0.0, MAX_FPS)),
    Param("pool_max_announced_fps", 120.0, "A new robot's announced rate counts as at most "
          "this many frames/s until measured (a forged huge value cannot hold the room).",
          check=in_range(1.0, MAX_FPS)),
    Param("pool_drop_tolerance", 0.05, "More than this share of arriving frames dropped unrun "
          "= saturated: the capacity is lowered to what was served (held 10 s).",
          check=in_range(0.0, 0.99)),
    *SUPERVISION_PARAMS,
]
POOL_INPUT_TYPE = "mtl_split/msg/SplitFeatures"
DISCOVERY_PERIOD_S = 0.2   # how often a pool server looks for new robots' input topics
ORPHAN_S = 30.0            # an input topic without a publisher this long: its robot is gone
INPUTS_PER_ROBOT = 4       # input topics kept per pool_max_robots (standby publishers too)
# How old a robot's record of its outputs' subscribers may be: counting them is a call into
# the middleware per output, asked twice per frame (what to build with the batch, what to
# publish), ~3% of the GIL at 48 robots on the H100 (bench/results/fleet_gpu_speed/run2). A new
# subscriber gets its output from at most this long after it matched.
WANTED_REFRESH_S = 0.1
MESSAGES = RclpyMessages()
# rclpy gives every publisher two QoS event handlers by default (incompatible QoS / type
# warnings), and its executor walks every handler on every wait: with 16 robots the ~200
# handlers of the output publishers held the GIL most of the time and starved the worker
# (py-spy on the H200, docs/BENCHMARKS.md). A subscriber with an incompatible QoS still warns
# on its own side (rclpy, RViz).
NO_PUBLISHER_EVENTS = PublisherEventCallbacks(use_default_callbacks=False)
# Published once per robot, kept for late subscribers (vision_msgs' convention for LabelInfo).
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def describe(tag: Envelope) -> str:
    """A frame's stamp and camera frame for log lines (its ``tag``: the message's envelope)."""
    return describe_stamp(tag.sec, tag.nanosec, tag.frame_id)


def header_of(tag: Envelope) -> Header:
    """The header of the message ``tag`` is the envelope of (its outputs and answers carry it)."""
    return Header(stamp=Time(sec=tag.sec, nanosec=tag.nanosec), frame_id=tag.frame_id)


class Robot(Stream):
    """One feature topic: the scheduler's stream plus its publishers. ``robot``: its name in
    the pool and ``prefix`` where its outputs go (a pool input topic is not next to them)."""

    def __init__(self, node: ServerNode, topic: str, qos_in: QoSProfile, qos_out: QoSProfile,
                 robot: str = "", prefix: str = ""):
        super().__init__(topic, window_s=node.cfg["diagnostics_window"])
        self.probes = 0  # probes answered (no outputs: the robot has its own)
        self.robot = robot
        self.orphan_since: float | None = None  # no publisher on its topic since then
        prefix = prefix or outputs.output_prefix(topic)
        style, latched = node.style, outputs.latched(node.style)
        self.node = node
        off = {spec.suffix for spec in style.outputs
               if spec.optional and not node.cfg[outputs.publish_param(spec.suffix)]}
        self.pubs = {suffix: node.create_publisher(
            MESSAGES.message_class(msgtype), prefix + suffix,
            LATCHED_QOS if suffix in latched else qos_out, event_callbacks=NO_PUBLISHER_EVENTS)
            for suffix, msgtype in outputs.output_types(style).items() if suffix not in off}
        header = Header(stamp=node.get_clock().now().to_msg())
        for suffix, message in outputs.latched_messages(style, header, MESSAGES).items():
            if suffix in self.pubs:
                self.pubs[suffix].publish(message)
        # Per robot: the edge measures its link (and notices the server is gone) from it.
        self.feedback = node.create_publisher(LinkFeedback, prefix + "link_feedback",
                                              qos_from_name("reliable", depth=10),
                                              event_callbacks=NO_PUBLISHER_EVENTS)
        self._wanted: tuple[float, frozenset[str]] = (-WANTED_REFRESH_S, frozenset())
        self._views: tuple[frozenset[str], Any, ViewRequest] | None = None
        self._heard_at = -WANTED_REFRESH_S  # when the feedback last had a subscriber
        # Serialized: its arrival reads only the envelope (ServerNode.arrive).
        self.subscription = node.create_subscription(
            SplitFeatures, topic, lambda raw: run_isolated(
                lambda r: node.arrive(self, r), raw, node.rejections,
                lambda r: f"{topic}, {len(r)} bytes"), qos_in,
            event_callbacks=node.health.callbacks(topic, qos_in), raw=True)

    def destroy(self, node: Node) -> None:
        """Its subscription and publishers (a pool robot that has gone)."""
        node.destroy_subscription(self.subscription)
        for pub in (*self.pubs.values(), self.feedback):
            node.destroy_publisher(pub)

    def wanted(self) -> frozenset[str]:
        """The outputs somebody subscribes to (counted at most every WANTED_REFRESH_S): only
        those are built."""
        now = time.monotonic()
        counted, wanted = self._wanted
        if now - counted >= WANTED_REFRESH_S:
            wanted = frozenset(suffix for suffix, pub in self.pubs.items()
                               if pub.get_subscription_count())
            self._wanted = (now, wanted)
        return wanted

    def views(self) -> ViewRequest:
        """The colour images and point cloud are made with the batch only while wanted (the
        request made again only when what is wanted or the style changed)."""
        wanted, style, made = self.wanted(), self.node.style, self._views
        if made is None or made[0] != wanted or made[1] is not style:
            made = self._views = (wanted, style, outputs.view_request(style, wanted))
        return made[2]

    def _heard(self) -> bool:
        """Whether the robot's edge listens to its feedback: a publish costs the publisher
        thread as much as an output image (bench/fleet/message_cost.py), for nobody when no
        edge subscribes (a replayed robot, an edge gone). A subscriber counted is trusted for
        WANTED_REFRESH_S; none is counted again every time (a new edge hears the next answer)."""
        now = time.monotonic()
        if now - self._heard_at < WANTED_REFRESH_S:
            return True
        if self.feedback.get_subscription_count():
            self._heard_at = now
            return True
        return False

    def answer(self, frame: Frame | Arrived, status: int) -> None:
        """Tell the edge what became of ``frame``: SERVED (outputs published) or DROPPED
        (also one replaced before it was checked: its envelope says which it was)."""
        self._publish_feedback(frame.tag, status, (time.perf_counter() - frame.received) * 1e3)

    def need_keyframe(self, tag: Envelope) -> None:
        """Tell the edge its temporal codec's delta was refused: send a keyframe."""
        self._publish_feedback(tag, LinkFeedback.NEED_KEYFRAME, 0.0)

    def _publish_feedback(self, tag: Envelope, status: int, server_ms: float) -> None:
        if not self._heard():
            return
        self.feedback.publish(link_feedback_cdr(tag.sec, tag.nanosec, tag.frame_id, status,
                                                server_ms, tag.nbytes, tag.split_index,
                                                tag.codec))


class ServerNode(Node):
    def __init__(self) -> None:
        super().__init__("mtl_split_server")
        self.cfg = declare_all(self, PARAMS, apply=self._apply)
        self.executor_kind = self.cfg["executor"]  # for run_node
        sys.setswitchinterval(self.cfg["gil_switch_interval_ms"] / 1e3)
        ring = features_auth.load_keys(self.cfg["auth_key_file"], self.get_logger())
        self.verifier = None if ring is None else Verifier(ring, self.cfg["auth_max_age_s"])
        window = self.cfg["diagnostics_window"]
        self.rejections = Rejections(self.get_logger(), window_s=window)
        self.health = SubscriptionHealth(self)
        # Topics first, from the card alone; the model loads after: DDS discovery (matching
        # the edges and the subscribers of the outputs) goes on meanwhile, which shortens a
        # restart. (Callbacks run only once this constructor returns: the model is loaded by
        # the time the first message is admitted.)
        try:
            card = read_model_card_param(self.cfg["model"])
            self.style = outputs.OutputStyle.from_card(card, self.cfg["point_stride"],
                                                       tasks=self.cfg["tasks"])
        except (ConfigError, ValueError, KeyError) as err:
            raise ParameterError(str(err)) from err
        # Inputs: a short reader history, drained at once by the admission (feature messages
        # are small), so a flood of bad messages cannot overwrite a valid one before it is
        # checked. Outputs: a short history so a busy subscriber (a recorder, RViz) loses none.
        self.qin = qos_from_name(self.cfg["input_qos"], depth=10)
        self.qout = qos_from_name(self.cfg["output_qos"], depth=5)
        self.server_id = self.cfg["server_id"]
        if self.server_id:  # a pool server: its robots are discovered (_discover)
            self.pool_input = default_input_topic(self.server_id)
            if self.cfg["feature_topics"] != ["mtl_split/features"]:
                self.get_logger().warning("feature_topics is ignored in a pool (server_id "
                                          "set): robots are found on " + self.pool_input)
            self.robots: list[Robot] = []
        else:
            self.robots = [Robot(self, t, self.qin, self.qout)
                           for t in self.cfg["feature_topics"]]
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(self.cfg["diagnostics_period"],
                                            self._publish_diagnostics)
        try:
            self.runner = ServerRunner.from_path(
                self.cfg["model"], device=self.cfg["device"], precision=self.cfg["precision"],
                tasks=tuple(self.cfg["tasks"]), score_threshold=self.cfg["score_threshold"],
                max_detections=self.cfg["max_detections"], backend=self.cfg["backend"],
                onnx=OrtOptions(folder=self.cfg["onnx_dir"],
                                engine_cache=self.cfg["engine_cache"]),
                cuda_graphs=self.cfg["cuda_graphs"], torchscript=self.cfg["torchscript"])
        except ConfigError as err:
            raise ParameterError(str(err)) from err
        # The default split's CUDA graphs (CUDA) or TorchScript traces (CPU) before the first
        # frame.
        self.runner.capture_graphs([self.runner.card["default_split"]])
        self.admission = self._pool_admission(card, ring)
        self.scheduler = BatchScheduler(
            self.runner, self.robots, self.rejections, describe,
            max_batch=self.cfg["max_batch"], batch_wait_ms=self.cfg["batch_wait_ms"],
            on_dropped=self._dropped, on_batch=self._batch_done, on_rejected=self._rejected,
            unpack=packet_of_serialized)
        s = self.scheduler
        self.worker = SupervisedWorker("server-worker", s.work, s.input_waiting_s, s.handover,
                                       self.get_logger(), self.cfg["stall_timeout"], window)
        self.publisher = SupervisedWorker(
            "server-publisher", lambda: s.publish(self._deliver), s.output_waiting_s, s.gate,
            self.get_logger(), self.cfg["stall_timeout"], window)
        self.worker.start()
        self.publisher.start()
        self.watchdog_timer = self.create_timer(watchdog_period(self.cfg["stall_timeout"]),
                                                self._check_workers)
        if self.admission is not None:
            self.create_timer(self.cfg["pool_period"], self._announce)
            self.create_timer(DISCOVERY_PERIOD_S, self._discover)
        inputs = (f"pool {self.server_id} on {self.cfg['pool_topic']}, inputs "
                  f"{self.pool_input}" if self.server_id else
                  f"inputs {', '.join(r.name for r in self.robots)}")
        self.get_logger().info(
            f"server ready: model {card.get('name')} ({card['fingerprint']}), tasks "
            f"{', '.join(self.runner.tasks)}, device {self.runner.device}, {inputs}"
            + ("" if ring is None else f", accepting keys {', '.join(ring.keys)}"))

    # ------------------------------------------------------------------------- the pool
    def _pool_admission(self, card: dict, ring: Any) -> ServerAdmission | None:
        """The pool's admission, signer, announcement publisher and the duplicate-id watch
        (None and nothing else without ``server_id``)."""
        if not self.server_id:
            return None
        cfg = self.cfg
        self.pool_signer = None if ring is None else Signer(ring)
        self.pool_pub = self.create_publisher(ServerAnnouncement, cfg["pool_topic"],
                                              pool_msg.POOL_QOS)
        self.sent_sequences: collections.deque[int] = collections.deque(maxlen=256)
        self.duplicate: tuple[float, str] | None = None  # (when, what) another process said
        self.inputs_ignored = 0
        pool_verifier = None if ring is None else Verifier(ring, cfg["auth_max_age_s"])
        pool_msg.subscribe(self, cfg["pool_topic"], pool_verifier, self._on_pool)
        served = announced_fingerprints(card["fingerprint"], self.runner.accepted_edges)
        return ServerAdmission(self.server_id, self.pool_input, served,
                               capacity_fps=cfg["capacity_fps"], headroom=cfg["pool_headroom"],
                               max_robots=cfg["pool_max_robots"],
                               new_robot_fps=cfg["pool_new_robot_fps"],
                               max_announced_fps=cfg["pool_max_announced_fps"],
                               drop_tolerance=cfg["pool_drop_tolerance"],
                               max_batch=cfg["max_batch"])

    def _announce(self) -> None:
        assert self.admission is not None
        ann = self.admission.announcement(time.monotonic())
        self.sent_sequences.append(ann.sequence)  # before it can come back to _on_pool
        self.pool_pub.publish(pool_msg.announcement_to_msg(
            ann, self.get_clock().now().to_msg(), self.pool_signer))

    def _on_pool(self, ann: Announcement | None, verdict: str, msg: Any) -> None:
        """Another process announcing this server's id (two servers would serve the same
        robots' topics): an ERROR on /diagnostics for a diagnostics window."""
        if ann is None or ann.server_id != self.server_id:
            return
        if ann.input_topic != self.pool_input or ann.sequence not in self.sent_sequences:
            first = self.duplicate is None
            self.duplicate = (time.monotonic(), f"another process announces server id "
                              f"{self.server_id} (sequence {ann.sequence}, input "
                              f"{ann.input_topic}): ids must be unique in the pool")
            if first:
                self.get_logger().error(self.duplicate[1])

    def _discover(self) -> None:
        """New robots' input topics get a stream; topics without a publisher for ORPHAN_S
        lose theirs (bounded: INPUTS_PER_ROBOT x pool_max_robots inputs)."""
        known = {r.name: r for r in self.robots}
        now = time.monotonic()
        for topic, types in self.get_topic_names_and_types():
            if topic in known or POOL_INPUT_TYPE not in types:
                continue
            robot = robot_of_topic(topic, self.pool_input)
            if robot is None:
                continue
            if len(self.robots) >= INPUTS_PER_ROBOT * self.cfg["pool_max_robots"]:
                self.inputs_ignored += 1
                continue
            stream = Robot(self, topic, self.qin, self.qout, robot, output_prefix(robot))
            self.robots = [*self.robots, stream]
            self.scheduler.add_stream(stream)
            self.get_logger().info(f"pool: robot {robot} found ({topic})")
        for stream in list(self.robots):
            if self.count_publishers(stream.name) > 0:
                stream.orphan_since = None
            elif stream.orphan_since is None:
                stream.orphan_since = now
            elif now - stream.orphan_since >= ORPHAN_S:
                self.robots = [r for r in self.robots if r is not stream]
                self.scheduler.remove_stream(stream)
                stream.destroy(self)
                self.get_logger().info(f"pool: robot {stream.robot} gone ({stream.name})")

    def _dropped(self, robot: Stream, frame: Frame | Arrived) -> None:
        assert isinstance(robot, Robot)
        robot.answer(frame, LinkFeedback.DROPPED)
        if self.admission is not None:
            self.admission.dropped(robot.robot, time.monotonic())

    def _rejected(self, robot: Stream, packet: FeaturePacket, tag: Envelope,
                  err: PacketRejected) -> None:
        if err.reason == NEEDS_KEYFRAME:  # the edge's next frame restores the stream
            assert isinstance(robot, Robot)
            robot.need_keyframe(tag)

    def _batch_done(self, frames: int, busy_s: float) -> None:
        if self.admission is not None:
            self.admission.batch_done(frames, busy_s, time.monotonic())

    def _apply(self, changes: dict[str, Any]) -> None:
        """Run-time parameter changes (validated by params.py; see PARAMS): plain attributes
        the worker and publisher read once per batch / frame."""
        if "score_threshold" in changes:
            self.runner.score_threshold = float(changes["score_threshold"])
        if "max_detections" in changes:
            self.runner.max_detections = int(changes["max_detections"])
        if "point_stride" in changes:
            self.style = dataclasses.replace(self.style,
                                             point_stride=int(changes["point_stride"]))
        if "max_batch" in changes:
            self.scheduler.max_batch = int(changes["max_batch"])
            if self.admission is not None:  # its capacity is taken at the full batch
                self.admission.max_batch = int(changes["max_batch"])
        if "batch_wait_ms" in changes:
            self.scheduler.batch_wait_ms = float(changes["batch_wait_ms"])
        if "diagnostics_period" in changes:
            self.destroy_timer(self.diag_timer)
            self.diag_timer = self.create_timer(changes["diagnostics_period"],
                                                self._publish_diagnostics)

    def _check_workers(self) -> None:
        self.worker.check()
        self.publisher.check()

    def arrive(self, robot: Robot, raw: bytes) -> None:
        """Subscription callback, on the serialized message: its envelope (features_cdr) and
        the pool's admission; then into the robot's newest-frame slot as it is, checked and
        decoded by the worker only if it is still the newest when taken (so frames beyond
        the capacity cost little: docs/BENCHMARKS.md, "Overload"). Two kinds of stream are
        checked and decoded now instead: signed ones (a message must be verified before it
        may replace a valid frame) and temporal codecs' (every delta decoded, in order, or
        the next one has no reference)."""
        received = time.perf_counter()
        try:
            tag = read_envelope(raw)
        except PacketRejected as err:
            self.scheduler.reject(robot, err.reason, f"{robot.name} ({len(raw)} bytes): {err}")
            return
        now_checked = self.verifier is not None or is_temporal(tag.codec)
        checked = self._checked(robot, raw, tag) if now_checked else None
        if now_checked and checked is None:
            return
        if self.admission is not None:  # the edge reads why in the announcement
            verdict = self.admission.admit(robot.robot, time.monotonic(), tag.send_fps)
            if not verdict.accepted:
                self.scheduler.reject(robot, "pool_refused",
                                      f"{robot.name} ({describe(tag)}): {verdict.reason}")
                return
        if checked is None:
            self.scheduler.arrive(robot, raw, tag, received)
        else:
            self.scheduler.admit(robot, checked[0], tag, received, checked[1])

    def _checked(self, robot: Robot, raw: bytes, tag: Envelope) -> Unpacked | None:
        """(packet, camera K) of ``raw``, its signature verified first when keys are set, or
        None (rejected and counted)."""
        verifier = self.verifier
        try:
            return packet_of_serialized(raw, None if verifier is None else (
                lambda msg: features_auth.verify(msg, verifier, robot.name,
                                                 self.get_clock().now().nanoseconds)))
        except (AuthRejected, PacketRejected) as err:
            self.scheduler.reject(robot, err.reason, f"{robot.name} ({describe(tag)}): {err}")
            return None

    def _deliver(self, robot: Stream, done: Finished) -> None:
        """Publisher thread: one frame's outputs, then its feedback (which covers them)."""
        assert isinstance(robot, Robot)
        gate = self.scheduler.gate
        if done.frame.tag.probe:  # its outputs are the robot's own: answer only
            if gate.run(robot.answer, done.frame, LinkFeedback.SERVED):
                robot.probes += 1
                self._served(robot, done)
            return
        if gate.run(self._publish, robot, done):
            gate.run(robot.answer, done.frame, LinkFeedback.SERVED)
            robot.delivered(done)
            self._served(robot, done)

    def _served(self, robot: Robot, done: Finished) -> None:
        if self.admission is not None:
            received = done.frame.received
            self.admission.served(robot.robot, (done.started - received) * 1e3,
                                  (time.perf_counter() - received) * 1e3, time.monotonic())

    def _publish(self, robot: Robot, done: Finished) -> None:
        header = header_of(done.frame.tag)
        for suffix, message in outputs.each_output(
                done.result, header, self.style, robot.wanted(), MESSAGES,
                on_error=lambda suffix, err: self.rejections.internal(
                    err, f"output {suffix}, {describe(done.frame.tag)}"),
                serialized=True):
            robot.pubs[suffix].publish(message)  # now: the next output is not waited for

    def _publish_diagnostics(self) -> None:
        statuses = [diagnostic_status(status_name(self, r.name), self.get_fully_qualified_name(),
                                      {**r.values(), "probes": r.probes,
                                       "lost_in_dds": self.health.lost(r.name)})
                    for r in self.robots]
        totals = {**self.rejections.values(), **self.worker.values(),
                  **{f"publisher_{k}": v for k, v in self.publisher.values().items()},
                  **self.scheduler.values()}
        duplicate = None
        if self.admission is not None:
            totals.update(self.admission.values(time.monotonic()))
            totals["pool_inputs"] = len(self.robots)
            totals["pool_inputs_ignored"] = self.inputs_ignored
            if self.duplicate is not None and (time.monotonic() - self.duplicate[0]
                                               < self.cfg["diagnostics_window"]):
                duplicate = self.duplicate[1]
        statuses.append(diagnostic_status(
            status_name(self, "server"), self.get_fully_qualified_name(), totals,
            warn=self.rejections.problem(),
            error=self.worker.problem() or self.publisher.problem() or duplicate))
        self.diag_pub.publish(diagnostic_array(self, statuses))

    def close(self) -> None:
        """Stop the threads (before the node and context go): nothing is published after."""
        self.scheduler.close_inputs()
        self.worker.stop(timeout=10)
        self.scheduler.close_handover()
        self.publisher.stop(timeout=10)
        self.scheduler.close_outputs()
        self.runner.close()


def main(args: list[str] | None = None) -> int:
    return run_node(ServerNode, args, publication_mode=SERVER_PUBLICATION_MODE)
