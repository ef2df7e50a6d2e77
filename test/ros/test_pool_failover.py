"""A pool of two server processes and four robots (real edge nodes in namespaces, CPU, the
tiny model) over real DDS: every robot is served by a server of the pool; garbage
announcements next to the real servers attract nobody; ``kill -9`` of a server: each of its
robots is served by the other within 1 s without outputs, none falls back to local, no burst of
stale frames; the killed server restarted: it serves robots again within 5 s of announcing.

Times are the test process's arrival times of each robot's detections (what a user of the
outputs sees), over a 10 Hz camera published by the test."""

from __future__ import annotations

import math
import os
import signal
import time
from contextlib import ExitStack

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import ServerAnnouncement
from mtl_split_core.runtime.model_files import read_model_card_param
from mtl_split_core.runtime.pool_announcement import Announcement, default_input_topic
from mtl_split_ros import pool_msg
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import node_args

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROBOTS = ("r1", "r2", "r3", "r4")
SERVERS = ("pool_a", "pool_b")
RATE_HZ = 10.0
# 4 robots at 10 Hz: one server takes all four after a kill (a robot younger than 2 s counts
# with the rate its edge announces, send_fps: 4 x 10 <= 0.9 x 120; even at the default 30 fps
# of one announcing none: 20 + 30 + 30 + 30), and the survivor then carries 2 robots over its
# fair share, so 2 move to the restarted server.
CAPACITY_FPS = 120.0
# The test shares 2 CPU cores with other jobs: a server's worker is sometimes descheduled for
# over a frame period, which the admission would read as saturation (frames dropped unrun)
# and answer by lowering its capacity to what it served, refusing robots; here that is the
# machine, not the server's capacity.
DROP_TOLERANCE = 0.5
MAX_BLIND_S = 1.0
REBALANCE_S = 5.0


def server_args(model_dir: str, server_id: str) -> list[str]:
    return node_args("mtl_split_server", model=model_dir, device="cpu", server_id=server_id,
                     capacity_fps=CAPACITY_FPS, pool_drop_tolerance=DROP_TOLERANCE,
                     diagnostics_period=0.5, max_detections=5)


def edge_args(model_dir: str, robot: str) -> list[str]:
    return [*node_args("mtl_split_edge", model=model_dir, device="cpu", pool=True,
                       diagnostics_period=0.5), "-r", f"__ns:=/{robot}"]


