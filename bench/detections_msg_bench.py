"""The detections' cost per frame on the server's publisher thread: building the
vision_msgs/Detection2DArray message and serializing it (what ``Publisher.publish`` does with a
message object) vs writing its CDR bytes directly (mtl_split_ros/detections_cdr.py, what the
server publishes now), for 0 to 50 detections; the two alternate call by call.

    python bench/detections_msg_bench.py --out bench/results/detections_msg.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.serialization import serialize_message
from std_msgs.msg import Header

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_split_ros.detections_cdr import detection_array_cdr  # noqa: E402
from mtl_split_ros.msg_factory import RclpyMessages  # noqa: E402
from mtl_split_ros.outputs import detection_array  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--counts", default="0,5,15,50")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    messages = RclpyMessages()
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="camera_optical_frame")
    rng = np.random.default_rng(0)
    lines = ["# Detections per frame: message object + serialize vs CDR bytes", "",
             f"`python bench/detections_msg_bench.py --repeats {args.repeats}` — "
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.uname().nodename}, "
             f"{os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.1f}. Median (p10) "
             f"microseconds per frame over {args.repeats} calls each, alternating.", "",
             "| detections | message + serialize_message | CDR bytes | speed-up |",
             "|---:|---:|---:|---:|"]
    for n in (int(v) for v in args.counts.split(",")):
        boxes = rng.uniform(0, 600, (n, 4))
        boxes[:, 2:] += boxes[:, :2]
        ids, scores = rng.integers(0, 7, n), rng.uniform(0.3, 1, n).astype(np.float32)
        old: list[float] = []
        new: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            serialize_message(detection_array(messages, header, boxes, ids, scores))
            t1 = time.perf_counter()
            detection_array_cdr(header, boxes, ids, scores)
            t2 = time.perf_counter()
            old.append((t1 - t0) * 1e6)
            new.append((t2 - t1) * 1e6)
        lines.append(f"| {n} | {np.median(old):.0f} ({np.percentile(old, 10):.0f}) | "
                     f"{np.median(new):.0f} ({np.percentile(new, 10):.0f}) | "
                     f"{np.median(old) / np.median(new):.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
