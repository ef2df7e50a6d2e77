"""The ROS side of isolation and diagnostics: a message's stamp in the log line, status levels,
and a real node whose /diagnostics warn on a burst of bad input and clear after the window."""

import time
from types import SimpleNamespace

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import Image

from mtl_split_core.runtime.rejections import Rejections
from mtl_split_ros.diagnostics import diagnostic_status
from mtl_split_ros.isolation import describe_header, handle_isolated
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process
from support.ros_nodes import wait_for


class ListLogger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


def _msg(sec, frame="cam"):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=5),
                                                  frame_id=frame))


def test_handle_isolated_counts_and_logs_with_the_stamp():
    log = ListLogger()
    rejections = Rejections(log, period_s=60.0)
    handled = []

    def handle(msg):
        if msg.header.stamp.sec == 1:
            raise ZeroDivisionError("boom")
        if msg.header.stamp.sec == 4:
            raise KeyError("k")
        handled.append(msg.header.stamp.sec)

    for sec in (1, 2, 1, 3, 4):
        handle_isolated(handle, _msg(sec), rejections)
    assert handled == [2, 3]
    assert rejections.counts == {"internal_ZeroDivisionError": 2, "internal_KeyError": 1}
    # Rate-limited per type: one line for the two ZeroDivisionErrors, one for the KeyError.
    assert log.lines == ["dropped input (internal_ZeroDivisionError, 1 so far): "
                         "ZeroDivisionError: boom (stamp 1.000000005, frame 'cam')",
                         "dropped input (internal_KeyError, 1 so far): KeyError: 'k' "
                         "(stamp 4.000000005, frame 'cam')"]
    values = rejections.values()
    assert values["rejected"] == 3 and values["rejected_internal"] == 3
    assert values["rejected_internal_ZeroDivisionError"] == 2
    assert rejections.problem() == "internal errors: KeyError, ZeroDivisionError"


def test_diagnostic_status_levels():
    assert diagnostic_status("n", "h", {}).level == DiagnosticStatus.OK
    warn = diagnostic_status("n", "h", {"a": 1.5}, warn="rejecting input: x")
    assert (warn.level, warn.message) == (DiagnosticStatus.WARN, "rejecting input: x")
    assert [(kv.key, kv.value) for kv in warn.values] == [("a", "1.500")]
    err = diagnostic_status("n", "h", {}, warn="w", error="worker stalled, restarted")
    assert (err.level, err.message) == (DiagnosticStatus.ERROR, "worker stalled, restarted")


def test_describe_header_cuts_a_long_frame_id():
    text = describe_header(_msg(7, "x" * 10_000).header)
    assert len(text) < 120 and text.startswith("stamp 7.000000005")


@pytest.mark.ros
def test_a_burst_of_bad_input_warns_then_clears_in_a_real_node(ros_node, tmp_path):
    """WARN while bad input arrives, OK again once the window has passed with good input only;
    the lifetime count stays."""
    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray

    from mtl_split.msg import SplitFeatures
    from mtl_split_ros.image_msg import fill_image
    from support.ros_nodes import node_args, tiny_model

    rel = qos_from_name("reliable", depth=10)
    statuses, got = [], []
    ros_node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: statuses.extend(
        (s.level, s.message, {kv.key: kv.value for kv in s.values}) for s in m.status
        if s.name.endswith(": edge")), 10)
    ros_node.create_subscription(SplitFeatures, "mtl_split/features", got.append, rel)
    pub = ros_node.create_publisher(Image, "image", rel)
    good = fill_image(Image(), np.zeros((96, 128, 3), np.uint8), "rgb8")
    bad = Image(width=128, height=96, encoding="no-such-encoding", step=384,
                data=bytes(96 * 384))
    args = node_args("mtl_split_edge", model=tiny_model(tmp_path / "tiny"), device="cpu",
                     diagnostics_period=0.2, diagnostics_window=2.0, fallback_after=0.0)

    def send_until(msg, predicate, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pub.publish(msg)
            if wait_for(ros_node, predicate, 0.2, (edge,)):
                return True
        return False

    with python_process(args) as edge:
        assert wait_for(ros_node, lambda: pub.get_subscription_count() > 0, 90, (edge,))
        assert send_until(good, lambda: bool(got), 60)
        assert send_until(bad, lambda: bool(statuses) and statuses[-1][1]
                          == "rejecting input: image_unknown_encoding", 30), statuses[-3:]
        statuses.clear()
        assert send_until(good, lambda: bool(statuses) and statuses[-1][1] == "ok", 30)
        level, _, values = statuses[-1]
        assert level == b"\x00" and values["rejected_recent"] == "0"
        assert int(values["rejected_image_unknown_encoding"]) >= 1
    ros_node.destroy_publisher(pub)
