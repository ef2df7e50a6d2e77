"""Link feedback, local fallback and run-time switching with edge and server as processes over
real DDS (issue 14, docs/ADAPTIVE.md): kill the server -> the edge publishes the outputs itself
within 1 s; restart it -> split computing resumes with no burst of stale frames; split and
codec changed with a parameter while frames flow -> the server follows each message. While
local, probes cost no outputs: the server answers them and the edge serves them itself."""

import os
import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import node_args, set_params, wait_for

pytestmark = pytest.mark.ros
REL = qos_from_name("reliable", depth=10)
EDGE = "/mtl_split_edge"
CAMERA_PERIOD_S = 0.1   # a 10 Hz camera
LOCAL_WITHIN_S = 1.0    # last server output -> first local output (issue 14)
PROBE_SEC = 40          # stamp of the probe sent to the server alone


@pytest.fixture(scope="module")
def ros(ros_node):
    return ros_node


@pytest.fixture(scope="module")
def two_split_model(tmp_path_factory):
    """The tiny test model with a bottleneck at s8 and at s16: two splits worth switching."""
    path = tmp_path_factory.mktemp("model") / "tiny2"
    net = MultiTaskSplitNet(ModelConfig(name="tiny2", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s8": 8, "s16": 8},
                                        depth_reference_focal=100.0))
    save_model(path, net.eval())
    return str(path)


class Rig:
    """A 10 Hz camera in the test node and everything the test observes: features sent,
    the server's feedback, detections (by arrival) and the edge's /diagnostics."""

    def __init__(self, node):
        self.node = node
        self.sent = {}        # stamp sec -> (monotonic time, split_index, codec)
        self.probes = set()   # stamp secs of the features sent as probes
        self.feedback = {}    # stamp sec -> [(monotonic time, status, split_index, codec)]
        self.detections = []  # (monotonic time, stamp sec, nanosec)
        self.published = set()
        self.edge = {}        # the newest edge diagnostics values
        self.server = {}      # the newest server diagnostics values of mtl_split/features
        self.edge_level = None
        self.subs = [
            node.create_subscription(SplitFeatures, "mtl_split/features", self._on_features,
                                     REL),
            node.create_subscription(LinkFeedback, "mtl_split/link_feedback",
                                     self._on_feedback, REL),
            node.create_subscription(Detection2DArray, "mtl_split/detections",
                                     self._on_detections, REL),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)]
        self.pub = node.create_publisher(Image, "image", REL)
        self.frame = 0
        self.timer = node.create_timer(CAMERA_PERIOD_S, self._camera)

    def _camera(self):
        self.frame += 1
        rgb = np.random.default_rng(self.frame).integers(0, 256, (120, 160, 3), np.uint8)
        msg = fill_image(Image(), rgb, "rgb8")
        msg.header.stamp.sec, msg.header.stamp.nanosec = self.frame, 1000 + self.frame
        self.published.add((self.frame, 1000 + self.frame))
        self.pub.publish(msg)

    def _on_features(self, m):
        self.sent[m.header.stamp.sec] = (time.monotonic(), m.split_index, m.codec)
        if m.probe:
            self.probes.add(m.header.stamp.sec)

    def _on_feedback(self, m):
        self.feedback.setdefault(m.header.stamp.sec, []).append(
            (time.monotonic(), m.status, m.split_index, m.codec))

    def _on_detections(self, m):
        self.detections.append((time.monotonic(), m.header.stamp.sec, m.header.stamp.nanosec))

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.endswith(": edge"):
                self.edge = {kv.key: kv.value for kv in s.values}
                self.edge_level = s.level
            elif s.name.endswith(": mtl_split/features"):
                self.server = {kv.key: kv.value for kv in s.values}

    def served(self, sec):
        """Whether the server served frame ``sec`` with its outputs (a probe: none)."""
        return sec not in self.probes and any(
            status == LinkFeedback.SERVED for _, status, _, _ in self.feedback.get(sec, []))

    def remote_outputs(self):
        """Detections of frames the server answered SERVED (it publishes outputs, then the
        feedback)."""
        return [d for d in self.detections if self.served(d[1])]

    def local_outputs(self, after=-1.0):
        """Detections (arrived after ``after``) of frames never sent as features, or sent as
        probes: the edge's own."""
        return [d for d in self.detections if d[0] > after
                and (d[1] not in self.sent or d[1] in self.probes)]

    def stop_camera(self):
        self.timer.cancel()

    def unanswered(self):
        """Frames sent since the first one the server answered (earlier ones went out before
        it subscribed) that got no answer."""
        first = min(self.feedback, default=0)
        return [sec for sec in self.sent if sec >= first and sec not in self.feedback]

    def close(self):
        self.node.destroy_timer(self.timer)
        self.node.destroy_publisher(self.pub)
        for sub in self.subs:
            self.node.destroy_subscription(sub)


