"""`mtl-split fleet status`: a live table of the pool's servers and the fleet's robots.

Servers come from the pool topic (``ServerAnnouncement``: load, capacity, queue, p99, robots
served and refused); robots from ``/diagnostics`` (each edge's ``<node>: edge`` status: its
server, remote or local, frames/s with outputs, blind time). Refreshes in place on a terminal
(a table per refresh otherwise); ``--once`` listens ``--wait`` seconds, prints one table and
exits (scripts). With ``--auth-key-file`` only announcements signed with one of its keys are
shown (the others are counted below the table). SIGINT / SIGTERM: exit 0.

Blind time: seconds the robot has had no outputs from anyone — while remote, since the
server's last answer (``feedback_silent_s``); while local, 0 as long as it serves frames itself.
"""

from __future__ import annotations

import math
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray

from mtl_split_core.auth import KeyFileError, Verifier, load_key_file
from mtl_split_core.cli.arguments import positive_float
from mtl_split_core.errors import InputError
from mtl_split_core.runtime.pool_announcement import POOL_TOPIC, Announcement
from mtl_split_ros import pool_msg
from mtl_split_ros.qos import qos_from_name
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly

EDGE_SUFFIX = ": edge"  # the edge node's /diagnostics status name ends so
MAX_ROWS = 256          # servers, and robots, kept (the oldest forgotten first)
CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


@dataclass(frozen=True)
class RobotRow:
    """One edge's newest /diagnostics values."""

    robot: str
    values: dict[str, str]
    level: int


class FleetTable:
    """What the tool has heard, by server and robot, and the table it prints."""

    def __init__(self, silent_s: float = 1.0) -> None:
        self.silent_s = silent_s
        self.servers: OrderedDict[str, tuple[Announcement, float]] = OrderedDict()
        self.robots: OrderedDict[str, tuple[RobotRow, float]] = OrderedDict()
        self.rejected: dict[str, int] = {}

    def announcement(self, ann: Announcement | None, verdict: str, now: float) -> None:
        if ann is None:
            self.rejected[verdict] = self.rejected.get(verdict, 0) + 1
            return
        _put(self.servers, ann.server_id, (ann, now))

    def diagnostics(self, msg: DiagnosticArray, now: float) -> None:
        for status in msg.status:
            if not str(status.name).endswith(EDGE_SUFFIX):
                continue
            robot = robot_of_node(str(status.hardware_id))
            values = {str(kv.key): str(kv.value) for kv in status.values[:512]}
            _put(self.robots, robot, (RobotRow(robot, values, _level(status.level)), now))

    def render(self, now: float) -> str:
        """The table (plain text, fixed-width columns)."""
        rows = [("SERVER", "LOAD fps", "CAPACITY", "USE", "QUEUE ms", "P99 ms", "ROBOTS",
                 "STATE")]
        for sid, (ann, seen) in sorted(self.servers.items()):
            age = now - seen
            state = (f"silent {age:.1f} s" if age >= self.silent_s
                     else "accepting" if ann.accepting else f"full ({ann.refusal})")
            if ann.refused:
                state += f", refusing {len(ann.refused)}"
            rows.append((sid, f"{ann.load_fps:.0f}",
                         f"{ann.capacity_fps:.0f}" if ann.capacity_fps > 0 else "?",
                         _percent(ann.utilization), _ms(ann.queue_ms),
                         _ms(ann.latency_ms_p99), str(len(ann.robots)), state))
        servers = _columns(rows)
        rows = [("ROBOT", "SERVER", "MODE", "FPS", "BLIND s", "STATE")]
        for _, (row, seen) in sorted(self.robots.items()):
            rows.append(self._robot_row(row, now - seen))
        robots = _columns(rows)
        lines = [f"mtl-split fleet status  {time.strftime('%H:%M:%S')}  "
                 f"{len(self.servers)} servers, {len(self.robots)} robots", "",
                 servers, "", robots]
        if self.rejected:
            lines += ["", "announcements ignored: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.rejected.items()))]
        return "\n".join(lines)

    def _robot_row(self, row: RobotRow, age: float) -> tuple[str, ...]:
        v = row.values
        mode = v.get("link_mode", "?")
        server = v.get("pool_server") or self._server_serving(row.robot) or "-"
        if mode == "local":
            server = f"({server})" if server != "-" else "-"
            fps = _number(v.get("local_fps"))
            blind = 0.0 if fps > 0 else math.nan
        else:
            fps = _number(v.get("fps_served", v.get("fps")))
            blind = _number(v.get("feedback_silent_s"))
        state = f"silent {age:.1f} s" if age >= max(self.silent_s, 3.0) else \
            ("ok" if row.level == 0 else v.get("last_event", "") or f"level {row.level}")
        return (row.robot, server, mode, _fmt(fps, "{:.1f}"), _fmt(blind, "{:.2f}"),
                state[:60])

    def _server_serving(self, robot: str) -> str | None:
        return next((sid for sid, (ann, _) in self.servers.items() if robot in ann.robots),
                    None)


def robot_of_node(fully_qualified: str) -> str:
    """'/r1/mtl_split_edge' -> 'r1' (its namespace); a node without one -> '/'."""
    namespace = fully_qualified.rsplit("/", 1)[0].strip("/")
    return namespace or "/"


def _level(level: bytes | int) -> int:
    """DiagnosticStatus.level (a byte in rclpy) as 0 OK, 1 WARN, 2 ERROR, 3 STALE."""
    return level[0] if isinstance(level, bytes) else int(level)


def _put(table: OrderedDict, key: str, value: object) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_ROWS:
        table.popitem(last=False)


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _fmt(value: float, pattern: str) -> str:
    return "-" if math.isnan(value) else ("inf" if math.isinf(value) else pattern.format(value))


def _ms(value: float) -> str:
    return _fmt(value, "{:.1f}")


def _percent(value: float) -> str:
    return _fmt(value * 100, "{:.0f}%")


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in rows)


