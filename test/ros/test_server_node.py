"""The server node as a process over real DDS: run-time parameters, worker isolation, QoS
warning, clean shutdown."""

import copy
import signal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import (
    assert_clean_exit,
    get_param,
    node_args,
    set_params,
    signal_and_wait,
    wait_for,
)

pytestmark = pytest.mark.ros
REL = qos_from_name("reliable", depth=10)
SERVER = "/mtl_split_server"


@pytest.fixture(scope="module")
def features(model_dir):
    """Valid features of the tiny model (an untrained net: scores near 0.5)."""
    runner = EdgeRunner.from_path(model_dir, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    return packet_to_msg(runner(rgb))


@pytest.fixture(scope="module")
def ros(ros_node):
    return ros_node


class Detections:
    def __init__(self, node):
        self.got = {}
        self.diag = {}
        node.create_subscription(Detection2DArray, "mtl_split/detections",
                                 lambda m: self.got.setdefault(m.header.stamp.sec, m), REL)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for s in msg.status:
            self.diag[s.name] = {kv.key: kv.value for kv in s.values}

    def value(self, key):
        return max((int(v[key]) for v in self.diag.values() if key in v), default=None)


def _send_until(ros, pub, msg, dets, sec, procs, tries=20):
    msg.header.stamp.sec = sec
    for _ in range(tries):
        pub.publish(msg)
        if wait_for(ros, lambda: sec in dets.got, 3, procs):
            return dets.got[sec]
    raise AssertionError(f"no detections for stamp {sec}")


def _server(model_dir, **params):
    return python_process(node_args("mtl_split_server", model=model_dir, device="cpu",
                                    score_threshold=0.0, max_detections=5, **params))


def test_run_time_parameters(ros, model_dir, features):
    dets = Detections(ros)
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
    with _server(model_dir) as server:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (server,))
        assert len(_send_until(ros, pub, features, dets, 1, (server,)).detections) == 5

        (result,) = set_params(ros, SERVER, {"max_detections": 2})
        assert result.successful, result.reason
        assert len(_send_until(ros, pub, features, dets, 2, (server,)).detections) == 2

        (result,) = set_params(ros, SERVER, {"score_threshold": 0.99})
        assert result.successful, result.reason
        assert len(_send_until(ros, pub, features, dets, 3, (server,)).detections) == 0

        # An integer for a float parameter is accepted (as `ros2 param set ... 0` sends).
        (result,) = set_params(ros, SERVER, {"score_threshold": 0})
        assert result.successful, result.reason
        assert len(_send_until(ros, pub, features, dets, 4, (server,)).detections) == 2

        for name, bad, reason in [("score_threshold", 1.5, "out of range"),
                                  ("score_threshold", 2, "must be in [0.0, 1.0]"),
                                  ("max_detections", 0, "out of range. Min: 1, Max: 1000"),
                                  ("score_threshold", "high", "expected a number"),
                                  ("point_stride", 1000, "out of range")]:
            (result,) = set_params(ros, SERVER, {name: bad})
            assert not result.successful and reason in result.reason, (name, result.reason)
        assert get_param(ros, SERVER, "max_detections") == 2
        assert len(_send_until(ros, pub, features, dets, 5, (server,)).detections) == 2

        for name, value in [("tasks", ["depth"]), ("model", "other"), ("publish_points", False),
                            ("input_qos", "best_effort")]:
            (result,) = set_params(ros, SERVER, {name: value})
            assert not result.successful and "read-only" in result.reason, (name, result)