@pytest.fixture
def rig(ros):
    r = Rig(ros)
    yield r
    r.close()


def _forge_feedback(ros, rig, procs):
    """Feedback for frames the edge never sent, with a bad status, with a bad server time:
    each is ignored and counted on /diagnostics (resent until counted: no fixed sleep)."""
    pub = ros.create_publisher(LinkFeedback, "mtl_split/link_feedback", REL)
    forged = [LinkFeedback(status=LinkFeedback.SERVED, server_ms=1.0),
              LinkFeedback(status=7, server_ms=1.0),
              LinkFeedback(status=LinkFeedback.SERVED, server_ms=float("nan"))]
    for i, m in enumerate(forged):
        m.header.stamp.sec = 900_000 + i
    keys = ("feedback_unknown", "feedback_bad_status", "feedback_bad_server_ms")
    try:
        for _ in range(20):
            for m in forged:
                pub.publish(m)
            if wait_for(ros, lambda: all(k in rig.edge for k in keys), 1, procs):
                return
        raise AssertionError(f"forged feedback not counted: {rig.edge}")
    finally:
        ros.destroy_publisher(pub)


def _assert_one_output_per_frame(rig):
    stamps = [(sec, ns) for _, sec, ns in rig.detections]
    assert len(stamps) == len(set(stamps)), "a frame got outputs twice (edge and server?)"
    assert set(stamps) <= rig.published, "outputs carry a stamp no camera frame had"


def test_server_killed_edge_serves_locally_then_split_computing_resumes(ros, rig, model_dir):
    edge_args = node_args("mtl_split_edge", model=model_dir, device="cpu",
                          diagnostics_period=0.2, adaptive="split_codec",
                          latency_budget_ms=60000.0)  # silence, not the budget, decides here
    server_args = node_args("mtl_split_server", model=model_dir, device="cpu",
                            diagnostics_period=0.2)
    with python_process(edge_args) as edge:
        with python_process(server_args) as server:
            assert wait_for(ros, lambda: len(rig.remote_outputs()) >= 3
                            and rig.edge.get("link_mode") == "remote", 50, (edge, server)), \
                rig.edge
            assert rig.edge["adaptive"] == "split_codec"
            # The controller's options are the model's served splits: a split it has no
            # profile for is refused with the reason, a codec of the served split accepted.
            (result,) = set_params(ros, EDGE, {"split": "s8"})
            assert not result.successful and "not among the profiled options" in result.reason
            assert all(r.successful for r in set_params(ros, EDGE, {"codec": "q4-zstd/1"}))
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        last_remote = max(t for t, _, _ in rig.remote_outputs())
        assert wait_for(ros, lambda: rig.local_outputs(last_remote) and rig.edge.get(
            "link_mode") == "local", 10, (edge,)), rig.edge
        assert rig.edge_level == DiagnosticStatus.WARN, rig.edge
        assert "no feedback" in rig.edge["link_mode_reason"], rig.edge
        # Local outputs keep coming, and the features topic carries only probes (<= 2 Hz),
        # each of which has the edge's own outputs: probing costs none.
        local_since = time.monotonic()
        sent_before = set(rig.sent)
        assert wait_for(ros, lambda: len(rig.local_outputs(last_remote)) >= 10, 15, (edge,))
        probes = set(rig.sent) - sent_before
        assert probes and probes <= rig.probes, (probes, rig.probes)
        assert len(probes) <= (time.monotonic() - local_since) / 0.5 + 2, probes
        assert wait_for(ros, lambda: probes <= {sec for _, sec, _ in rig.detections}, 10,
                        (edge,)), (probes, rig.detections[-5:])
        # Measured now that every message of those frames is in (arrival order across
        # topics is not guaranteed).
        first_local = min(t for t, _, _ in rig.local_outputs(last_remote))
        assert first_local - last_remote < LOCAL_WITHIN_S, \
            f"local outputs {first_local - last_remote:.2f} s after the last server output"

        restart = time.monotonic()
        old = set(rig.feedback)
        with python_process(server_args) as server:
            assert wait_for(ros, lambda: rig.edge.get("link_mode") == "remote" and any(
                d[0] > restart for d in rig.remote_outputs()), 40, (edge, server)), rig.edge
            # The restarted server got only frames sent after it started (no stale backlog).
            new = {sec: rig.sent[sec][0] for sec in set(rig.feedback) - old if sec in rig.sent}
            assert new and min(new.values()) > restart, new
            assert int(rig.edge["recoveries"]) >= 1 and int(rig.edge["fallbacks"]) >= 1
            # The restarted server answered the probes that brought split computing back
            # (published no outputs for them: test_server_answers_every_features_message_once).
            assert wait_for(ros, lambda: int(rig.server.get("probes", 0)) >= 1, 10,
                            (edge, server)), rig.server
            log = stop(edge)
    _assert_one_output_per_frame(rig)
    assert "link: fallback: REMOTE -> LOCAL (no feedback for" in log, log[-3000:]
    assert "link: recover: LOCAL -> REMOTE (the server answered a probe)" in log, log[-3000:]