def _verifier(path: str) -> Verifier | None:
    if not path:
        return None
    try:
        return Verifier(load_key_file(path), max_age_s=5.0)
    except KeyFileError as err:
        raise InputError(str(err)) from None


def status(once: bool, wait: float, period: float, topic: str, auth_key_file: str,
           silent_s: float) -> int:
    verifier = _verifier(auth_key_file)  # a bad key file: one line, before ROS starts
    table = FleetTable(silent_s)
    tty = sys.stdout.isatty() and not once
    with StopSignals() as stop:
        init_without_signal_handlers()
        node = rclpy.create_node("mtl_split_fleet_status")
        try:
            pool_msg.subscribe(node, topic, verifier,
                               lambda ann, verdict, _msg: table.announcement(
                                   ann, verdict, time.monotonic()))
            node.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: table.diagnostics(m, time.monotonic()),
                                     qos_from_name("reliable", depth=50))
            start = time.monotonic()
            next_print = start + (wait if once else min(wait, period))
            while not stop.is_set():
                rclpy.spin_once(node, timeout_sec=0.05)
                now = time.monotonic()
                if now < next_print:
                    continue
                text = table.render(now)
                print(CLEAR + text if tty else text + ("" if once else "\n"), flush=True)
                if once:
                    break
                next_print = now + period
        finally:
            node.destroy_node()
            shutdown_quietly()
    return 0


def add_arguments(p) -> None:
    p.add_argument("action", choices=["status"], help="status: the table of servers and "
                   "robots")
    p.add_argument("--once", action="store_true", help="listen --wait seconds, print one "
                   "table and exit")
    p.add_argument("--wait", type=positive_float, default=2.0,
                   help="seconds to listen before the first table (default 2)")
    p.add_argument("--period", type=positive_float, default=1.0,
                   help="seconds between refreshes (default 1)")
    p.add_argument("--topic", default=POOL_TOPIC, help=f"pool topic (default {POOL_TOPIC})")
    p.add_argument("--auth-key-file", default="",
                   help="show only announcements signed with a key of this file")
    p.add_argument("--silent-after", type=positive_float, default=1.0,
                   help="seconds without an announcement before a server shows as silent")


def run(args) -> int:
    if not args.topic.startswith("/"):
        raise InputError(f"--topic {args.topic!r}: expected an absolute topic like "
                         f"{POOL_TOPIC}")
    return status(args.once, args.wait, args.period, args.topic, args.auth_key_file,
                  args.silent_after)
