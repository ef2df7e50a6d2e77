"""Server node: split features in; detections, segmentation, depth and RViz views out.

For every feature topic (one per robot) it publishes next to it, with the input's header:
``detections`` (Detection2DArray), ``detections/markers`` (MarkerArray), ``segmentation``
(mono8 class ids), ``segmentation/color`` (rgb8), ``depth`` (32FC1 metres, REP 118),
``camera_info`` (intrinsics of the output images), ``points`` (PointCloud2 XYZRGB) and
``annotated`` (rgb8). Outputs nobody subscribes to are not computed. Every features message
it served (outputs published) or dropped (replaced in the newest-frame slot) is answered with
a ``LinkFeedback`` on ``link_feedback`` next to the features: the edge measures its link from
it (docs/ADAPTIVE.md). A probe (``SplitFeatures.probe``: the edge is serving itself and
measures the link) is checked, run and answered like any frame, but gets no outputs. A
watchdog replaces the worker when it stalls or dies (``stall_timeout``;
mtl_split_ros.watchdog); the /diagnostics level reflects the last ``diagnostics_window``
seconds.

Threads (no head-of-line blocking between robots): the subscription callbacks check and decode
each message and keep the newest per robot; the inference worker takes the newest frame of up
to ``max_batch`` robots (waiting ``batch_wait_ms`` for more), runs them as one batch
(``ServerRunner.run_batch``) and hands each result to the publisher thread, which builds and
publishes the messages. Between worker and publisher each robot has a slot of depth one
(newest wins, counted as ``publish_drops``), so a slow publish never stalls inference.

Run-time parameters (``ros2 param set``): score_threshold, max_detections, point_stride,
diagnostics_period, max_batch, batch_wait_ms; the others are read-only.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple, TypeVar

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from std_msgs.msg import Header

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.auth import AuthRejected, Verifier
from mtl_split_core.geometry import focal_y
from mtl_split_core.runtime.backends import OrtOptions
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.model_files import read_model_card_param
from mtl_split_core.runtime.packet import FeaturePacket
from mtl_split_core.runtime.server import (
    DecodedPacket,
    PacketRejected,
    ServerResult,
    ServerRunner,
)
from mtl_split_core.runtime.stats import Counters, RateMeter, RollingStats
from mtl_split_ros import features_auth, outputs
from mtl_split_ros.features_msg import msg_to_packet
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.node_main import run_node
from mtl_split_ros.node_support import (
    RUNTIME_PARAMS,
    SUPERVISION_PARAMS,
    LatestSlot,
    OutputGate,
    Rejections,
    describe_header,
    diagnostic_array,
    diagnostic_status,
    executor_param,
    handle_isolated,
    status_name,
    watchdog_period,
)
from mtl_split_ros.params import Param, ParameterError, declare_all, in_range
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name
from mtl_split_ros.qos_events import SubscriptionHealth
from mtl_split_ros.watchdog import SupervisedWorker

PARAMS = [
    Param("model", "", "Model folder or card; must be the edge's model. '' = packaged default."),
    *RUNTIME_PARAMS,
    executor_param("events"),
    Param("feature_topics", ["mtl_split/features"], "Feature topics, one per robot; outputs "
          "are published next to each (…/features -> …/detections).",
          check=lambda v: None if v and all(t.endswith("features") for t in v)
          else "must be a non-empty list of topics ending in 'features'"),
    Param("tasks", ["detection", "segmentation", "depth"], "Heads to run."),
    Param("score_threshold", 0.3, "Minimum detection score.", check=in_range(0.0, 1.0),
          dynamic=True),
    Param("max_detections", 50, "Maximum detections per image.", check=in_range(1, 1000),
          dynamic=True),
    Param("point_stride", 4, "Publish every Nth pixel (both directions) as a point.",
          check=in_range(1, 64), dynamic=True),
    Param("publish_markers", True, "Publish detections/markers."),
    Param("publish_points", True, "Publish points."),
    Param("publish_annotated", True, "Publish annotated."),
    Param("publish_segmentation_color", True, "Publish segmentation/color."),
    Param("input_qos", "reliable", "QoS of the feature subscriptions (match the edge).",
          QOS_PROFILES),
    Param("output_qos", "reliable", "QoS of the output publishers.", QOS_PROFILES),
    Param("auth_key_file", "", "Key file: accept only feature messages signed with one of its "
          "keys (docs/SECURITY.md); '' = no check (signatures ignored)."),
    # --- batching (issue 15) ---
    Param("max_batch", 8, "Most robots whose newest frames run through the network as one "
          "batch (1 = one frame at a time).", check=in_range(1, 32), dynamic=True),
    Param("batch_wait_ms", 0.0, "Once a frame is there, wait up to this long for other robots' "
          "frames to fill the batch; 0 = take what is there.", check=in_range(0.0, 1000.0),
          dynamic=True),
    Param("cuda_graphs", True, "On CUDA, run each batch as a CUDA graph captured per split "
          "and batch size (1, 2, 4, ... 32; padded to the next)."),
    # --- end batching ---
    Param("auth_max_age_s", 5.0, "Signed messages whose header stamp is further than this from "
          "the server's clock are rejected; 0 = no stamp window (sequence check only).",
          check=in_range(0.0, 3600.0)),
    *SUPERVISION_PARAMS,
]
# Optional outputs and the parameter that switches each on.
OPTIONAL_OUTPUTS = {"detections/markers": "publish_markers", "points": "publish_points",
                    "annotated": "publish_annotated",
                    "segmentation/color": "publish_segmentation_color"}
MESSAGES = RclpyMessages()
T = TypeVar("T")


class Admitted(NamedTuple):
    """A message that passed the admission checks, with its decoded packet (what the slot
    holds; a plain packet while the model is still loading: the worker checks it then)."""

    msg: SplitFeatures
    packet: FeaturePacket | DecodedPacket
    # time.perf_counter() when admission began: the feedback's server time and the
    # receive -> publish delay start there.
    received: float = 0.0

    @property
    def header(self) -> Header:  # for handle_isolated's log line
        return self.msg.header


class Finished(NamedTuple):
    """A frame's result waiting for the publisher thread."""

    item: Admitted
    result: ServerResult
    started: float  # time.perf_counter() when its batch started

    @property
    def header(self) -> Header:
        return self.item.msg.header