class Robots:
    """The test's side: a 10 Hz camera per robot, its detections, the edges' and servers'
    /diagnostics and the pool's announcements."""

    def __init__(self, node):
        self.node = node
        rel = qos_from_name("reliable")
        self.cams = {r: node.create_publisher(Image, f"/{r}/image", rel) for r in ROBOTS}
        self.got: dict[str, list[tuple[float, int]]] = {r: [] for r in ROBOTS}  # arrival, ns
        for r in ROBOTS:
            node.create_subscription(
                Detection2DArray, f"/{r}/mtl_split/detections",
                lambda m, r=r: self.got[r].append(
                    (time.monotonic(), m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)),
                qos_from_name("reliable", depth=10))
        self.edge: dict[str, dict] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                 qos_profile_sensor_data)
        self.anns: dict[str, tuple[float, object]] = {}  # server id -> (arrival, message)
        node.create_subscription(ServerAnnouncement, "/mtl_split/pool", self._on_ann,
                                 pool_msg.POOL_QOS)
        self.forged = node.create_publisher(ServerAnnouncement, "/mtl_split/pool",
                                            pool_msg.POOL_QOS)
        rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
        self.image = Image(height=96, width=128, encoding="rgb8", step=128 * 3,
                           data=rgb.tobytes())
        self.frame = 0
        self.next_t = time.monotonic()

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.endswith(": edge"):
                self.edge[s.name.split("/")[1]] = {kv.key: kv.value for kv in s.values}

    def _on_ann(self, msg):
        self.anns[msg.server_id] = (time.monotonic(), msg)

    def spin(self, seconds: float, procs=(), until=None) -> bool:
        """Publish every robot's camera at RATE_HZ while spinning for ``seconds`` (or until
        ``until()``)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= self.next_t:
                self.frame += 1
                ns = 10**9 + self.frame * int(1e9 / RATE_HZ)
                self.image.header.stamp.sec, self.image.header.stamp.nanosec = divmod(ns, 10**9)
                for r in ROBOTS:
                    self.image.header.frame_id = f"{r}_camera"
                    self.cams[r].publish(self.image)
                self.next_t = max(self.next_t + 1 / RATE_HZ, now)
            rclpy.spin_once(self.node, timeout_sec=0.005)
            for p in procs:
                assert p.poll() is None, f"process died:\n{stop(p)}"
            if until is not None and until():
                return True
        return until is None

    def server_of(self, robot: str) -> str:
        return self.edge.get(robot, {}).get("pool_server", "")

    def served_by(self, server: str) -> list[str]:
        return [r for r in ROBOTS if self.server_of(r) == server]

    def states(self) -> list[dict]:
        out = [self.pool_state(r) for r in ROBOTS]
        print("edge states:", *out, sep="\n")
        return out

    def pool_state(self, robot: str) -> dict:
        """What an assertion message needs of an edge's /diagnostics."""
        return {k: v for k, v in self.edge.get(robot, {}).items()
                if k.startswith(("pool_", "link_mode", "fallbacks", "last_event"))}

    def count(self, robot: str, key: str) -> int:
        return int(float(self.edge.get(robot, {}).get(key, "0") or 0))


class StableFor:
    """True once ``value()`` has not changed for ``seconds``."""

    def __init__(self, seconds, value):
        self.seconds, self.value = seconds, value
        self.last, self.since = None, time.monotonic()

    def __call__(self):
        now, value = time.monotonic(), self.value()
        if value != self.last:
            self.last, self.since = value, now
        return now - self.since >= self.seconds


def forged_announcements(i: int, fingerprint: str) -> list:
    """Garbage next to the real servers: an absurd capacity, a NaN load, and an id that changes
    every message (valid bounds, huge free capacity: attractive if it were ever confirmed)."""
    stamp = rclpy.clock.Clock().now().to_msg()
    good = Announcement(server_id=f"fake{i}", sequence=i + 1,
                        input_topic=default_input_topic(f"fake{i}"), fingerprints=(fingerprint,),
                        capacity_fps=1e5)
    absurd = pool_msg.announcement_to_msg(good, stamp)
    absurd.server_id, absurd.input_topic = "absurd", default_input_topic("absurd")
    absurd.capacity_fps = 1e12
    nan = pool_msg.announcement_to_msg(good, stamp)
    nan.server_id, nan.input_topic, nan.load_fps = "nanload", default_input_topic("nanload"), \
        math.nan
    return [absurd, nan, pool_msg.announcement_to_msg(good, stamp)]


