"""Restart after a crash (issue 17): in a running edge -> server pipeline, the server is killed
with SIGKILL and started again; detections resume. The bound here is generous (a loaded CI
machine); the start-up time itself is measured by bench/restart_bench.py (docs/BENCHMARKS.md,
"Start-up and restart")."""

import os
import signal
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process
from support.ros_nodes import node_args, wait_for

pytestmark = pytest.mark.ros
REL = qos_from_name("reliable", depth=10)
# As the installed executable starts it (participant first, then the imports).
LAZY_ENTRY = ("from mtl_split_ros.node_main import run_node_lazily; import sys; "
              "sys.exit(run_node_lazily('{module}.node:ServerNode'))")
RESUME_BOUND_S = 15.0  # start command -> first detections, on a loaded shared machine


def _image(sec):
    rgb = np.random.default_rng(sec).integers(0, 256, (96, 128, 3), np.uint8)
    msg = fill_image(Image(), rgb, "rgb8")
    msg.header.stamp.sec = sec
    return msg


def test_server_killed_and_restarted_resumes_detections(ros_node, model_dir):
    ros = ros_node
    arrivals = []  # (monotonic time, stamp sec) of every detections message
    ros.create_subscription(Detection2DArray, "mtl_split/detections",
                            lambda m: arrivals.append((time.monotonic(), m.header.stamp.sec)),
                            REL)
    pub = ros.create_publisher(Image, "image", REL)
    sec = [0]

    def camera():  # 5 Hz frames from the test node's own timer, as a camera driver would
        sec[0] += 1
        pub.publish(_image(sec[0]))

    timer = ros.create_timer(0.2, camera)
    server_args = node_args("mtl_split_server", code=LAZY_ENTRY, model=model_dir, device="cpu")
    try:
        with python_process(node_args("mtl_split_edge", model=model_dir, device="cpu")) as edge:
            with python_process(server_args) as server:
                assert wait_for(ros, lambda: len(arrivals) >= 2, 120, (edge, server))
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(10)
            last_before_kill = max(s for _, s in arrivals)
            arrivals.clear()
            start = time.monotonic()
            with python_process(server_args) as server:
                assert wait_for(ros, lambda: len(arrivals) >= 3, 60, (edge, server)), \
                    "no detections after the restart"
                resumed_s = arrivals[0][0] - start
                assert resumed_s < RESUME_BOUND_S, f"detections resumed after {resumed_s:.1f} s"
                # In order, and from frames sent after the kill.
                stamps = [s for _, s in arrivals]
                assert stamps == sorted(stamps) and stamps[0] > last_before_kill
    finally:
        ros.destroy_timer(timer)
        ros.destroy_publisher(pub)


