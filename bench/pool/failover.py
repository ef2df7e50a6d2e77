"""Pool failover benchmark (issue #26 item 5): N pool server processes, R robots at F fps,
``kill -9`` of the busiest server, then its restart; and the frames/s of 1 vs 2 servers.

The servers are the real server node (``server_id`` set: it announces itself, discovers its
robots, admits them), on ``--device`` (cpu, or cuda: every server process on the one GPU) with
``--model`` (``tiny``: the CI tests' small untrained model; ``default``: the packaged one; or a
path). The robots are simulated in robot processes of ``--per-process`` robots each (this
file run with ``--worker``): each robot runs the edge node's pool logic (``PoolView``: choose
per frame, current + standby publishers, answers from LinkFeedback) on one recorded
SplitFeatures message re-stamped per frame, announcing its rate (``send_fps``) as the edge
node does; they run no network (R real edge nodes at F fps do not fit one machine next to the
servers), so "local" is counted, not computed: a frame with no server to go to. Messages go
out and come in as CDR bytes (the stamp patched / read in place: a robot process must offer
more than the servers serve; bench/pool/robot_rate.py measures what one keeps). The robots
subscribe detections and LinkFeedback only. Per robot: outputs' (stamp, arrival), when
frames were sent / local; the times are CLOCK_MONOTONIC, shared by every process of the host.

Reported (``--out``/results.json): per robot of the killed server the longest time without
outputs around the kill (blind time), local frames after the kill, outputs out of stamp order
or twice (a stale burst), the survivor's announced capacity, and seconds from the restarted
server's first announcement until it serves robots again and the split 8 s later; with
``--throughput`` the frames/s of 1 and of 2 servers under the same offered load
(``--throughput-robots`` at ``--rate``; and of 1 under ``--single-robots``), the servers'
admission wide open (capacity 1e5, drop tolerance 0.99): per phase what the robots made of the
offered rate, sent, ran locally and got served, per server, and the CPU cores used, so a
result capped by the offered load says so (``capped_by_offered``). ``--late-server S`` starts
the 2-server phase's second server only once the first serves every robot and measures S s
after it is announced: whether robots that joined the one server seen spread over both.

    python bench/pool/failover.py --robots 16 --rate 5 --capacity-fps 120 --out DIR  # CPU
    python bench/pool/failover.py --device cuda --precision fp16 --model default --rate 30 \
        --per-process 8 --robots 96 --single-robots 48 --no-failover --throughput --out DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SERVER = "from mtl_split_server.node import main; import sys; sys.exit(main())"
OPEN_CAPACITY_FPS = 1e5     # --throughput: the admission takes every robot (pool MAX_FPS)
OPEN_DROP_TOLERANCE = 0.99  # ... and never calls dropped frames saturation
SERVE_WAIT_S = 30.0         # ... and waits this long at most for every robot to be served
MAX_ROBOTS = 256            # ... nor refuses robots by count (pool_announcement.MAX_ROBOTS)
STATUS_PERIOD_S = 0.5       # robot processes report who serves whom this often
WAIT_SERVERS_S = 10.0       # robots wait at most this long to see every server
MIN_TICK_S = 0.002          # robot processes look for frames due at most this often
MAX_EVENTS = 256            # pool events a robot keeps (a flapping one cannot fill memory)
# A message's header.stamp in its CDR bytes: after the 4-byte encapsulation header (little
# endian, what rmw writes here), sec int32 and nanosec uint32.
CDR_STAMP, CDR_STAMP_AT = struct.Struct("<iI"), 4


def cdr_stamp_ns(raw: bytes) -> int:
    """The header stamp (ns) of a serialized message that starts with a std_msgs/Header."""
    if raw[1] != 1:
        raise ValueError("not little-endian CDR")
    sec, nanosec = CDR_STAMP.unpack_from(raw, CDR_STAMP_AT)
    return sec * 1_000_000_000 + nanosec


# ----------------------------------------------------------------------------- robots
def worker(args: argparse.Namespace) -> int:
    """A robot process: ``--names`` robots at ``--rate`` fps each; a status line (JSON) every
    STATUS_PERIOD_S on stdout; on SIGINT its records to ``--record``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.serialization import deserialize_message, serialize_message
    from vision_msgs.msg import Detection2DArray

    from mtl_split.msg import LinkFeedback, SplitFeatures
    from mtl_split_core.runtime.pool_announcement import POOL_TOPIC
    from mtl_split_core.runtime.pool_view import PoolView
    from mtl_split_ros import pool_msg
    from mtl_split_ros.qos import qos_from_name

    class SimRobot:
        """One robot: the edge node's pool choice per frame (mtl_split_edge/node.py). Its
        messages go out and come in as CDR bytes (the header stamp patched and read in
        place): converting 20 detections into Python objects per answer cost a robot
        process ~2 ms of CPU a frame, and the bench must offer more than the servers
        serve."""

        def __init__(self, node: Node, name: str, msg: SplitFeatures) -> None:
            self.node, self.name = node, name
            msg.header.frame_id = f"{name}_camera"
            self.cdr = bytearray(serialize_message(msg))
            self.view = PoolView(name, args.fingerprint, demand_fps=args.rate)
            self.pubs: dict[str, object] = {}
            self.sent_t: list[float] = []   # when each frame went to a server
            self.local_t: list[float] = []  # when a frame had no server to go to
            self.arrivals: list[tuple[int, float]] = []  # (stamp ns, arrival monotonic)
            # The pool's changes of server: (monotonic, kind, reason), the last MAX_EVENTS.
            self.events: deque[tuple[float, str, str]] = deque(maxlen=MAX_EVENTS)
            node.create_subscription(
                LinkFeedback, f"/{name}/mtl_split/link_feedback",
                lambda raw: self.view.answered(cdr_stamp_ns(raw), time.monotonic()),
                qos_from_name("reliable", depth=10), raw=True)
            node.create_subscription(
                Detection2DArray, f"/{name}/mtl_split/detections",
                lambda raw: self.arrivals.append((cdr_stamp_ns(raw), time.monotonic())),
                qos_from_name("reliable", depth=10), raw=True)

        def frame(self) -> None:
            now = time.monotonic()
            choice = self.view.choose(now)
            self.events.extend((e.t, e.kind, e.reason) for e in choice.events)
            for topic in {t for t in (choice.input_topic, choice.standby_topic) if t} \
                    - self.pubs.keys():
                self.pubs[topic] = self.node.create_publisher(SplitFeatures, topic,
                                                              qos_from_name("reliable"))
            pub = self.pubs.get(choice.input_topic or "")
            if pub is None or pub.get_subscription_count() == 0:
                self.local_t.append(now)
                return
            stamp = self.node.get_clock().now().nanoseconds
            CDR_STAMP.pack_into(self.cdr, CDR_STAMP_AT, *divmod(stamp, 1_000_000_000))
            self.view.sent(stamp, now)
            pub.publish(bytes(self.cdr))
            self.sent_t.append(now)

    rclpy.init()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = Node(f"bench_pool_robots_{os.getpid()}")
    cdr = Path(args.message).read_bytes()
    robots = [SimRobot(node, name, deserialize_message(cdr, SplitFeatures))
              for name in args.names.split(",")]

    def on_announcement(ann, verdict, msg) -> None:
        if ann is not None:
            now = time.monotonic()
            for r in robots:
                r.view.announce(ann, now)
    pool_msg.subscribe(node, POOL_TOPIC, None, on_announcement)
    # Each robot's frames are due every 1/rate s (phases spread over the robots); a tick sends
    # every frame due, so a late wake-up delays frames instead of losing them; a robot more
    # than a frame behind skips to now (a camera drops frames), which the sent times show.
    # The first frame waits until the robots see --servers-expected servers (at most
    # WAIT_SERVERS_S): each would join the first server it sees and, with the throughput
    # phases' wide-open capacities, never move (the hysteresis counts utilisation).
    period = 1.0 / args.rate
    start = time.monotonic()
    due: list[float] = []

    def tick() -> None:
        now = time.monotonic()
        if not due:
            seen = sum(c for *_, c in robots[0].view.servers(now))
            if seen < args.servers_expected and now - start < WAIT_SERVERS_S:
                return
            due.extend(now + period * i / len(robots) for i in range(len(robots)))
        for i, r in enumerate(robots):
            if due[i] <= now:
                r.frame()
                due[i] = due[i] + period if now - due[i] < period else now + period
    node.create_timer(max(period / len(robots), MIN_TICK_S), tick)

    def status() -> None:
        print(json.dumps({r.name: [r.view.current or "", len(r.arrivals)] for r in robots}),
              flush=True)
    node.create_timer(STATUS_PERIOD_S, status)
    executor = SingleThreadedExecutor()
    executor.add_node(node)  # once: rclpy.spin_once adds and removes it on every call
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
    Path(args.record).write_text(json.dumps({r.name: {
        "arrivals": r.arrivals, "local_t": r.local_t, "sent_t": r.sent_t,
        "events": list(r.events)} for r in robots}))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


