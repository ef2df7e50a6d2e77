"""launch/edge.launch.py for real: a camera driver's stream in, split features out."""

import json
import os
import statistics
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtl_split.msg import SplitFeatures
from mtl_split_ros.outputs import DEFAULT_OUTPUT_TYPES
from support.procs import python_process, stop
from support.ros2cli import (
    node_info,
    node_names,
    param_describe,
    param_get,
    ros2_launch,
    topic_endpoints,
    topic_names,
    wait_until,
)

pytestmark = pytest.mark.ros
EDGE = "/mtl_split_edge"
FRAMES, RATE_HZ, WARMUP = 100, 10.0, 5
# The services every rclpy node with parameter services has.
PARAMETER_SERVICES = ("describe_parameters", "get_parameter_types", "get_parameters",
                      "list_parameters", "set_parameters", "set_parameters_atomically")

# A camera driver as most USB/CSI drivers publish: 640x480 bgr8 at 10 Hz, reliable, depth 10.
# First a few warm-up frames (the edge's first inferences include lazy initialisation), then
# FRAMES counted frames (frame_id "camera") on a fixed 10 Hz schedule.
CAMERA = f"""
import time, numpy as np, rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from mtl_split_ros.image_msg import fill_image
rclpy.init()
node = rclpy.create_node("test_camera_driver")
qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
pub = node.create_publisher(Image, "image", qos)
end = time.monotonic() + 60
while pub.get_subscription_count() < 1 and time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.1)
pixels = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
msg = fill_image(Image(), pixels, "bgr8")
def send(frame_id):
    msg.header.frame_id = frame_id
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
for _ in range({WARMUP}):
    send("warmup"); time.sleep(0.5)
start = time.monotonic()
for i in range({FRAMES}):
    time.sleep(max(0.0, start + i / {RATE_HZ} - time.monotonic()))
    send("camera")
print("sent", {FRAMES}, "in", round(time.monotonic() - start, 2), "s", flush=True)
time.sleep(3.0)  # reliable: keep the writer until the last samples are acknowledged
node.destroy_node()
rclpy.shutdown()
"""


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """edge.launch.py with one argument (fallback_after:=0.0); the rest from the shipped
    config/edge.yaml."""
    log = tmp_path_factory.mktemp("edge_launch") / "launch.log"
    # Edge alone: no server will answer, so no local fallback (it would compete for the CPU).
    with ros2_launch("edge.launch.py", "fallback_after:=0.0", log=log) as launch:
        launch.wait_until(lambda: EDGE in node_names(), 120, "the edge node")
        yield launch


def test_edge_starts_with_the_shipped_parameters(edge):
    wait_until(lambda: {"/image", "/camera_info", "/mtl_split/features"} <= topic_names(), 30,
               "the edge's topics")
    assert param_get(EDGE, "input_transport") == "raw"
    assert param_get(EDGE, "diagnostics_period") == "1.0"
    # '' in the yaml (the model's default): the value that runs is what `param get` reports.
    card = json.loads((Path(__file__).parents[2] / "models" / "default" / "card.json").read_text())
    assert param_get(EDGE, "split") == card["default_split"] == "s16"
    assert param_get(EDGE, "codec") == card["codec"]
    # Checked ranges are ROS ranges: bounds in `param describe` (sliders in rqt_reconfigure).
    described = param_describe(EDGE, "zstd_level")
    assert "Min value: 1" in described and "Max value: 22" in described, described
    described = param_describe(EDGE, "fallback_after")
    assert "Min value: 0.0" in described and "Max value: 3600.0" in described, described


def test_ros_tools_see_the_edges_graph(edge):
    """`ros2 node info` and `ros2 topic info -v` under `ros2 launch` show the edge as a plain
    rclpy node: its own endpoints under its own name (issue #24: a boot node that took the
    launch's `__node:=` remap too made them show nothing / _NODE_NAME_UNKNOWN_)."""
    info = edge.wait_until(lambda: (lambda i: i if i.get("Publishers") else None)(
        node_info(EDGE)), 60, "`ros2 node info` listing the edge's publishers")
    assert info["Subscribers"] == {"/image", "/camera_info", "/mtl_split/link_feedback"}, info
    # Every per-frame output (label_info is the server's, published once per robot).
    published = {f"/mtl_split/{suffix}" for suffix in DEFAULT_OUTPUT_TYPES
                 if suffix != "label_info"}
    assert {"/mtl_split/features", "/diagnostics", "/rosout", "/parameter_events",
            *published} <= info["Publishers"], info
    assert {f"{EDGE}/{s}" for s in PARAMETER_SERVICES} <= info["Service Servers"], info
    assert all(name.startswith(EDGE + "/") for name in info["Service Servers"]), info
    assert ("/mtl_split_edge", "PUBLISHER") in topic_endpoints("/mtl_split/features")
    assert not any("UNKNOWN" in node for node, _ in topic_endpoints("/image"))


def test_the_nodes_get_the_shipped_dds_profile(edge):
    """With no Fast DDS set-up in the environment, the launch gives its processes
    config/fastdds.xml (the installed copy)."""
    assert not any(os.environ.get(v) for v in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                               "FASTDDS_BUILTIN_TRANSPORTS"))
    profile = edge.process_environment("edge_node").get("FASTDDS_DEFAULT_PROFILES_FILE", "")
    assert profile.endswith("share/mtl_split/config/fastdds.xml") and os.path.isfile(profile)


def test_a_missing_dds_profile_is_one_clear_line(tmp_path):
    with ros2_launch("edge.launch.py", f"dds_profile:={tmp_path}/none.xml",
                     log=tmp_path / "launch.log") as launch:
        rc = launch.proc.wait(60)
        out = launch.output()
    assert rc != 0 and "none.xml: no such file" in out and "Traceback" not in out, out


def test_reliable_camera_frames_all_become_features(edge, ros_node):
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     history=HistoryPolicy.KEEP_LAST)
    stamps, edge_ms = set(), []

    def on_features(msg):
        if msg.header.frame_id == "camera":
            stamps.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            edge_ms.append(msg.edge_ms)

    # The edge's own counters, to tell frames lost before the edge from frames it had no time for.
    diagnostics = {}

    def on_diagnostics(msg):
        for status in msg.status:
            if status.hardware_id == EDGE:
                diagnostics.update({kv.key: kv.value for kv in status.values})

    sub = ros_node.create_subscription(SplitFeatures, "mtl_split/features", on_features, qos)
    diag_sub = ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    try:
        wait_until(lambda: sub.get_publisher_count() >= 1, 30, "the features publisher")
        with python_process(CAMERA, timeout=10) as camera:
            end = time.monotonic() + 120
            while camera.poll() is None and time.monotonic() < end:
                rclpy.spin_once(ros_node, timeout_sec=0.1)
            sent = stop(camera)
            assert "sent 100" in sent, sent
            grace = time.monotonic() + 5  # the last frames may still be inside the edge
            while len(stamps) < FRAMES and time.monotonic() < grace:
                rclpy.spin_once(ros_node, timeout_sec=0.1)
    finally:
        ros_node.destroy_subscription(sub)
        ros_node.destroy_subscription(diag_sub)
    p95 = statistics.quantiles(edge_ms, n=20)[-1] if len(edge_ms) > 1 else float("nan")
    assert len(stamps) >= 0.95 * FRAMES, \
        f"{len(stamps)}/{FRAMES} frames became features (edge p95 {p95:.0f} ms/frame: it keeps " \
        f"up at 10 Hz below 100 ms; edge diagnostics {diagnostics})"
