"""The robots' surroundings for a pool test run in another network namespace: a camera per
robot (``--rate`` Hz, 128x96 rgb8), and a record of each robot's detections (arrival times,
monotonic) and of its edge's /diagnostics (pool_server, fallbacks, link_mode), written to
``--out`` (JSON, replaced atomically) every 0.2 s until SIGINT.

    python test/support/pool_observer.py --robots r1,r2 --rate 10 --out state.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split_ros.node_main import run_node
from mtl_split_ros.qos import qos_from_name

KEYS = ("pool_server", "pool_servers_known", "fallbacks", "link_mode", "pool_last_event")


class Observer(Node):
    def __init__(self, robots: list[str], rate: float, out: str):
        super().__init__("pool_observer")
        self.robots, self.out = robots, out
        rel = qos_from_name("reliable")
        self.cams = [self.create_publisher(Image, f"/{r}/image", rel) for r in robots]
        self.state = {r: {"arrivals": [], **{k: "" for k in KEYS}} for r in robots}
        for r in robots:
            self.create_subscription(
                Detection2DArray, f"/{r}/mtl_split/detections",
                lambda m, r=r: self.state[r]["arrivals"].append(time.monotonic()),
                qos_from_name("reliable", depth=10))
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                 qos_profile_sensor_data)
        rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
        self.image = Image(height=96, width=128, encoding="rgb8", step=128 * 3,
                           data=rgb.tobytes())
        self.create_timer(1.0 / rate, self._camera)
        self.create_timer(0.2, self._write)

    def _camera(self) -> None:
        self.image.header.stamp = self.get_clock().now().to_msg()
        for r, pub in zip(self.robots, self.cams):
            self.image.header.frame_id = f"{r}_camera"
            pub.publish(self.image)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            robot = s.name.split("/")[1] if s.name.endswith(": edge") else None
            if robot in self.state:
                values = {kv.key: kv.value for kv in s.values}
                self.state[robot].update({k: values.get(k, "") for k in KEYS})

    def _write(self) -> None:
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"now": time.monotonic(), "robots": self.state}, f)
        os.replace(tmp, self.out)

    def close(self) -> None:
        self._write()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", required=True)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(sys.argv[1:sys.argv.index("--ros-args")] if "--ros-args" in sys.argv
                         else None)
    robots = [r for r in args.robots.split(",") if r]
    return run_node(lambda: Observer(robots, args.rate, args.out))


if __name__ == "__main__":
    sys.exit(main())
