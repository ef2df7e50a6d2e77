"""Receives the pipeline's outputs for the link benchmarks and records when each frame arrived.

Subscribes ``mtl_split/detections``, ``mtl_split/segmentation`` and ``mtl_split/depth`` (so the
server computes all three heads, as in use) and ``/diagnostics``; with ``--detections-only``
(the robot side of the trace benchmark) detections alone, so only they cross the link back,
and every detection is kept for scoring. Writes ``--ready`` once the first detections arrive;
on SIGINT writes ``--out`` (JSON): for every detections message its header stamp and arrival
time (ns, wall clock) — with ``--detections-only`` also its boxes — the last diagnostics of
each node and every diagnostics status received, with its arrival time.

    python bench/netem/probe.py --out probe.json --ready ready.flag [--detections-only]
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
from vision_msgs.msg import Detection2DArray

from mtl_split_ros.node_main import run_node
from mtl_split_ros.outputs import detection_arrays
from mtl_split_ros.qos import qos_from_name


class Probe(Node):
    def __init__(self, ready: Path, out: Path, detections_only: bool = False):
        super().__init__("bench_probe")
        self.ready, self.out, self.keep = ready, out, detections_only
        self.arrivals: list[tuple[int, int]] = []
        self.detections: list[dict] = []  # with --detections-only: one per arrival
        self.diagnostics: dict[str, dict] = {}
        self.diagnostics_log: list[tuple[int, str, dict]] = []
        qos = qos_from_name("reliable", depth=10)
        self.create_subscription(Detection2DArray, "mtl_split/detections", self._on_dets, qos)
        if not detections_only:
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
        if self.keep:
            boxes, class_ids, scores = detection_arrays(msg)
            self.detections.append({"boxes": boxes.round(1).tolist(),
                                    "class_ids": class_ids.tolist(),
                                    "scores": scores.round(4).tolist()})

    def _on_diag(self, msg: DiagnosticArray) -> None:
        now = time.time_ns()
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = values
            self.diagnostics_log.append((now, status.name, values))

    def close(self) -> None:
        result = {"arrivals": self.arrivals, "diagnostics": self.diagnostics,
                  "diagnostics_log": self.diagnostics_log}
        if self.keep:
            result["detections"] = self.detections
        tmp = self.out.with_suffix(".part")
        tmp.write_text(json.dumps(result))
        tmp.replace(self.out)  # never half-written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    ap.add_argument("--detections-only", action="store_true",
                    help="subscribe detections alone and keep every detection")
    args = ap.parse_args()
    return run_node(lambda: Probe(args.ready, args.out, args.detections_only))


if __name__ == "__main__":
    sys.exit(main())