def test_one_hostile_message_costs_only_itself(ros, model_dir, features):
    """Offsets that put the image outside the network input (issue 17; they used to kill the
    worker): rejected as `transform` with the message's stamp in the log line, and the next valid
    message still gives detections."""
    dets = Detections(ros)
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
    with _server(model_dir, diagnostics_period=0.3) as server:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (server,))
        _send_until(ros, pub, features, dets, 10, (server,))
        hostile = copy.deepcopy(features)
        hostile.transform = [1.0, 1.0, 1000.0, 1000.0]
        for i in range(3):
            hostile.header.stamp.sec = 20 + i
            pub.publish(hostile)  # counted before the next good one replaces it in the slot
            assert wait_for(ros, lambda i=i: (dets.value("rejected_transform") or 0) >= i + 1, 10,
                            (server,)), dets.diag
            assert len(_send_until(ros, pub, features, dets, 30 + i, (server,)).detections) == 5
        log = stop(server)
    assert "dropped input (transform" in log and "stamp 20.000000000" in log, log
    assert "outside the" in log and "network input" in log, log


def test_undecodable_messages_never_displace_a_valid_one(ros, model_dir, features):
    """Issue 17's soak: a garbage payload or an unknown codec used to pass the checks before the
    newest-frame slot and push the valid frame waiting there out. Now the server checks and
    decodes a frame when its worker takes it, and an unchecked message keeps the frame it
    replaced as the slot's fallback (scheduler.Pending): a valid message followed at once by a
    burst of such messages is answered with no resend, and no valid frame is dropped (the
    burst's middle messages are: ``drops`` counts them). (Each burst stays shorter than the DDS
    histories, 10 on the server's reader, and is counted before the next: more at once could
    drop messages in DDS, before the server sees them, which is not what this test is
    about.)"""
    dets = Detections(ros)
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features",
                               qos_from_name("reliable", depth=100))
    with _server(model_dir, diagnostics_period=0.3) as server:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (server,))
        _send_until(ros, pub, features, dets, 40, (server,))
        garbage, unknown = copy.deepcopy(features), copy.deepcopy(features)
        garbage.data = bytes(len(features.data))
        unknown.codec = "q9-magic/1"
        for i in range(5):
            features.header.stamp.sec = 50 + i
            pub.publish(features)
            for hostile in (garbage, unknown) * 3:
                hostile.header.stamp.sec = 60 + i
                pub.publish(hostile)
            assert wait_for(ros, lambda i=i: 50 + i in dets.got, 20, (server,)), (i, dets.diag)
            # The whole burst is accounted for (rejected, or dropped unchecked) before the next
            # one: two bursts at once could overflow the reader's history on a loaded machine
            # (CI lost 2 of 30 that way).
            assert wait_for(ros, lambda n=6 * (i + 1): sum(dets.value(k) or 0 for k in (
                "rejected_payload", "rejected_codec", "drops")) >= n, 10, (server,)), \
                (i, dets.diag)
        # Every valid frame was served (above); both reasons were found at take time.
        assert dets.value("rejected_payload") and dets.value("rejected_codec"), dets.diag
        stop(server)


def test_incompatible_qos_is_named_once(ros, model_dir):
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features",
                               QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    with _server(model_dir) as server:
        assert wait_for(ros, lambda: ros.count_subscribers("mtl_split/features") > 0, 90,
                        (server,))
        wait_for(ros, lambda: False, 2, (server,))
        log = stop(server)
    ros.destroy_publisher(pub)
    lines = [line for line in log.splitlines()
             if "incompatible QoS on '/mtl_split/features'" in line]
    assert len(lines) == 1, log
    assert "offers reliability BEST_EFFORT" in lines[0] and "requests reliability RELIABLE" \
        in lines[0]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly(ros, model_dir, features, sig):
    dets = Detections(ros)
    pub = ros.create_publisher(SplitFeatures, "mtl_split/features", REL)
    with _server(model_dir) as server:
        assert wait_for(ros, lambda: pub.get_subscription_count() > 0, 90, (server,))
        _send_until(ros, pub, features, dets, 100 + sig, (server,))
        for i in range(5):  # the worker is busy while the signal arrives
            features.header.stamp.sec = 200 + i
            pub.publish(features)
        code, log = signal_and_wait(server, sig)
    assert_clean_exit(code, log, sig)
