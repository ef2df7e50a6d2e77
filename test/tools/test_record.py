"""`mtl-split record`: our messages land in an MCAP bag that rosbags decodes."""

import re
import signal
import time

import pytest
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from mtl_split.msg import Detection2D, Detection2DArray
from mtl_split_core.bags import open_bag
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import assert_clean_exit, signal_and_wait

pytestmark = pytest.mark.ros
CLI = "from mtl_split_tools.cli import main; import sys; sys.exit(main())"


def test_record_our_outputs(tmp_path):
    import numpy as np
    rclpy.init()
    node = rclpy.create_node("record_test")
    qos = qos_from_name("reliable", depth=10)
    dets = node.create_publisher(Detection2DArray, "/mtl_split/detections", qos)
    imgs = node.create_publisher(Image, "/mtl_split/depth", qos)
    out = tmp_path / "rec"
    args = ["-c", CLI, "record", str(out), "--topics", "/mtl_split/detections",
            "/mtl_split/depth", "--max-messages", "6"]
    try:
        with python_process(args) as proc:
            for i in range(100):
                if proc.poll() is not None:
                    break
                arr = Detection2DArray()
                arr.header.stamp.sec = i
                arr.detections.append(Detection2D(class_id=2, class_name="r2d2", score=0.5))
                dets.publish(arr)
                imgs.publish(fill_image(Image(), np.full((4, 5), 1.5, np.float32), "32FC1"))
                rclpy.spin_once(node, timeout_sec=0.1)
                time.sleep(0.1)
            proc.wait(timeout=30)
            log = stop(proc)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert "recorded" in log, log
    with open_bag(out) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert conns["/mtl_split/detections"].msgtype == "mtl_split/msg/Detection2DArray"
        assert "Detection2D" in conns["/mtl_split/detections"].msgdef.data
        got = [reader.deserialize(raw, c.msgtype) for c, _, raw in
               reader.messages([conns["/mtl_split/detections"]])]
    assert got and got[0].detections[0].class_name == "r2d2"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_record_stops_cleanly_on_signal(tmp_path, sig):
    """Stopped by a signal: exit 0, the summary line, and a complete bag to read."""
    rclpy.init()
    node = rclpy.create_node("record_signal_test")
    pub = node.create_publisher(String, "/chatter", qos_from_name("reliable", depth=10))
    out = tmp_path / "rec"
    args = ["-c", CLI, "record", str(out), "--topics", "/chatter"]
    try:
        with python_process(args) as proc:
            # Recording: the recorder subscribed and (after a few messages) the bag exists.
            for i in range(300):
                pub.publish(String(data=f"m{i}"))
                rclpy.spin_once(node, timeout_sec=0.05)
                if pub.get_subscription_count() > 0 and i >= 20:
                    break
                assert proc.poll() is None, stop(proc)
            for i in range(10):
                pub.publish(String(data=f"n{i}"))
                rclpy.spin_once(node, timeout_sec=0.05)
            code, log = signal_and_wait(proc, sig)
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert_clean_exit(code, log, sig)
    recorded = int(re.search(r"recorded /chatter: (\d+)", log).group(1))
    assert recorded > 0
    with open_bag(out) as reader:
        conn = next(c for c in reader.connections if c.topic == "/chatter")
        got = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages([conn])]
    assert len(got) == recorded and got[-1].startswith("n")


@pytest.mark.parametrize("argv, reason", [
    (["--topics", "chatter"], "expected an absolute name"),
    (["--topics", "/chatter", "--duration", "0"], "--duration"),
    (["--topics", "/chatter", "--max-messages", "-3"], "--max-messages"),
    (["--topics", "/chatter", "--qos", "fast"], "--qos"),
    (["--topics", "/nobody_publishes_this", "--discovery-timeout", "1"], "no publisher"),
])
def test_bad_arguments_are_one_line_exit_2_and_leave_no_bag(tmp_path, argv, reason):
    import subprocess
    import sys
    out = tmp_path / "new" / "rec"
    r = subprocess.run([sys.executable, "-c", CLI, "record", str(out), *argv],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and reason in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_existing_or_unwritable_output_is_refused_at_once(tmp_path):
    import subprocess
    import sys
    (tmp_path / "file").write_text("x")
    (tmp_path / "taken").mkdir()
    for out, reason in ((tmp_path / "taken", "already exists"),
                        (tmp_path / "file" / "rec", "cannot write there")):
        start = time.monotonic()
        r = subprocess.run([sys.executable, "-c", CLI, "record", str(out), "--topics", "/x"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and reason in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert time.monotonic() - start < 9  # not after the 10 s discovery wait
    assert list((tmp_path / "taken").iterdir()) == []
