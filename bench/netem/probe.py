"""Receives the server's outputs for the link benchmark and records when each frame arrived.

Subscribes ``mtl_split/detections``, ``mtl_split/segmentation`` and ``mtl_split/depth`` (so the
server computes all three heads, as in use) and ``/diagnostics``. Writes ``--ready`` once the
first detections arrive; on SIGINT writes ``--out`` (JSON): for every detections message its
header stamp and arrival time (ns, wall clock), plus the last diagnostics of each node.

    python bench/netem/probe.py --out probe.json --ready ready.flag
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mtl_split.msg import Detection2DArray
from mtl_split_ros.node_main import run_node
from mtl_split_ros.qos import qos_from_name


class Probe(Node):
    def __init__(self, ready: Path, out: Path):
        super().__init__("bench_probe")
        self.ready, self.out = ready, out
        self.arrivals: list[tuple[int, int]] = []
        self.diagnostics: dict[str, dict] = {}
        qos = qos_from_name("reliable", depth=10)
        self.create_subscription(Detection2DArray, "mtl_split/detections", self._on_dets, qos)
        for topic in ("mtl_split/segmentation", "mtl_split/depth"):
            self.create_subscription(Image, topic, lambda m: None, qos)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                 qos_profile_sensor_data)

    def _on_dets(self, msg: Detection2DArray) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if not self.arrivals:
            self.ready.write_text(str(now))
        self.arrivals.append((stamp, now))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def close(self) -> None:
        self.out.write_text(json.dumps({"arrivals": self.arrivals,
                                        "diagnostics": self.diagnostics}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    args = ap.parse_args()
    return run_node(lambda: Probe(args.ready, args.out))


if __name__ == "__main__":
    sys.exit(main())
