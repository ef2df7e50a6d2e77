"""A mass failover of slow robots into one real pool server (its process, real DDS): 8 robots
at 5 fps arriving in the same instant, as when their server dies, are all taken when their
edges announce their rate (SplitFeatures.send_fps); announcing none, each counts as
``pool_new_robot_fps`` (30) until measured and only one fits. The robots are the test's own
publishers on the server's pool input topics (the edge node's side of this is
test_pool_failover.py); who is taken is read from the server's announcements."""

from __future__ import annotations

import time

import numpy as np
import pytest
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import ServerAnnouncement, SplitFeatures
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.pool_announcement import default_input_topic
from mtl_split_ros import pool_msg
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import node_args, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SERVER = "pool_rate"
RATE_HZ = 5.0
# Room for a new robot: load + its demand <= 0.9 x 60 = 54 frames/s. Eight robots at 5 fps
# (40) fit; at the default 30 fps each until measured, one does (30 + 30 > 54).
CAPACITY_FPS = 60.0
# A robot refused stays refused for refuse_s (5 s); a robot taken is measured after 2 s. The
# verdicts are read before either can change them.
VERDICT_S = 1.5


def test_eight_slow_robots_arriving_at_once_are_all_taken_when_they_announce_their_rate(
        ros_node, model_dir):
    runner = EdgeRunner.from_path(model_dir, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    packet = runner(rgb)
    anns: list[tuple[float, object]] = []
    ros_node.create_subscription(ServerAnnouncement, "/mtl_split/pool",
                                 lambda m: anns.append((time.monotonic(), m)), pool_msg.POOL_QOS)
    args = node_args("mtl_split_server", model=model_dir, device="cpu", server_id=SERVER,
                     capacity_fps=CAPACITY_FPS, pool_drop_tolerance=0.5,
                     pool_new_robot_fps=30.0, max_detections=5)
    topic = default_input_topic(SERVER)
    with python_process(args) as server:
        results = {}
        for group, send_fps in (("a", RATE_HZ), ("b", 0.0)):
            robots = [f"{group}{i}" for i in range(1, 9)]
            msg = packet_to_msg(packet, send_fps=send_fps)
            pubs = {r: ros_node.create_publisher(SplitFeatures, topic.format(robot=r),
                                                 qos_from_name("reliable")) for r in robots}
            got = {r: 0 for r in robots}
            subs = [ros_node.create_subscription(
                Detection2DArray, f"/{r}/mtl_split/detections",
                lambda m, r=r: got.__setitem__(r, got[r] + 1), qos_from_name("reliable"))
                for r in robots]
            # The server found every robot's input (it discovers topics every 0.2 s): from
            # here on all eight send together, as robots that lost their server at once.
            assert wait_for(ros_node, lambda: all(p.get_subscription_count() for p in
                                                  pubs.values()), 60, (server,)), stop(server)
            start = next_t = time.monotonic()
            frame = 0
            while time.monotonic() - start < VERDICT_S:
                if time.monotonic() >= next_t:
                    frame += 1
                    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + frame, 0
                    for pub in pubs.values():
                        pub.publish(msg)
                    next_t += 1.0 / RATE_HZ
                wait_for(ros_node, lambda: False, 0.01, (server,))
            last = next(m for t, m in reversed(anns) if t > start + 0.5)
            results[group] = {"taken": sorted(set(last.robots) & set(robots)),
                              "refused": sorted(set(last.refused) & set(robots)),
                              "load": last.load_fps, "outputs": dict(got)}
            for p in pubs.values():
                ros_node.destroy_publisher(p)
            for s in subs:
                ros_node.destroy_subscription(s)
            # Their places free once they are silent for idle_s (2 s).
            assert wait_for(ros_node, lambda: anns and not set(anns[-1][1].robots)
                            & set(robots), 30, (server,)), stop(server)
        log = stop(server)
    print(results)
    a, b = results["a"], results["b"]
    assert len(a["taken"]) == 8 and not a["refused"], (a, log[-2000:])
    assert a["load"] <= 0.9 * CAPACITY_FPS, a
    assert all(n > 0 for n in a["outputs"].values()), a
    assert len(b["taken"]) == 1 and len(b["refused"]) == 7, (b, log[-2000:])
    assert "Traceback" not in log, log[-3000:]
