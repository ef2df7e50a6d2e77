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
    with python_process(args) as server:
        a = arrive_at_once(ros_node, server, anns, "a", packet_to_msg(packet, send_fps=RATE_HZ))
        b = arrive_at_once(ros_node, server, anns, "b", packet_to_msg(packet, send_fps=0.0))
        log = stop(server)
    print({"announcing 5 fps": a, "announcing none": b})
    assert len(a["taken"]) == 8 and not a["refused"], (a, log[-2000:])
    assert a["load"] <= 0.9 * CAPACITY_FPS, a
    assert all(n > 0 for n in a["outputs"].values()), a
    assert len(b["taken"]) == 1 and len(b["refused"]) == 7, (b, log[-2000:])
    assert "Traceback" not in log, log[-3000:]


def arrive_at_once(node, server, anns: list, group: str, msg: SplitFeatures) -> dict:
    """Eight robots ``<group>1..8`` start sending ``msg`` at RATE_HZ in the same instant; after
    VERDICT_S: who the server's announcement lists as taken and refused. Then they stop, and
    their places are free again (silent for idle_s) before this returns."""
    robots = [f"{group}{i}" for i in range(1, 9)]
    topic = default_input_topic(SERVER)
    pubs = {r: node.create_publisher(SplitFeatures, topic.format(robot=r),
                                     qos_from_name("reliable")) for r in robots}
    got = dict.fromkeys(robots, 0)

    def count(robot: str) -> None:
        got[robot] += 1
    subs = [node.create_subscription(Detection2DArray, f"/{r}/mtl_split/detections",
                                     lambda m, r=r: count(r), qos_from_name("reliable"))
            for r in robots]
    # The server found every robot's input (it discovers topics every 0.2 s): from here on all
    # eight send together, as robots that lost their server at once.
    assert wait_for(node, lambda: all(p.get_subscription_count() for p in pubs.values()), 60,
                    (server,)), stop(server)
    start = next_t = time.monotonic()
    frame = 0
    while time.monotonic() - start < VERDICT_S:
        if time.monotonic() >= next_t:
            frame += 1
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + frame, 0
            for pub in pubs.values():
                pub.publish(msg)
            next_t += 1.0 / RATE_HZ
        wait_for(node, lambda: False, 0.01, (server,))
    last = next(m for t, m in reversed(anns) if t > start + 0.5)
    result = {"taken": sorted(set(last.robots) & set(robots)),
              "refused": sorted(set(last.refused) & set(robots)), "load": last.load_fps,
              "outputs": dict(got)}
    for p in pubs.values():
        node.destroy_publisher(p)
    for s in subs:
        node.destroy_subscription(s)
    assert wait_for(node, lambda: anns and not set(anns[-1][1].robots) & set(robots), 30,
                    (server,)), stop(server)
    return result