class RobotProcesses:
    """The robot processes of one run: who serves whom (their status lines), then their
    records."""

    def __init__(self, names: list[str], per_process: int, rate: float, fingerprint: str,
                 message: Path, out: Path, tag: str, servers: int) -> None:
        self.latest: dict[str, list] = {}  # robot -> [server, outputs so far]
        self.totals: deque[tuple[float, int]] = deque(maxlen=256)  # (monotonic, all outputs)
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        for i in range(0, len(names), per_process):
            record = out / f"robots_{tag}_{i // per_process}.json"
            proc = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--names",
                 ",".join(names[i:i + per_process]), "--rate", str(rate), "--fingerprint",
                 fingerprint, "--message", str(message), "--record", str(record),
                 "--servers-expected", str(servers)],
                stdout=subprocess.PIPE, stderr=(out / f"{record.stem}.log").open("w"),
                text=True, start_new_session=True)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()
            self.procs.append((proc, record))

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self.latest.update(json.loads(line))
            except ValueError:
                continue
            self.totals.append((time.monotonic(), sum(n for _, n in self.latest.values())))

    def served_by(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for robot, (server, _) in sorted(self.latest.items()):
            out.setdefault(server, []).append(robot)
        return out

    def delivering(self, fps: float, over_s: float = 2.0) -> bool:
        """Whether outputs arrived at ``fps`` or more over the last ``over_s`` seconds (the
        start's warm-up over: a kill before it measures the start, not the failover)."""
        now = time.monotonic()
        past = [(t, n) for t, n in self.totals if now - t >= over_s]
        if not past or not self.totals:
            return False
        (t0, n0), (t1, n1) = past[-1], self.totals[-1]
        return t1 > t0 and (n1 - n0) / (t1 - t0) >= fps

    def all_served(self, count: int) -> bool:
        return len(self.latest) == count and all(n > 0 for _, n in self.latest.values())

    def records(self) -> dict[str, dict]:
        """Stop every robot process; their records merged."""
        out: dict[str, dict] = {}
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc, record in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if record.exists():
                out.update(json.loads(record.read_text()))
        return out


# ----------------------------------------------------------------------------- servers
class Pool:
    """The server processes, and their announcements as this process hears them."""

    def __init__(self, args: argparse.Namespace, out: Path, capacity: float,
                 drop_tolerance: float, max_robots: int = 64) -> None:
        import rclpy
        from rclpy.node import Node

        from mtl_split_core.runtime.pool_announcement import POOL_TOPIC
        from mtl_split_ros import pool_msg
        self.args, self.out = args, out
        self.capacity, self.drop_tolerance = capacity, drop_tolerance
        self.max_robots = max_robots
        self.servers: dict[str, subprocess.Popen] = {}
        # (monotonic, server id, capacity, load, robots served) per announcement heard
        self.announcements: list[tuple[float, str, float, float, int]] = []
        self.node = Node(f"bench_pool_{os.getpid()}")
        pool_msg.subscribe(self.node, POOL_TOPIC, None, self._on_announcement)
        self._spin_once = lambda: rclpy.spin_once(self.node, timeout_sec=0.01)

    def _on_announcement(self, ann, verdict: str, msg) -> None:
        if ann is not None:
            self.announcements.append((time.monotonic(), ann.server_id, ann.capacity_fps,
                                       ann.load_fps, len(ann.robots)))

    def announced(self, ids: list[str], since: float = 0.0) -> bool:
        """Whether each of ``ids`` was heard at least twice (what an edge needs) since."""
        heard = [s for t, s, *_ in self.announcements[-256:] if t >= since]
        return all(heard.count(s) >= 2 for s in ids)

    def capacities(self, server_id: str, t0: float, t1: float) -> list[float]:
        return [c for t, s, c, *_ in self.announcements if s == server_id and t0 <= t < t1]

    def start(self, server_id: str, log_name: str) -> None:
        a = self.args
        params = {**({"model": a.model_path} if a.model_path else {}),  # '' = the default
                  "device": server_device(a.device, server_id), "precision": a.precision,
                  "server_id": server_id,
                  "capacity_fps": self.capacity, "pool_drop_tolerance": self.drop_tolerance,
                  "pool_new_robot_fps": a.new_robot_fps, "pool_max_robots": self.max_robots,
                  "max_detections": 20}
        cmd = [sys.executable, "-c", SERVER, "--ros-args"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        cmd += ["-r", f"__node:=server_{server_id}"]
        self.servers[server_id] = subprocess.Popen(
            cmd, stdout=(self.out / f"{log_name}.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def spin_for(self, seconds: float, until=None) -> float:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            self._spin_once()
            if until is not None and until():
                break
        return time.monotonic() - start

    def close(self) -> None:
        for proc in self.servers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for proc in self.servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.node.destroy_node()


def window(records: dict, t0: float, t1: float) -> dict[str, float]:
    """Frames/s over [t0, t1) of every robot together: the robots made (``made_fps``: what
    they achieved of their offered rate), sent to a server, had no server for (local), and
    got outputs for (served)."""
    def fps(times) -> float:
        return sum(t0 <= t < t1 for t in times) / (t1 - t0)
    sent = sum(fps(r["sent_t"]) for r in records.values())
    local = sum(fps(r["local_t"]) for r in records.values())
    return {"made_fps": sent + local, "sent_fps": sent, "local_fps": local,
            "served_fps": sum(fps([t for _, t in r["arrivals"]]) for r in records.values())}


def pool_events(records: dict, t0: float, t1: float) -> dict[str, object]:
    """The robots' changes of server in [t0, t1): counted by kind and by reason (numbers
    left out: 'no answer for N s'), and how long before t1 the last one was (None: none).
    Says why a split is what it is (penalties after unanswered frames, refusals,
    rebalancing)."""
    events = [e for r in records.values() for e in r.get("events", []) if t0 <= e[0] < t1]
    by_kind: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for _, kind, reason in events:
        key = re.sub(r"\d+(\.\d+)?", "N", reason.split(":")[0])[:60]
        by_kind[kind] = by_kind.get(kind, 0) + 1
        by_reason[key] = by_reason.get(key, 0) + 1
    return {"by_kind": by_kind, "by_reason": by_reason,
            "last_before_end_s": min((t1 - e[0] for e in events), default=None)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (Linux /proc), seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(procs) -> float:
    return sum(cpu_seconds(p.pid) for p in procs)


def failover(args: argparse.Namespace, message: Path, out: Path) -> dict:
    """Settle, kill -9 the busiest server, measure; restart it, measure the rebalance."""
    pool = Pool(args, out, args.capacity_fps, args.drop_tolerance)
    ids = [f"pool_{i}" for i in range(args.servers)]
    names = [f"r{i + 1}" for i in range(args.robots)]
    robots = None
    try:
        for s in ids:
            pool.start(s, s)
        # The robots start once every server is there: the first would otherwise take them
        # all and the start's rebalancing would be measured instead of the failover.
        servers_s = pool.spin_for(args.start_timeout, lambda: pool.announced(ids))
        robots = RobotProcesses(names, args.per_process, args.rate, args.fingerprint,
                                message, out, "failover", len(ids))
        settle_s = pool.spin_for(args.start_timeout, lambda: robots.all_served(len(names))
                                 and all(s in robots.served_by() for s in ids))
        pool.spin_for(6.0)  # the start's rebalancing
        # Steady: the robots' outputs at 90% of what they send (on a GPU host the first
        # seconds, 16 robots found at once, ran far below that).
        steady_s = pool.spin_for(args.start_timeout,
                                 lambda: robots.delivering(0.9 * len(names) * args.rate))
        by = robots.served_by()
        victim = max(ids, key=lambda s: len(by.get(s, [])))
        moved = by.get(victim, [])
        before = time.monotonic()
        pool.spin_for(3.0)
        os.kill(pool.servers[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        pool.servers[victim].wait()
        pool.spin_for(8.0)
        after = time.monotonic()
        restart_at = time.monotonic()
        pool.start(victim, f"{victim}_restart")
        pool.spin_for(args.start_timeout, lambda: pool.announced([victim], restart_at))
        announced = next((t for t, s, *_ in pool.announcements
                          if t > restart_at and s == victim), None)
        pool.spin_for(20, lambda: victim in robots.served_by())
        back = time.monotonic()
        pool.spin_for(8.0)
        split = {s or "local": len(v) for s, v in robots.served_by().items()}
        served_again = victim in split and announced is not None
    finally:
        records = robots.records() if robots is not None else {}
        pool.close()
    per_robot = {}
    for name, r in records.items():
        arr = [(s, t) for s, t in r["arrivals"] if killed - 2.0 <= t < after]
        gaps = np.diff([killed - 2.0, *[t for _, t in arr], after])
        stamps = [s for s, _ in arr]
        per_robot[name] = {
            "moved": name in moved, "blind_s": float(gaps.max()),
            "local_after_kill": sum(killed <= t < after for t in r["local_t"]),
            "stale_or_twice": sum(b <= a for a, b in zip(stamps, stamps[1:]))}
    survivors = {s: {"before_kill": pool.capacities(s, before, killed)[-1:],
                     "after_kill": pool.capacities(s, killed, after)}
                 for s in ids if s != victim}
    return {"servers_s": servers_s, "settled_s": settle_s, "steady_s": steady_s,
            "victim": victim, "moved": moved,
            "before_kill": window(records, before, killed),
            "after_kill": window(records, killed, after),
            "fps_before_kill": window(records, before, killed)["served_fps"],
            "fps_after_kill": window(records, killed, after)["served_fps"],
            # The survivors' announced capacity: the last before the kill, the range after.
            "survivor_capacity_fps": {s: {"before_kill": v["before_kill"][0] if v[
                "before_kill"] else None, "after_kill_min": min(v["after_kill"], default=None),
                "after_kill_max": max(v["after_kill"], default=None)}
                for s, v in survivors.items()},
            "robots": per_robot,
            "restart_serves_again_s": back - announced if served_again else None,
            "split_8s_later": split,
            "local_total_after_kill": sum(v["local_after_kill"] for v in per_robot.values())}


def throughput(args: argparse.Namespace, message: Path, out: Path,
               save: Callable[[dict], None]) -> dict:
    """Served frames/s of 1 and of 2 servers under the same offered load (``--throughput-
    robots`` at ``--rate``), and of 1 under ``--single-robots`` when set (one process under
    more load than it serves spends part of itself on frames it then drops: its best figure
    may be at a lower load). Each phase says what the robots achieved of the offered rate, so
    a result capped by the offered load says so."""
    loads = [(1, args.throughput_robots), (2, args.throughput_robots)]
    loads += [(1, args.single_robots)] if args.single_robots else []
    phases: list[dict] = []
    for n, count in loads:  # each phase saved as it ends: a run cut short keeps what it has
        phases.append(throughput_phase(args, message, out, n, count))
        save({"rate": args.rate, "phases": phases})
    one, two = phases[0], phases[1]
    best_one = max(p["served_fps"] for p in phases if p["servers"] == 1)
    return {"rate": args.rate, "phases": phases,
            "ratio": two["served_fps"] / max(one["served_fps"], 1e-9),
            "ratio_vs_best_single": two["served_fps"] / max(best_one, 1e-9),
            # Two servers served (nearly) all that was sent: the ratio is a lower bound.
            "capped_by_offered": two["served_fps"] >= 0.95 * two["sent_fps"],
            "offered_kept": min(p["made_fps"] / p["offered_fps"] for p in phases)}


def throughput_phase(args: argparse.Namespace, message: Path, out: Path, servers: int,
                     count: int) -> dict:
    """``servers`` servers (admission wide open), ``count`` robots: frames/s over
    ``--seconds`` after every robot is served and 5 s more."""
    tag = f"tp{servers}_{count}"
    pool = Pool(args, out, OPEN_CAPACITY_FPS, OPEN_DROP_TOLERANCE, MAX_ROBOTS)
    ids = [f"{tag}_{i}" for i in range(servers)]
    names = [f"t{i + 1}" for i in range(count)]
    # --late-server: the robots start with one server and join it; the others start then.
    first = ids[:1] if args.late_server and servers > 1 else ids
    robots = None
    try:
        for s in first:
            pool.start(s, s)
        pool.spin_for(args.start_timeout, lambda: pool.announced(first))
        robots = RobotProcesses(names, args.per_process, args.rate, args.fingerprint,
                                message, out, tag, len(first))
        pool.spin_for(SERVE_WAIT_S, lambda: robots.all_served(len(names)))
        if first != ids:
            late_at = time.monotonic()
            for s in ids[len(first):]:
                pool.start(s, s)
            pool.spin_for(args.start_timeout, lambda: pool.announced(ids, late_at))
            pool.spin_for(args.late_server)  # what the robots do with it in that time
        pool.spin_for(5.0)
        robot_procs = [p for p, _ in robots.procs]
        t0 = time.monotonic()
        cpu0 = (cpu_of(pool.servers.values()), cpu_of(robot_procs))
        pool.spin_for(args.seconds)
        t1 = time.monotonic()
        cpu1 = (cpu_of(pool.servers.values()), cpu_of(robot_procs))
        by = robots.served_by()
    finally:
        records = robots.records() if robots is not None else {}
        pool.close()
    return {"servers": servers, "robots": count, "offered_fps": count * args.rate,
            "late_server_s": args.late_server if first != ids else None,
            **window(records, t0, t1), "split": {s or "local": len(v) for s, v in by.items()},
            # per server, by each robot's server at the end (moves in the window: below)
            "served_fps_by_server": {s or "local": window(
                {r: records[r] for r in v if r in records}, t0, t1)["served_fps"]
                for s, v in by.items()},
            "pool_events_before": pool_events(records, -math.inf, t0),
            "pool_events_in_window": pool_events(records, t0, t1),
            "server_cpu_cores": (cpu1[0] - cpu0[0]) / (t1 - t0),
            "robot_cpu_cores": (cpu1[1] - cpu0[1]) / (t1 - t0)}


# ----------------------------------------------------------------------------- main
def record_message(args: argparse.Namespace, out: Path) -> Path:
    """One features message of the model (640x480 noise through the edge, on the CPU), its
    ``send_fps`` the robots' rate as the edge node announces it; CDR bytes in ``out``."""
    from rclpy.serialization import serialize_message

    from mtl_split_core.runtime.edge import EdgeRunner
    from mtl_split_ros.features_msg import packet_to_msg
    if args.model == "tiny":
        sys.path.insert(0, str(ROOT / "test"))
        from support.ros_nodes import tiny_model
        args.model_path = tiny_model(out / "tiny_model")
    else:
        args.model_path = "" if args.model == "default" else args.model
    runner = EdgeRunner.from_path(args.model_path or None, device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    path = out / "features.cdr"
    path.write_bytes(serialize_message(packet_to_msg(runner(rgb), send_fps=args.rate)))
    args.fingerprint = runner.card["fingerprint"]
    args.message_info = {"split": runner.split, "codec": runner.codec,
                         "bytes": len(path.read_bytes())}
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", type=int, default=16)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--per-process", type=int, default=16, help="robots per robot process")
    ap.add_argument("--device", default="cpu",
                    help="the servers' device (cpu, cuda, cuda:0), or one per server in turn "
                    "(cuda:0,cuda:1: server i on the (i mod 2)th)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    ap.add_argument("--model", default="tiny", help="tiny, default, or a model path")
    ap.add_argument("--capacity-fps", type=float, default=0.0,
                    help="each server's capacity_fps (0 = it measures its own)")
    ap.add_argument("--new-robot-fps", type=float, default=30.0,
                    help="the servers' pool_new_robot_fps (a robot announcing no rate)")
    ap.add_argument("--drop-tolerance", type=float, default=0.5,
                    help="the servers' pool_drop_tolerance (0.5: a shared CPU)")
    ap.add_argument("--no-failover", action="store_true", help="only --throughput")
    ap.add_argument("--throughput", action="store_true", help="also 1 vs 2 servers")
    ap.add_argument("--throughput-robots", type=int, default=0, help="0 = --robots")
    ap.add_argument("--single-robots", type=int, default=0,
                    help="also 1 server under this many robots (0 = not)")
    ap.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    ap.add_argument("--late-server", type=float, default=0.0,
                    help="throughput with 2 servers: start the second once every robot is "
                    "served by the first, then wait this many seconds more (0 = both first)")
    ap.add_argument("--start-timeout", type=float, default=90.0,
                    help="seconds to wait for servers to start and serve every robot")
    ap.add_argument("--out", type=Path)
    # A robot process (RobotProcesses starts it).
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    ap.add_argument("--fingerprint", help=argparse.SUPPRESS)
    ap.add_argument("--message", help=argparse.SUPPRESS)
    ap.add_argument("--record", help=argparse.SUPPRESS)
    ap.add_argument("--servers-expected", type=int, default=1, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def server_device(devices: str, server_id: str) -> str:
    """The device of server ``<name>_<i>`` from ``--device``: a list gives server i its
    (i mod n)th entry (two servers on two GPUs), one device is every server's."""
    options = [d.strip() for d in devices.split(",") if d.strip()]
    return options[int(server_id.rsplit("_", 1)[1]) % len(options)]

def main() -> int:
    args = parse_args()
    if args.worker:
        return worker(args)
    args.throughput_robots = args.throughput_robots or args.robots
    problems = [text for bad, text in (
        (args.out is None, "--out is required"),
        (not 1 <= args.robots <= 256, "--robots 1..256"),
        (not 1 <= args.throughput_robots <= 256, "--throughput-robots 1..256"),
        (not 0 <= args.single_robots <= 256, "--single-robots 0..256"),
        (not (0 < args.rate <= 1000), "--rate (0, 1000]"),
        (not 2 <= args.servers <= 8, "--servers 2..8"),
        (not any(d.strip() for d in args.device.split(",")), "--device: one or more devices"),
        (not 1 <= args.per_process <= 256, "--per-process 1..256"),
        (not (0 <= args.drop_tolerance <= 0.99), "--drop-tolerance 0..0.99"),
        (args.no_failover and not args.throughput, "--no-failover needs --throughput"),
        (not (math.isfinite(args.seconds) and args.seconds > 0), "--seconds > 0"),
        (not 0 <= args.late_server <= 60, "--late-server 0..60")) if bad]
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    import rclpy
    args.out.mkdir(parents=True, exist_ok=True)
    message = record_message(args, args.out)
    rclpy.init()
    result: dict[str, object] = {
        "command": "python " + " ".join(sys.argv), "date": datetime.date.today().isoformat(),
        "machine": f"{platform.node()}, {os.cpu_count()} CPU cores, {platform.processor()}",
        "gpu": gpu_name() if args.device.startswith("cuda") else None,
        "model": f"{args.model} ({args.fingerprint}), device {args.device}, {args.precision}",
        "message": args.message_info, "robot_count": args.robots, "rate": args.rate,
        "capacity_fps": args.capacity_fps, "new_robot_fps": args.new_robot_fps,
        "drop_tolerance": args.drop_tolerance, "per_process": args.per_process}

    def save(part: dict) -> None:
        result.update(part)
        (args.out / "results.json").write_text(json.dumps(result, indent=1))
    try:
        if not args.no_failover:
            save(failover(args, message, args.out))
        if args.throughput:
            save({"throughput": throughput(
                args, message, args.out, lambda partial: save({"throughput": partial}))})
    finally:
        rclpy.try_shutdown()
    print(json.dumps({k: v for k, v in result.items() if k != "robots"}, indent=1))
    if "robots" in result:
        robots = result["robots"]
        assert isinstance(robots, dict)
        moved = [v for v in robots.values() if v["moved"]]
        blind = max((v["blind_s"] for v in moved), default=float("nan"))
        print(f"moved {len(moved)} robots; worst blind time {blind:.2f} s; local frames after "
              f"the kill {result['local_total_after_kill']}; stale/twice "
              f"{sum(v['stale_or_twice'] for v in robots.values())}")
    if "throughput" in result:
        tp = result["throughput"]
        assert isinstance(tp, dict)
        for p in tp["phases"]:
            print(f"{p['servers']} server(s), {p['robots']} robots: offered "
                  f"{p['offered_fps']:.0f}, made {p['made_fps']:.0f}, sent {p['sent_fps']:.0f},"
                  f" served {p['served_fps']:.0f} frames/s; split {p['split']}")
        print(f"2 vs 1 servers: {tp['ratio']:.2f}x ({tp['ratio_vs_best_single']:.2f}x of the "
              f"best single){'; capped by the offered load' if tp['capped_by_offered'] else ''}")
    return 0


def gpu_name() -> str | None:
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - a label only
        return None


if __name__ == "__main__":
    sys.exit(main())
