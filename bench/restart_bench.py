"""Restart time of the edge and server nodes: start command to first output (issue 17).

    python bench/restart_bench.py --repeats 3            # both nodes, default model, CPU

The bench process plays the rest of a running pipeline: it publishes a camera frame (the first
of bench/frames.npz, 640x480) with camera_info at 10 Hz for the edge, and for the server a
SplitFeatures message captured once from a real edge, re-stamped, at 10 Hz. Each round starts
the node as its executable does (DDS participant first, then the node's imports: node_main),
times the "ready" log line and the first output received by the bench (features / detections),
then ends it with SIGKILL (kill -9), as a crash would, before the next start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import cv2
import numpy as np
import rclpy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_ros.image_msg import fill_image
from mtl_split_ros.qos import qos_from_name

# As the installed executables start a node (nodes/edge_node, nodes/server_node).
NODE = ("import sys; from mtl_split_ros.node_main import run_node_lazily; "
        "sys.exit(run_node_lazily('{module}.node:{node_class}'))")
NODE_CLASSES = {"mtl_split_edge": "EdgeNode", "mtl_split_server": "ServerNode"}
REL = qos_from_name("reliable", depth=10)


def first_frame(path: str) -> np.ndarray:
    z = np.load(path)
    jpeg = z["jpeg"][z["offsets"][0]:z["offsets"][1]]
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].copy()


class Started:
    """A node process in its own group; records when its "ready" line appears."""

    def __init__(self, module: str, params: dict[str, str], env: dict[str, str] | None = None):
        args = ["-c", NODE.format(module=module, node_class=NODE_CLASSES[module]), "--ros-args"]
        for k, v in params.items():
            args += ["-p", f"{k}:={v}"]
        self.t0, self.wall_ns = time.monotonic(), time.time_ns()
        self.proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env={**os.environ, **(env or {})})
        self.ready_s: float | None = None
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)
            if self.ready_s is None and " ready: " in line:
                self.ready_s = time.monotonic() - self.t0

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def spin_until(node, predicate, timeout: float, started: Started | None = None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.02)
        if predicate():
            return True
        if started is not None and started.proc.poll() is not None:
            raise RuntimeError("node exited:\n" + "".join(started.log[-20:]))
    return False


def time_restarts(node, module: str, params: dict[str, str], out_type, out_topic: str,
                  repeats: int, timeout: float, env: dict[str, str]) -> list[dict]:
    """Start / first output / kill -9, ``repeats`` times."""
    # (arrival, image stamp): an output counts for a round only when made from a frame sent
    # after that round's start command; a killed node's last outputs can still be queued here.
    arrivals: list[tuple[float, int]] = []
    sub = node.create_subscription(
        out_type, out_topic,
        lambda m: arrivals.append((time.monotonic(),
                                   m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)), REL)
    rounds = []
    try:
        for _ in range(repeats):
            started = Started(module, params, env)
            try:
                got = spin_until(node, lambda s=started: any(
                    stamp >= s.wall_ns for _, stamp in arrivals), timeout, started)
                if not got:
                    raise RuntimeError(f"no {out_topic} within {timeout} s:\n"
                                       + "".join(started.log[-20:]))
                fresh = [t for t, stamp in arrivals if stamp >= started.wall_ns]
                first = min(fresh) - started.t0
                rounds.append({"ready_s": started.ready_s, "first_output_s": first})
                print(f"{module}: ready {started.ready_s or float('nan'):.2f} s, first output "
                      f"{first:.2f} s", flush=True)
            finally:
                started.kill9()
            arrivals.clear()
    finally:
        node.destroy_subscription(sub)
    return rounds


def capture_features(node, params: dict[str, str], timeout: float,
                     env: dict[str, str]) -> SplitFeatures:
    got: list[SplitFeatures] = []
    sub = node.create_subscription(SplitFeatures, "mtl_split/features", got.append, REL)
    started = Started("mtl_split_edge", params, env)
    try:
        if not spin_until(node, lambda: bool(got), timeout, started):
            raise RuntimeError("no features to capture")
    finally:
        started.kill9()
        node.destroy_subscription(sub)
    return got[0]


def summary(rounds: list[dict], key: str) -> str:
    values = [r[key] for r in rounds if r[key] is not None]
    return (f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"
            if values else "?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="", help="model folder ('' = the default model)")
    parser.add_argument("--nodes", nargs="+", default=["edge", "server"],
                        choices=["edge", "server"])
    parser.add_argument("--frames", default=os.path.join(os.path.dirname(__file__),
                                                         "frames.npz"))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", help="write the rounds here")
    parser.add_argument("--node-env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment of the started nodes only (repeatable), e.g. "
                             "FASTDDS_BUILTIN_TRANSPORTS=UDPv4")
    args = parser.parse_args()
    if any("=" not in kv for kv in args.node_env):
        parser.error("--node-env takes KEY=VALUE")
    node_env = dict(kv.split("=", 1) for kv in args.node_env)

    rclpy.init()
    node = rclpy.create_node("restart_bench")
    image = fill_image(Image(), first_frame(args.frames), "rgb8")
    image.header.frame_id = "camera_optical_frame"
    info = CameraInfo(header=image.header, width=image.width, height=image.height)
    info.k = [500.0, 0.0, image.width / 2, 0.0, 500.0, image.height / 2, 0.0, 0.0, 1.0]
    image_pub = node.create_publisher(Image, "image", REL)
    info_pub = node.create_publisher(CameraInfo, "camera_info", REL)
    features: list[SplitFeatures] = []
    features_pub = node.create_publisher(SplitFeatures, "mtl_split/features", REL)

    def tick() -> None:
        stamp = node.get_clock().now().to_msg()
        if features:  # server rounds: the captured features, re-stamped
            features[0].header.stamp = stamp
            features_pub.publish(features[0])
        else:
            image.header.stamp = info.header.stamp = stamp
            info_pub.publish(info)
            image_pub.publish(image)

    node.create_timer(0.1, tick)
    params = {"device": args.device, **({"model": args.model} if args.model else {})}
    edge_params = {**params, "fallback_after": 0.0}  # alone: the edge's own start, no fallback
    results = {}
    try:
        if "edge" in args.nodes:
            results["edge"] = time_restarts(node, "mtl_split_edge", edge_params, SplitFeatures,
                                            "mtl_split/features", args.repeats, args.timeout,
                                            node_env)
        if "server" in args.nodes:
            features.append(capture_features(node, edge_params, args.timeout, node_env))
            results["server"] = time_restarts(node, "mtl_split_server", params,
                                              Detection2DArray, "mtl_split/detections",
                                              args.repeats, args.timeout, node_env)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(f"\n{when}, {platform.node()}, {os.cpu_count()} cores, load {load:.1f}, "
          f"device {args.device}, {args.repeats} rounds (median, min, max in s)")
    print("| node | start -> ready | start -> first output |\n|---|---|---|")
    for name, rounds in results.items():
        print(f"| {name} | {summary(rounds, 'ready_s')} | {summary(rounds, 'first_output_s')} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": when, "load": load, "device": args.device, **results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