# rclpy gives every publisher two QoS event handlers by default (incompatible QoS / type
# warnings), and its executor walks every handler on every wait: with 16 robots the ~200
# handlers of the output publishers held the GIL most of the time and starved the worker
# (py-spy on the H200, docs/BENCHMARKS.md). A subscriber with an incompatible QoS still warns
# on its own side (rclpy, RViz).
NO_PUBLISHER_EVENTS = PublisherEventCallbacks(use_default_callbacks=False)


class Source:
    """One feature topic with its own outputs, newest-frame slot and statistics."""

    def __init__(self, node: Node, topic: str, qos_in, qos_out, enabled: dict,
                 types: dict[str, str]):
        self.topic = topic
        self.slot = LatestSlot(window_s=enabled["diagnostics_window"])
        # Results waiting for the publisher thread: newest wins (a replaced one is a drop).
        self.outbox: LatestSlot[Finished] = LatestSlot(window_s=enabled["diagnostics_window"])
        self.rate = RateMeter()
        self.latency = RollingStats()      # batch start -> published
        self.delay = RollingStats()        # admitted (received) -> published
        self.rejected = Counters()         # this robot's rejected messages, by reason
        self.probes = 0                    # probes answered (no outputs: the robot has its own)
        prefix = outputs.output_prefix(topic)
        # Optional outputs can be switched off; the others always have a publisher.
        disabled = {suffix for suffix, flag in OPTIONAL_OUTPUTS.items() if not enabled[flag]}
        self.pubs = {suffix: node.create_publisher(MESSAGES.message_class(msgtype),
                                                   prefix + suffix, qos_out,
                                                   event_callbacks=NO_PUBLISHER_EVENTS)
                     for suffix, msgtype in types.items()
                     if suffix not in disabled}
        # Per robot: the edge measures its link (and notices the server is gone) from it.
        self.feedback = node.create_publisher(LinkFeedback, prefix + "link_feedback",
                                              qos_from_name("reliable", depth=10),
                                              event_callbacks=NO_PUBLISHER_EVENTS)
        node.create_subscription(SplitFeatures, topic,
                                 lambda msg: handle_isolated(
                                     lambda m: node.admit(self, m), msg, node.rejections),
                                 qos_in, event_callbacks=node.health.callbacks(topic, qos_in))

    def answer(self, item: Admitted, status: int) -> None:
        """Tell the edge what became of ``item``: SERVED (outputs published) or DROPPED."""
        self.feedback.publish(LinkFeedback(
            header=item.msg.header, status=status, nbytes=len(item.msg.data),
            server_ms=(time.perf_counter() - item.received) * 1e3,
            split_index=item.msg.split_index, codec=item.msg.codec))

    def wanted(self) -> set[str]:
        """The outputs to compute: the always-published ones plus optional ones with a
        subscriber."""
        return {suffix for suffix, pub in self.pubs.items()
                if suffix not in OPTIONAL_OUTPUTS or pub.get_subscription_count() > 0}