def test_two_servers_four_robots_kill_one_and_restart_it(ros_node, model_dir):
    ros = ros_node
    robots = Robots(ros)
    with ExitStack() as stack:
        servers = {s: stack.enter_context(python_process(server_args(model_dir, s)))
                   for s in SERVERS}
        edges = {r: stack.enter_context(python_process(edge_args(model_dir, r)))
                 for r in ROBOTS}
        procs = (*servers.values(), *edges.values())

        # Every robot served by a server of the pool, and both servers serve.
        def settled():
            return (all(robots.server_of(r) in SERVERS and robots.got[r] for r in ROBOTS)
                    and all(robots.served_by(s) for s in SERVERS))
        assert robots.spin(90, procs, settled), (robots.edge, {r: len(g) for r, g in
                                                               robots.got.items()})
        # ... and no robot moved for 4 s (rebalancing after the start is over).
        stable = StableFor(4.0, lambda: [robots.server_of(r) for r in ROBOTS])
        assert robots.spin(30, procs, stable), robots.states()

        # Garbage announcements for 2 s: nobody moves to them, each is counted as rejected.
        before = {r: robots.server_of(r) for r in ROBOTS}
        fingerprint = read_model_card_param(model_dir)["fingerprint"]
        for i in range(20):
            for msg in forged_announcements(i, fingerprint):
                robots.forged.publish(msg)
            robots.spin(0.1, procs)
        robots.spin(1.0, procs)  # a diagnostics period after the last one
        assert {r: robots.server_of(r) for r in ROBOTS} == before, robots.states()
        for r in ROBOTS:
            e = robots.edge[r]
            assert robots.count(r, "rejected_pool_capacity") > 0, e
            assert robots.count(r, "rejected_pool_load") > 0, e
            assert robots.count(r, "pool_announce_accepted") > 0, e

        # kill -9 the server with more robots.
        victim = max(SERVERS, key=lambda s: len(robots.served_by(s)))
        survivor = next(s for s in SERVERS if s != victim)
        moved = robots.served_by(victim)
        fallbacks = {r: robots.count(r, "fallbacks") for r in ROBOTS}
        os.kill(servers[victim].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        servers[victim].wait(10)
        alive = tuple(p for p in procs if p is not servers[victim])
        robots.spin(6.0, alive)
        for r in ROBOTS:
            arrivals = [t for t, _ in robots.got[r] if t >= killed_at - 2.0]
            blind = max(np.diff([killed_at - 2.0, *arrivals, time.monotonic()]))
            print(f"{r} ({'moved' if r in moved else 'stayed'}): {blind:.2f} s without outputs")
            assert blind <= MAX_BLIND_S, (r, r in moved, blind, robots.pool_state(r))
            assert robots.server_of(r) == survivor, robots.edge[r]
            assert robots.count(r, "fallbacks") == fallbacks[r], robots.edge[r]
            assert robots.edge[r]["link_mode"] == "remote", robots.edge[r]
        # No burst of stale frames: outputs in stamp order, none twice.
        for r in ROBOTS:
            stamps = [ns for t, ns in robots.got[r] if t >= killed_at - 2.0]
            assert stamps == sorted(set(stamps)), (r, stamps)

        # Restart it (a new process, the same id): it serves robots again within 5 s of its
        # first announcement.
        before_restart = time.monotonic()
        restarted = stack.enter_context(python_process(server_args(model_dir, victim)))
        procs = (*alive, restarted)
        assert robots.spin(90, procs, lambda: robots.anns.get(victim, (0,))[0] > before_restart)
        announced_at = robots.anns[victim][0]
        assert robots.spin(REBALANCE_S + 1, procs, lambda: len(robots.served_by(victim)) > 0
                           and all(robots.server_of(r) in SERVERS for r in ROBOTS)), (
            time.monotonic() - announced_at, robots.states(),
            {s: (m.load_fps, m.capacity_fps, list(m.robots), m.refusal)
             for s, (_, m) in robots.anns.items()})
        rebalanced_s = time.monotonic() - announced_at
        assert rebalanced_s <= REBALANCE_S, (rebalanced_s, robots.states())
        robots.spin(2.0, procs)
        final = {r: robots.count(r, "fallbacks") for r in ROBOTS}
        print(f"moved {moved} from {victim}; restart shared again {rebalanced_s:.1f} s after "
              f"its first announcement: {[robots.server_of(r) for r in ROBOTS]}")
        logs = {name: stop(p) for name, p in (*servers.items(), *edges.items(),
                                               ("restarted", restarted))}
    events = [line for r in ROBOTS for line in logs[r].splitlines() if "pool:" in line
              or "link:" in line]
    assert final == fallbacks, "\n".join(events)
    for name, log in logs.items():
        assert "Traceback" not in log, (name, log[-3000:])
