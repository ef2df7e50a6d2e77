"""Simulated robots for the fleet benchmark: replays recorded edge output (SplitFeatures) at a
fixed rate per robot, each robot in its own namespace, and records when its outputs arrive.

Robot ``r3`` publishes ``/r3/mtl_split/features`` stamped with the wall clock at publish time
(frame id ``r3_camera``) and subscribes ``/r3/mtl_split/{detections,segmentation,depth}``; the
robots of one process are published round-robin from one timer, so their frames are spread
evenly over each period. Writes ``--ready`` once every robot got detections; on SIGINT writes
``--out`` (JSON): per robot the frames sent, when each was sent (ns) and, per detections
message, (stamp, arrival) in ns; with ``--diagnostics`` also the last /diagnostics status of
each name. Messages are published as serialized bytes (each robot's frames serialized once,
the stamp written into them per publish): a robot costs little CPU, so more of this host's
CPU is left to the server and the offered rate holds.

    python bench/fleet/replay.py STREAMS.npz --robots r1,r2 --rate 30 --out a.json --ready r.flag
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_ros.node_main import run_node
from mtl_split_ros.qos import qos_from_name

CDR_STAMP, CDR_STAMP_AT = struct.Struct("<iI"), 4  # header.stamp, after the encapsulation


def load_streams(path: Path) -> list[SplitFeatures]:
    """The recorded SplitFeatures messages (CDR bytes concatenated, with offsets)."""
    with np.load(path) as z:
        cdr, offsets = z["cdr"], z["offsets"]
    return [deserialize_message(cdr[a:b].tobytes(), SplitFeatures)
            for a, b in zip(offsets[:-1], offsets[1:])]


class Robots(Node):
    def __init__(self, robots: list[str], first: int, streams: list[SplitFeatures], rate: float,
                 out: Path, ready: Path, diagnostics: bool):
        super().__init__(f"bench_robots_{first}")
        self.robots, self.streams, self.out, self.ready = robots, streams, out, ready
        qos = qos_from_name("reliable", depth=10)
        self.pubs = [self.create_publisher(SplitFeatures, f"/{r}/mtl_split/features", qos)
                     for r in robots]
        self.sent = [0] * len(robots)
        self.sent_ns: list[list[int]] = [[] for _ in robots]
        self.cdr = [[bytearray(serialize_message(_framed(m, f"{r}_camera"))) for m in streams]
                    for r in robots]
        self.arrivals: list[list[tuple[int, int]]] = [[] for _ in robots]
        self.maps = [0] * len(robots)  # segmentation + depth messages received
        for i, r in enumerate(robots):
            self.create_subscription(Detection2DArray, f"/{r}/mtl_split/detections",
                                     lambda m, i=i: self._on_dets(i, m), qos)
            for name in ("segmentation", "depth"):
                self.create_subscription(Image, f"/{r}/mtl_split/{name}",
                                         lambda m, i=i: self._on_map(i), qos)
        self.diagnostics: dict[str, dict] = {}
        if diagnostics:
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                     qos_profile_sensor_data)
        self.offset = first  # robots start at different recorded frames
        self.turn = 0
        self.create_timer(1.0 / (rate * len(robots)), self._tick)

    def _tick(self) -> None:
        i = self.turn
        self.turn = (self.turn + 1) % len(self.robots)
        raw = self.cdr[i][(self.offset + i * 3 + self.sent[i]) % len(self.streams)]
        now = time.time_ns()
        CDR_STAMP.pack_into(raw, CDR_STAMP_AT, *divmod(now, 1_000_000_000))
        self.pubs[i].publish(bytes(raw))
        self.sent[i] += 1
        self.sent_ns[i].append(now)

    def _on_dets(self, i: int, msg: Detection2DArray) -> None:
        now = time.time_ns()
        self.arrivals[i].append((msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                                 now))
        if not self.ready.exists() and all(self.arrivals):
            self.ready.write_text(str(now))

    def _on_map(self, i: int) -> None:
        self.maps[i] += 1

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        robots = {r: {"sent": self.sent[i], "sent_ns": self.sent_ns[i],
                      "arrivals": self.arrivals[i], "maps": self.maps[i]}
                  for i, r in enumerate(self.robots)}
        self.out.write_text(json.dumps({"robots": robots, "diagnostics": self.diagnostics}))


def _framed(msg: SplitFeatures, frame_id: str) -> SplitFeatures:
    msg.header.frame_id = frame_id
    return msg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("streams", type=Path)
    ap.add_argument("--robots", required=True, help="comma-separated namespaces")
    ap.add_argument("--first", type=int, default=0, help="index of this process's first robot")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    ap.add_argument("--diagnostics", action="store_true")
    args = ap.parse_args()
    robots = [r for r in args.robots.split(",") if r]
    if not robots or args.rate <= 0:
        print("error: --robots needs at least one name and --rate must be > 0", file=sys.stderr)
        return 2
    streams = load_streams(args.streams)
    return run_node(lambda: Robots(robots, args.first, streams, args.rate, args.out,
                                   args.ready, args.diagnostics))


if __name__ == "__main__":
    sys.exit(main())
