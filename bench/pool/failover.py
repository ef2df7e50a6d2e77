"""Pool failover benchmark (issue #26 item 5): N pool server processes, R robots at F fps,
``kill -9`` of the busiest server, then its restart; and the frames/s of 1 vs 2 servers.

The servers are the real server node (``server_id`` set: it announces itself, discovers its
robots, admits them). The robots are simulated in this process: each runs the edge node's
pool logic (``PoolView``: choose per frame, current + standby publishers, answers from
LinkFeedback) on one recorded SplitFeatures message re-stamped per frame; they run no network
(R real edge nodes at F fps do not fit this machine's CPU next to the servers), so "local" is
counted, not computed: a frame with no server to go to. Per robot: outputs' (stamp, arrival),
frames sent / local; per server announcement: robots served.

Reported (``--out``/results.json and results.md): per robot of the killed server the longest
time without outputs around the kill (blind time), local frames after the kill, outputs out of
stamp order or twice (a stale burst), and seconds from the restarted server's first
announcement until it serves robots again and the final split; with ``--throughput`` the
delivered frames/s of 1 and of 2 servers under the same offered load.

    python bench/pool/failover.py --robots 16 --rate 30 --out bench/results/pool_failover
    python bench/pool/failover.py --robots 16 --rate 30 --throughput --out ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import LinkFeedback, SplitFeatures
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.pool_announcement import POOL_TOPIC
from mtl_split_core.runtime.pool_view import PoolView
from mtl_split_ros import pool_msg
from mtl_split_ros.features_auth import stamp_ns
from mtl_split_ros.features_msg import packet_to_msg
from mtl_split_ros.qos import qos_from_name

SERVER = "from mtl_split_server.node import main; import sys; sys.exit(main())"


def tiny_model(path: Path) -> str:
    """The CI tests' small untrained model (test/support/ros_nodes.py): CPU-fast."""
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0))
    save_model(path, net.eval())
    return str(path)


class SimRobot:
    """One robot: the edge node's pool choice per frame (mtl_split_edge/node.py)."""

    def __init__(self, node: Node, name: str, fingerprint: str, rate: float,
                 msg: SplitFeatures):
        self.node, self.name, self.msg = node, name, msg
        self.view = PoolView(name, fingerprint, demand_fps=rate)
        self.pubs: dict[str, object] = {}
        self.sent = self.local = 0
        self.local_t: list[float] = []
        self.arrivals: list[tuple[int, float]] = []  # (stamp ns, arrival monotonic)
        self.servers: list[tuple[float, str]] = []   # (when, server) on each change
        node.create_subscription(LinkFeedback, f"/{name}/mtl_split/link_feedback",
                                 lambda m: self.view.answered(stamp_ns(m), time.monotonic()),
                                 qos_from_name("reliable", depth=10))
        node.create_subscription(Detection2DArray, f"/{name}/mtl_split/detections",
                                 lambda m: self.arrivals.append((stamp_ns(m), time.monotonic())),
                                 qos_from_name("reliable", depth=10))

    def frame(self) -> None:
        now = time.monotonic()
        choice = self.view.choose(now)
        wanted = {t for t in (choice.input_topic, choice.standby_topic) if t}
        for topic in wanted - self.pubs.keys():
            self.pubs[topic] = self.node.create_publisher(SplitFeatures, topic,
                                                          qos_from_name("reliable"))
        if not self.servers or self.servers[-1][1] != (choice.server or ""):
            self.servers.append((now, choice.server or ""))
        pub = self.pubs.get(choice.input_topic or "")
        if pub is None or pub.get_subscription_count() == 0:
            self.local += 1
            self.local_t.append(now)
            return
        self.msg.header.stamp = self.node.get_clock().now().to_msg()
        self.view.sent(stamp_ns(self.msg), now)
        pub.publish(self.msg)
        self.sent += 1


