"""`mtl-split replay`: bag messages arrive on their topics, relative timing kept at rate 1, 2."""

import re
import signal

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from bag_factory import T, image, write_bag
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import assert_clean_exit, signal_and_wait

pytestmark = pytest.mark.ros
REPLAY = "from mtl_split_tools.cli import main; import sys; sys.exit(main())"


@pytest.fixture(scope="module")
def node(ros_node):
    return ros_node


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_replay_keeps_relative_timing(node, tmp_path, rate):
    msgs = [T["std_msgs/msg/String"](data=f"m{i}") for i in range(8)]
    bag = write_bag(tmp_path / "b", {"/chatter": ("std_msgs/msg/String", msgs)},
                    period_ns=200_000_000)
    got = []
    sub = node.create_subscription(String, "/chatter", lambda m: got.append(
        (m.data, node.get_clock().now().nanoseconds)), qos_from_name("reliable", depth=10))
    args = ["-c", REPLAY, "replay", str(bag), "--rate", str(rate), "--wait-subscribers", "1"]
    with python_process(args) as proc:
        for _ in range(200):
            rclpy.spin_once(node, timeout_sec=0.1)
            if len(got) == 8:
                break
        out = stop(proc)
    node.destroy_subscription(sub)
    assert [d for d, _ in got] == [f"m{i}" for i in range(8)], out
    gaps = np.diff([t for _, t in got]) / 1e9
    assert abs(np.median(gaps) - 0.2 / rate) < 0.04, gaps


def test_replay_images_with_remap(node, tmp_path):
    bag = write_bag(tmp_path / "b", {"/cam/image": ("sensor_msgs/msg/Image",
                                                    [image(i) for i in range(3)])}, "sqlite3")
    got = []
    node.create_subscription(Image, "/robot1/image", got.append,
                             qos_from_name("reliable", depth=10))
    args = ["-c", REPLAY, "replay", str(bag), "--rate", "5", "--remap",
            "/cam/image:=/robot1/image", "--wait-subscribers", "1"]
    with python_process(args) as proc:
        for _ in range(200):
            rclpy.spin_once(node, timeout_sec=0.1)
            if len(got) == 3:
                break
        stop(proc)
    assert [m.header.stamp.sec for m in got] == [100, 101, 102]
    assert got[0].encoding == "rgb8" and got[0].width == 80


def test_replay_of_a_missing_bag_fails_clearly(tmp_path):
    with python_process(["-c", REPLAY, "replay", str(tmp_path / "none")]) as proc:
        code = proc.wait(timeout=60)
        out = stop(proc)
    assert code == 1 and "no such bag" in out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_replay_stops_cleanly_on_signal(node, tmp_path, sig):
    """Stopped mid-bag: exit 0, the count so far reported, no traceback."""
    msgs = [T["std_msgs/msg/String"](data=f"s{i}") for i in range(100)]
    bag = write_bag(tmp_path / "b", {"/long": ("std_msgs/msg/String", msgs)},
                    period_ns=100_000_000)
    got = []
    sub = node.create_subscription(String, "/long", got.append,
                                   qos_from_name("reliable", depth=10))
    args = ["-c", REPLAY, "replay", str(bag), "--wait-subscribers", "1"]
    with python_process(args) as proc:
        for _ in range(200):  # replaying: messages arrive
            rclpy.spin_once(node, timeout_sec=0.1)
            if len(got) >= 3:
                break
        assert len(got) >= 3
        code, out = signal_and_wait(proc, sig)
    node.destroy_subscription(sub)
    assert_clean_exit(code, out, sig)
    replayed = int(re.search(r"replayed (\d+) messages", out).group(1))
    assert 3 <= replayed < 100
