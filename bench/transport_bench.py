"""Camera images between two processes on one host: Fast DDS shared memory vs UDP (issue 17).

The nodes' restart time after a crash depends on the transport (docs/BENCHMARKS.md, "Start-up
and restart"); this measures what UDP costs for the large messages a node gets on the robot:
a publisher process (a camera driver with the default transports) sends rgb8 images at
``--rate`` to a subscriber process (the edge's side) whose transports are set per case. Per case
and size: delivered fps, latency p50/p99 (header stamp -> arrival, one host, one clock) and CPU
per process.

    python bench/transport_bench.py --sizes 640x480,1280x960,1920x1080 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mtl_split_tools.node_processes import cpu_seconds

PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"
CASES = {  # name -> the subscriber's environment (the publisher keeps the defaults)
    "shared memory (default)": {},
    "UDPv4 (FASTDDS_BUILTIN_TRANSPORTS)": {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
    "config/fastdds.xml (UDPv4, 4 MB buffers)": {"FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE)},
}

PUBLISHER = """
import sys, time, numpy as np, rclpy
from sensor_msgs.msg import Image
from mtl_split_ros.qos import qos_from_name
w, h, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("transport_bench_camera")
pub = node.create_publisher(Image, "image", qos_from_name("reliable", depth=5))
msg = Image(width=w, height=h, encoding="rgb8", step=3 * w)
msg.data = np.random.default_rng(0).integers(0, 255, w * h * 3, dtype=np.uint8).tobytes()
def tick():
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
node.create_timer(1.0 / rate, tick)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""

SUBSCRIBER = """
import json, sys, time, rclpy
from sensor_msgs.msg import Image
from mtl_split_ros.qos import qos_from_name
seconds, out = float(sys.argv[1]), sys.argv[2]
rclpy.init()
node = rclpy.create_node("transport_bench_edge")
arrivals = []
def on_image(m):
    arrivals.append((m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, time.time_ns()))
node.create_subscription(Image, "image", on_image, qos_from_name("reliable", depth=5))
while not arrivals:
    rclpy.spin_once(node, timeout_sec=0.1)
settle = time.time() + 2.0
while time.time() < settle:
    rclpy.spin_once(node, timeout_sec=0.05)
t_start, cpu0 = time.time(), time.process_time()
end = t_start + seconds
while time.time() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
json.dump({"arrivals": [a for a in arrivals if a[1] >= t_start * 1e9], "seconds": seconds,
           "cpu_pct": 100 * (time.process_time() - cpu0) / seconds}, open(out, "w"))
"""


def run_case(env_extra: dict, w: int, h: int, rate: float, seconds: float, out: str) -> dict:
    env = dict(os.environ)
    pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(w), str(h), str(rate)],
                           env=env, start_new_session=True)
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(seconds), out],
                           env={**env, **env_extra}, start_new_session=True)
    try:
        # The publisher's CPU from /proc over roughly the subscriber's window (it reports its own).
        time.sleep(4.0)
        c0, t0 = cpu_seconds(pub.pid), time.monotonic()
        sub.wait(timeout=seconds + 60)
        c1, t1 = cpu_seconds(pub.pid), time.monotonic()
    finally:
        for p in (pub, sub):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
    data = json.load(open(out))
    lat = np.array([(a - s) / 1e6 for s, a in data["arrivals"]])
    return {"fps": len(lat) / data["seconds"],
            "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if len(lat) else None,
            "publisher_cpu_pct": 100 * (c1 - c0) / (t1 - t0), "subscriber_cpu_pct": data["cpu_pct"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="640x480,1280x960,1920x1080")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    try:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes: expected WxH[,WxH...], got {args.sizes!r}")
    rows = []
    for w, h in sizes:
        for name, env in CASES.items():
            out = f"/tmp/transport_bench_{os.getpid()}.json"
            r = run_case(env, w, h, args.rate, args.seconds, out)
            rows.append({"size": f"{w}x{h}", "case": name, **r})
            print(rows[-1], flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{when}, {platform.node()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}, rgb8 at {args.rate:g} fps, reliable, {args.seconds:g} s")
    print("| image | subscriber transport | delivered fps | latency p50 / p99 ms | "
          "CPU % publisher / subscriber |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['case']} | {r['fps']:.1f} | {r['latency_ms_p50']:.1f} / "
              f"{r['latency_ms_p99']:.1f} | {r['publisher_cpu_pct']:.0f} / "
              f"{r['subscriber_cpu_pct']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": when, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