class Fleet(Node):
    def __init__(self, robots: int, rate: float, fingerprint: str, msg: SplitFeatures):
        super().__init__("bench_pool_robots")
        self.robots = [SimRobot(self, f"r{i + 1}", fingerprint, rate, msg)
                       for i in range(robots)]
        self.announcements: list[tuple[float, str, list[str]]] = []
        pool_msg.subscribe(self, POOL_TOPIC, None, self._on_announcement)
        self.turn = 0
        self.create_timer(1.0 / (rate * robots), self._tick)

    def _on_announcement(self, ann, verdict, msg) -> None:
        if ann is None:
            return
        now = time.monotonic()
        self.announcements.append((now, ann.server_id, list(ann.robots)))
        for robot in self.robots:
            robot.view.announce(ann, now)

    def _tick(self) -> None:
        self.robots[self.turn].frame()
        self.turn = (self.turn + 1) % len(self.robots)

    def spin_for(self, seconds: float, until=None) -> float:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            rclpy.spin_once(self, timeout_sec=0.01)
            if until is not None and until():
                break
        return time.monotonic() - start

    def all_served(self) -> bool:
        return all(r.arrivals for r in self.robots)

    def served_by(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.robots:
            out.setdefault(r.view.current or "", []).append(r.name)
        return out

    def delivered(self, t0: float, t1: float) -> int:
        return sum(sum(t0 <= t < t1 for _, t in r.arrivals) for r in self.robots)


NEW_ROBOT_FPS = 30.0  # --new-robot-fps: the servers' pool_new_robot_fps


def start_server(server_id: str, model: str, capacity: float, log: Path) -> subprocess.Popen:
    args = ["--ros-args", "-p", f"model:={model}", "-p", "device:=cpu", "-p",
            f"server_id:={server_id}", "-p", f"capacity_fps:={capacity}", "-p",
            "pool_drop_tolerance:=0.5", "-p", f"pool_new_robot_fps:={NEW_ROBOT_FPS}",
            "-r", f"__node:=server_{server_id}"]
    return subprocess.Popen([sys.executable, "-c", SERVER, *args], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def failover(fleet: Fleet, servers: dict, model: str, capacity: float, out: Path) -> dict:
    """Settle, kill -9 the busiest server, measure; restart it, measure the rebalance."""
    ok = fleet.spin_for(90, lambda: fleet.all_served()
                        and all(sid in fleet.served_by() for sid in servers)) < 90
    fleet.spin_for(6.0)  # the start's rebalancing
    by = fleet.served_by()
    victim = max(servers, key=lambda s: len(by.get(s, [])))
    moved = by.get(victim, [])
    t0 = time.monotonic()
    fleet.spin_for(3.0)
    before_fps = fleet.delivered(t0, time.monotonic()) / (time.monotonic() - t0)
    local_before = {r.name: r.local for r in fleet.robots}
    os.kill(servers[victim].pid, signal.SIGKILL)
    killed = time.monotonic()
    servers[victim].wait()
    fleet.spin_for(8.0)
    robots = {}
    for r in fleet.robots:
        arr = [t for _, t in r.arrivals if t >= killed - 2.0]
        gaps = np.diff([killed - 2.0, *arr, time.monotonic()])
        stamps = [s for s, t in r.arrivals if t >= killed - 2.0]
        robots[r.name] = {"moved": r.name in moved, "blind_s": float(gaps.max()),
                          "local_after_kill": r.local - local_before[r.name],
                          "stale_or_twice": sum(b <= a for a, b in zip(stamps, stamps[1:])),
                          "server": r.view.current}
    restart_at = time.monotonic()
    servers[victim] = start_server(victim, model, capacity, out / f"{victim}_restart.log")
    fleet.spin_for(120, lambda: any(t > restart_at and s == victim
                                    for t, s, _ in fleet.announcements[-64:]))
    announced = next((t for t, s, _ in fleet.announcements if t > restart_at and s == victim),
                     None)
    fleet.spin_for(20, lambda: victim in fleet.served_by())
    back = time.monotonic()
    fleet.spin_for(8.0)
    split = {s: len(v) for s, v in fleet.served_by().items()}
    return {"settled": ok, "victim": victim, "moved": moved, "fps_before_kill": before_fps,
            "robots": robots, "restart_serves_again_s":
            None if announced is None or victim not in split else back - announced,
            "split_8s_later": split,
            "local_total_after_kill": sum(v["local_after_kill"] for v in robots.values())}


def throughput(fleet_args: tuple, model: str, capacity: float, out: Path, seconds: float
               ) -> dict:
    """Delivered frames/s of 1 and of 2 servers under the same offered load."""
    result = {}
    for n in (1, 2):
        ids = [f"tp{n}_{i}" for i in range(n)]
        procs = {s: start_server(s, model, capacity, out / f"{s}.log") for s in ids}
        fleet = Fleet(*fleet_args)
        try:
            fleet.spin_for(90, fleet.all_served)
            fleet.spin_for(5.0)
            t0 = time.monotonic()
            fleet.spin_for(seconds)
            result[f"{n}_servers_fps"] = fleet.delivered(t0, time.monotonic()) / (
                time.monotonic() - t0)
        finally:
            fleet.destroy_node()
            for p in procs.values():
                stop_server(p)
    result["ratio"] = result["2_servers_fps"] / max(result["1_servers_fps"], 1e-9)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", type=int, default=16)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--capacity-fps", type=float, default=0.0,
                    help="each server's capacity_fps (0 = it measures its own)")
    ap.add_argument("--new-robot-fps", type=float, default=30.0,
                    help="the servers' pool_new_robot_fps (a robot's rate until measured)")
    ap.add_argument("--throughput", action="store_true", help="also 1 vs 2 servers")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not (1 <= args.robots <= 256 and 0 < args.rate <= 1000 and 2 <= args.servers <= 8):
        print("error: --robots 1..256, --rate (0, 1000], --servers 2..8", file=sys.stderr)
        return 2
    global NEW_ROBOT_FPS
    NEW_ROBOT_FPS = args.new_robot_fps
    args.out.mkdir(parents=True, exist_ok=True)
    model = tiny_model(args.out / "tiny_model")
    runner = EdgeRunner.from_path(model, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    msg = packet_to_msg(runner(rgb))
    fingerprint = runner.card["fingerprint"]
    rclpy.init()
    fleet_args = (args.robots, args.rate, fingerprint, msg)
    ids = [f"pool_{i}" for i in range(args.servers)]
    servers = {s: start_server(s, model, args.capacity_fps, args.out / f"{s}.log")
               for s in ids}
    fleet = Fleet(*fleet_args)
    try:
        result = failover(fleet, servers, model, args.capacity_fps, args.out)
    finally:
        fleet.destroy_node()
        for p in servers.values():
            stop_server(p)
    if args.throughput:
        result["throughput"] = throughput(fleet_args, model, args.capacity_fps, args.out,
                                          args.seconds)
    rclpy.shutdown()
    result.update({
        "command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} CPU cores, {platform.processor()}",
        "model": f"tiny (untrained, mobilenetv3_small 128x96, {fingerprint})",
        "robot_count": args.robots, "rate": args.rate, "capacity_fps": args.capacity_fps,
        "new_robot_fps": args.new_robot_fps})
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    moved = [v for v in result["robots"].values() if v["moved"]]
    blind = max((v["blind_s"] for v in moved), default=float("nan"))
    print(json.dumps({k: v for k, v in result.items() if k != "robots"}, indent=1))
    print(f"moved {len(moved)} robots; worst blind time {blind:.2f} s; local frames after the "
          f"kill {result['local_total_after_kill']}; stale/twice "
          f"{sum(v['stale_or_twice'] for v in result['robots'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