def take_round_robin(slots: Sequence[LatestSlot[T]], first: int, limit: int, skip: set[int]
                     ) -> tuple[list[tuple[int, T]], int]:
    """Up to ``limit`` pending items, one per slot, looking at slots ``first``, ``first + 1``,
    ... (wrapping) and leaving the indices in ``skip``. Returns [(index, item)] and where the
    next look starts: after the last slot taken (``first`` when none was)."""
    taken: list[tuple[int, T]] = []
    following = first
    for k in range(len(slots)):
        if len(taken) >= limit:
            break
        i = (first + k) % len(slots)
        if i in skip:
            continue
        item = slots[i].take(timeout=0.0)
        if item is not None:
            taken.append((i, item))
            following = (i + 1) % len(slots)
    return taken, following


class ServerNode(Node):
    def __init__(self):
        super().__init__("mtl_split_server")
        self.cfg = declare_all(self, PARAMS, apply=self._apply)
        self.executor_kind = self.cfg["executor"]  # for run_node
        ring = features_auth.load_keys(self.cfg["auth_key_file"], self.get_logger())
        self.verifier = None if ring is None else Verifier(ring, self.cfg["auth_max_age_s"])
        # Topics first, from the card alone; the model loads after: DDS discovery (matching
        # the edges and the subscribers of the outputs) goes on meanwhile, which shortens a
        # restart.
        try:
            card = read_model_card_param(self.cfg["model"])
        except ConfigError as err:
            raise ParameterError(str(err)) from err
        self.style = outputs.OutputStyle.from_card(card, self.cfg["point_stride"])
        window = self.cfg["diagnostics_window"]
        self.rejections = Rejections(self.get_logger(), window_s=window)
        self.health = SubscriptionHealth(self)
        self.gate = OutputGate()       # the publisher thread publishes through it
        self.handover = OutputGate()   # the inference worker hands results over through it
        self._arrived = threading.Event()   # set when a frame enters a slot
        self._finished = threading.Event()  # set when a result enters an outbox
        self._next_source = 0               # where the next batch starts taking (fairness)
        self._batch = threading.local()     # the batch a worker thread is building
        self.batch_sizes = RollingStats()
        self.runner: ServerRunner | None = None  # loaded after the topics exist (below)
        # Inputs: a short reader history, drained at once by the admission checks (feature
        # messages are small), so a flood of bad messages cannot overwrite a valid one before
        # it is checked; only the newest admitted one per source waits for the worker. Outputs:
        # a short history so a busy subscriber (a recorder, RViz) does not lose results.
        qin = qos_from_name(self.cfg["input_qos"], depth=10)
        qout = qos_from_name(self.cfg["output_qos"], depth=5)
        types = outputs.output_types(self.style)
        self.sources = [Source(self, t, qin, qout, self.cfg, types)
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
                cuda_graphs=self.cfg["cuda_graphs"])
        except ConfigError as err:
            raise ParameterError(str(err)) from err
        # On CUDA: the graphs of the model's default split before the first frame.
        self.runner.capture_graphs([self.runner.card["default_split"]])
        self.worker = SupervisedWorker(
            "server-worker", self._work, lambda: max(s.slot.waiting_s() for s in self.sources),
            self.handover, self.get_logger(), self.cfg["stall_timeout"], window)
        self.publisher = SupervisedWorker(
            "server-publisher", self._publish_step,
            lambda: max(s.outbox.waiting_s() for s in self.sources),
            self.gate, self.get_logger(), self.cfg["stall_timeout"], window)
        self.worker.start()
        self.publisher.start()
        self.watchdog_timer = self.create_timer(watchdog_period(self.cfg["stall_timeout"]),
                                                self._check_workers)
        self.get_logger().info(
            f"server ready: model {self.runner.card.get('name')} "
            f"({self.runner.card['fingerprint']}), tasks "
            f"{', '.join(self.runner.tasks)}, device {self.runner.device}, inputs "
            f"{', '.join(s.topic for s in self.sources)}"
            + ("" if ring is None else f", accepting keys {', '.join(ring.keys)}"))

    def _apply(self, changes: dict) -> None:
        """Run-time parameter changes (validated by params.py; see PARAMS). The runner's
        thresholds and ``self.style`` are plain attributes the worker reads once per frame."""
        if "score_threshold" in changes:
            self.runner.score_threshold = float(changes["score_threshold"])
        if "max_detections" in changes:
            self.runner.max_detections = int(changes["max_detections"])
        if "point_stride" in changes:  # the worker takes self.style once per frame
            self.style = dataclasses.replace(self.style,
                                             point_stride=int(changes["point_stride"]))
        if "diagnostics_period" in changes:
            self.destroy_timer(self.diag_timer)
            self.diag_timer = self.create_timer(changes["diagnostics_period"],
                                                self._publish_diagnostics)

    def _check_workers(self) -> None:
        self.worker.check()
        self.publisher.check()

    # ------------------------------------------------------- inference worker (batched)
    def _work(self) -> None:
        """One worker step (SupervisedWorker loops it): the newest frame of up to max_batch
        sources as one batch; the results go to the publisher thread."""
        taken = self._gather()
        if not taken:
            return
        started = time.perf_counter()
        batch: list[tuple[Source, Admitted, DecodedPacket]] = []
        self._batch.items = batch  # per thread: an abandoned worker never fills its successor's
        for source, item in taken:
            handle_isolated(lambda m, s=source: self._process(s, m), item, self.rejections)
        if batch:
            self._run_batch(batch, started)

    def _gather(self) -> list[tuple[Source, Admitted]]:
        """The newest admitted frame of up to max_batch sources; once one is there, wait up to
        batch_wait_ms for more (0: take what is there). Empty after 50 ms without input."""
        limit, wait_s = self.cfg["max_batch"], self.cfg["batch_wait_ms"] / 1e3
        self._arrived.clear()  # before looking: a frame arriving after the look sets it
        taken = self._take(limit, set())
        if not taken:
            self._arrived.wait(0.05)
            return []
        deadline = time.monotonic() + wait_s
        while len(taken) < min(limit, len(self.sources)):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.clear()
            more = self._take(limit - len(taken), {self.sources.index(s) for s, _ in taken})
            if more:
                taken += more
            else:
                self._arrived.wait(left)
        return taken

    def _take(self, limit: int, skip: set[int]) -> list[tuple[Source, Admitted]]:
        """Up to ``limit`` pending frames, one per source, starting after the source taken
        last: with more robots than max_batch every robot gets its turn."""
        taken, self._next_source = take_round_robin([s.slot for s in self.sources],
                                                    self._next_source, limit, skip)
        return [(self.sources[i], item) for i, item in taken]

    def _run_batch(self, batch: list[tuple[Source, Admitted, DecodedPacket]],
                   started: float) -> None:
        # No camera_info (k unset): depth assumes the model's reference camera.
        focals = [focal_y(item.msg.camera_info.k) for _, item, _ in batch]
        try:
            results = self.runner.run_batch([decoded for *_, decoded in batch], focals)
        except Exception:  # noqa: BLE001 - retried one by one below, each isolated and counted
            results = None
        if results is not None:
            self.batch_sizes.add(len(batch))
            for (source, item, _), result in zip(batch, results):
                self._hand_over(source, Finished(item, result, started))
            return
        # A batch failed: run its frames one at a time so only the culprit is lost (and named).
        for (source, item, decoded), focal in zip(batch, focals):
            handle_isolated(lambda m, s=source, d=decoded, f=focal: self._hand_over(
                s, Finished(m, self.runner.run_batch([d], [f])[0], started)), item,
                self.rejections)

    def _hand_over(self, source: Source, done: Finished) -> None:
        replaced: list[Finished | None] = []
        if self.handover.run(lambda d: replaced.append(source.outbox.put(d)), done):
            self._finished.set()  # (not from an abandoned worker)
            if replaced[0] is not None:  # a result never published: its edge hears so
                self.gate.run(source.answer, replaced[0].item, LinkFeedback.DROPPED)

    def admit(self, source: Source, msg: SplitFeatures) -> None:
        """Subscription callback: every check (signature, each field's bounds, the model match)
        and the decoding run here, before the newest-frame slot, so a message that will not
        produce outputs never pushes a valid frame out of it. The network runs in the worker.
        Rejected messages get no feedback: they did not come from a well-behaved edge."""
        received = time.perf_counter()
        if self.verifier is not None:  # before any other use of the message
            try:
                features_auth.verify(msg, self.verifier, source.topic,
                                     self.get_clock().now().nanoseconds)
            except AuthRejected as err:
                source.rejected.inc(err.reason)
                self.rejections(err.reason, f"{source.topic}: {err}")
                return
        try:
            packet: FeaturePacket | DecodedPacket = msg_to_packet(msg)
            if self.runner is not None:  # during start-up the worker checks it instead
                packet = self.runner.admit(packet)
        except PacketRejected as err:
            source.rejected.inc(err.reason)
            self.rejections(err.reason, f"{source.topic} ({describe_header(msg.header)}): {err}")
            return
        replaced = source.slot.put(Admitted(msg, packet, received))
        self._arrived.set()
        if replaced is not None:
            source.answer(replaced, LinkFeedback.DROPPED)

    def _process(self, source: Source, item: Admitted) -> None:
        """Add one taken frame to the batch this worker thread is building (a frame admitted
        while the model was loading is checked and decoded here)."""
        packet = item.packet
        if not isinstance(packet, DecodedPacket):
            try:
                packet = self.runner.admit(packet)
            except PacketRejected as err:
                self.rejections(err.reason,
                                f"{source.topic} ({describe_header(item.msg.header)}): {err}")
                return
        self._batch.items.append((source, item, packet))

    # ------------------------------------------------------------------ publisher thread
    def _publish_step(self) -> None:
        """One publisher step (SupervisedWorker loops it): the newest result of each source."""
        self._finished.clear()  # before looking: a result arriving after the look sets it
        busy = False
        for source in self.sources:
            done = source.outbox.take(timeout=0.0)
            if done is not None:
                busy = True
                handle_isolated(lambda d, s=source: self._deliver(s, d), done, self.rejections)
        if not busy:
            self._finished.wait(0.05)

    def _deliver(self, source: Source, done: Finished) -> None:
        if done.item.msg.probe:  # its outputs are the robot's own: answer only
            if self.gate.run(source.answer, done.item, LinkFeedback.SERVED):
                source.probes += 1
            return
        if not self.gate.run(self._publish, source, done.item.msg, done.result):
            return
        # After the outputs: the feedback's server time covers them.
        self.gate.run(source.answer, done.item, LinkFeedback.SERVED)
        now = time.perf_counter()
        source.latency.add((now - done.started) * 1e3)
        source.delay.add((now - done.item.received) * 1e3)
        source.rate.tick()

    def _publish(self, source: Source, msg: SplitFeatures, result: ServerResult) -> None:
        out = outputs.assemble(result, (msg.source_width, msg.source_height), msg.header,
                               msg.camera_info, self.style, source.wanted(), MESSAGES)
        for suffix, message in out.items():
            source.pubs[suffix].publish(message)

    def _publish_diagnostics(self) -> None:
        statuses = []
        for s in self.sources:
            values = {"fps": s.rate.fps(), "server_ms_p50": s.latency.p50,
                      "server_ms_p95": s.latency.p95,
                      "server_ms_p99": s.latency.percentile(99.0),
                      "receive_to_publish_ms_p50": s.delay.p50,
                      "receive_to_publish_ms_p99": s.delay.percentile(99.0),
                      "frames": s.latency.count,
                      "drops": s.slot.dropped,
                      "drops_recent": s.slot.recent_drops(),
                      "publish_drops": s.outbox.dropped,
                      "rejected": s.rejected.total,
                      "probes": s.probes,
                      "lost_in_dds": self.health.lost(s.topic)}
            statuses.append(diagnostic_status(status_name(self, s.topic),
                                              self.get_fully_qualified_name(), values))
        totals = {**self.rejections.values(), **self.worker.values(),
                  **{f"publisher_{k}": v for k, v in self.publisher.values().items()},
                  "batch_size_mean": self.batch_sizes.mean, "batches": self.batch_sizes.count,
                  "max_batch": self.cfg["max_batch"]}
        statuses.append(diagnostic_status(
            status_name(self, "server"), self.get_fully_qualified_name(), totals,
            warn=self.rejections.problem(),
            error=self.worker.problem() or self.publisher.problem()))
        self.diag_pub.publish(diagnostic_array(self, statuses))

    def close(self) -> None:
        """Stop the worker (before the node and context go): nothing is published after."""
        for s in self.sources:
            s.slot.close()
            s.outbox.close()
        self.worker.stop(timeout=10)
        self.handover.close()
        self.publisher.stop(timeout=10)
        self.gate.close()


def main(args=None) -> int:
    return run_node(ServerNode, args)