def test_an_edge_started_without_a_server_serves_its_first_frames(ros, rig, model_dir):
    """Before any server has answered the edge serves every frame itself (issue #24: the
    first 0.5 s of frames got no outputs); the first answer starts split computing."""
    edge_args = node_args("mtl_split_edge", model=model_dir, device="cpu",
                          diagnostics_period=0.2)
    with python_process(edge_args) as edge:
        assert wait_for(ros, lambda: rig.sent and len(rig.local_outputs()) >= 5, 60, (edge,))
        # The first frame the edge took went out as a probe and got the edge's own outputs.
        first = min(rig.sent)
        assert first in rig.probes, (first, rig.probes)
        assert wait_for(ros, lambda: first in {sec for _, sec, _ in rig.detections}, 10,
                        (edge,)), (first, rig.detections[:5])
        assert wait_for(ros, lambda: rig.edge.get("link_mode_reason")
                        == "no server has answered yet", 10, (edge,)), rig.edge
        assert rig.edge["link_mode"] == "local" and rig.edge["fallbacks"] == "0", rig.edge
        start = time.monotonic()
        with python_process(node_args("mtl_split_server", model=model_dir, device="cpu")
                            ) as server:
            assert wait_for(ros, lambda: any(d[0] > start for d in rig.remote_outputs())
                            and rig.edge.get("link_mode") == "remote", 60, (edge, server)), \
                rig.edge
            log = stop(edge)
    _assert_one_output_per_frame(rig)
    assert "link: connect: LOCAL -> REMOTE (the server answered a probe)" in log, log[-3000:]


def test_split_and_codec_changed_while_frames_flow(ros, rig, two_split_model):
    edge_args = node_args("mtl_split_edge", model=two_split_model, device="cpu", split="s16",
                          codec="q8-zstd/1", fallback_after=3.0, diagnostics_period=0.2)
    server_args = node_args("mtl_split_server", model=two_split_model, device="cpu")
    with python_process(edge_args) as edge, python_process(server_args) as server:
        procs = (edge, server)
        assert wait_for(ros, lambda: len(rig.remote_outputs()) >= 3, 50, procs), rig.edge
        # (Before the server was up the edge may have served frames itself: that is the
        # fallback at work; from here on every frame goes to the server.)
        remote_since = min(t for t, _, _ in rig.remote_outputs())
        _forge_feedback(ros, rig, procs)
        for values, expected in [({"codec": "f16-zstd/1"}, (2, "f16-zstd/1")),
                                 ({"split": "s8"}, (1, "f16-zstd/1")),
                                 ({"split": "s16", "codec": "q4-zstd/1"}, (2, "q4-zstd/1"))]:
            assert all(r.successful for r in set_params(ros, EDGE, values)), values

            def served_with(exp=expected, after=rig.frame):
                return [sec for sec in rig.sent if sec > after and rig.sent[sec][1:] == exp
                        and rig.served(sec) and any(d[1] == sec for d in rig.detections)]

            assert wait_for(ros, lambda: len(served_with()) >= 5, 20, procs), (values, rig.edge)
        rig.stop_camera()
        # Every features message gets the server's answer (the last ones are on their way).
        wait_for(ros, lambda: not rig.unanswered(), 5, procs)
    assert len(rig.unanswered()) <= 1, f"frames lost around the switches: {rig.unanswered()}"
    # Each answer echoes its message's own split and codec: the server followed each one.
    for sec, answers in rig.feedback.items():
        for _, _, split_index, codec in answers:
            assert (split_index, codec) == rig.sent.get(sec, (0, split_index, codec))[1:], sec
    # Each split/codec appeared on the wire; no frame became local outputs meanwhile.
    assert {v[1:] for v in rig.sent.values()} >= {(2, "q8-zstd/1"), (2, "f16-zstd/1"),
                                                  (1, "f16-zstd/1"), (2, "q4-zstd/1")}
    assert not rig.local_outputs(remote_since)
    assert rig.edge["link_mode"] == "remote" and rig.edge["fallbacks"] in ("0", "1"), rig.edge
    _assert_one_output_per_frame(rig)


def test_server_answers_every_features_message_once(ros, model_dir):
    """A burst into a busy server: each message is answered once, SERVED (its outputs were
    published first) or DROPPED (replaced in the newest-frame slot: no outputs); the newest
    one is served; each answer echoes the message's size, split and codec. A probe is served
    without outputs."""
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    features = packet_to_msg(EdgeRunner.from_path(model_dir, device="cpu")(rgb))
    answers, dets = {}, set()
    subs = [ros.create_subscription(LinkFeedback, "mtl_split/link_feedback",
                                    lambda m: answers.setdefault(m.header.stamp.sec, []).append(m),
                                    REL),
            ros.create_subscription(Detection2DArray, "mtl_split/detections",
                                    lambda m: dets.add(m.header.stamp.sec), REL)]
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
    try:
        with python_process(node_args("mtl_split_server", model=model_dir,
                                      device="cpu")) as server:
            for _ in range(30):  # until matched both ways (a message before that is lost)
                features.header.stamp.sec = 1
                pub.publish(features)
                if wait_for(ros, lambda: 1 in answers, 2, (server,)):
                    break
            burst = range(10, 18)
            for sec in burst:
                features.header.stamp.sec = sec
                pub.publish(features)
            assert wait_for(ros, lambda: all(s in answers for s in burst), 20, (server,)), answers
            features.header.stamp.sec, features.probe = PROBE_SEC, True
            pub.publish(features)
            assert wait_for(ros, lambda: PROBE_SEC in answers, 20, (server,)), answers
            wait_for(ros, lambda: False, 0.5, (server,))  # a second answer would show now
    finally:
        ros.destroy_publisher(pub)
        for sub in subs:
            ros.destroy_subscription(sub)
    status = {}
    for sec in burst:
        (answer,) = answers[sec]
        status[sec] = answer.status
        assert answer.nbytes == len(features.data) and answer.codec == features.codec
        assert answer.split_index == features.split_index and 0 < answer.server_ms < 20_000
        assert (sec in dets) == (answer.status == LinkFeedback.SERVED), (sec, status, dets)
    assert status[burst[-1]] == LinkFeedback.SERVED, status
    assert LinkFeedback.DROPPED in status.values(), status
    # A probe is run and answered, but has no outputs (the robot publishes its own).
    (answer,) = answers[PROBE_SEC]
    assert answer.status == LinkFeedback.SERVED and PROBE_SEC not in dets, (answer, dets)


@pytest.mark.parametrize("params, expected", [
    ({"adaptive": "fast"}, "parameter 'adaptive' = 'fast': expected one of: off, codec, "
     "split_codec"),
    ({"adaptive": "codec", "robot_profile": "nope.json"},
     "parameter 'robot_profile' = 'nope.json': no such file"),
    ({"adaptive": "split_codec", "split": "s8"}, "parameter 'split': s8 q8-zstd/1 is not "
     "among the profiled options of the model: s16 f16-zstd/1"),
    ({"fallback_after": -1.0}, "parameter 'fallback_after' = -1.0: must be in [0.0, 3600.0]"),
    ({"adaptive": "codec", "accuracy_file": "nope.json"},
     "parameter 'accuracy_file' = 'nope.json': no such file"),
    ({"adaptive": "codec", "max_accuracy_drop": 0.05}, "parameter 'max_accuracy_drop': needs "
     "the accuracy of the options"),
    ({"adaptive": "codec", "accuracy_file": "cpu2_robot.json"}, "parameter 'accuracy_file' = "
     "'cpu2_robot.json': not usable `mtl-split eval --out` results"),
])
def test_bad_adaptive_start_values_exit_2_with_one_line(model_dir, params, expected):
    with python_process(node_args("mtl_split_edge", model=model_dir, device="cpu",
                                  codec="q8-zstd/1", **params)) as proc:
        code = proc.wait(timeout=60)
        log = stop(proc)
    assert code == 2 and expected in log and "Traceback" not in log, log
    assert len([line for line in log.splitlines() if "[FATAL]" in line]) == 1, log
