"""What one features message costs the server's receiving thread, before and after the overload
work (docs/BENCHMARKS.md, "Overload"): rclpy's deserialization of the whole SplitFeatures vs
the envelope the arrival now reads (features_cdr), and a LinkFeedback answer built as an rclpy
message and serialized vs written as CDR bytes (feedback_cdr). Mean microseconds per call over
``--loops`` calls; the CI's tiny model's edge output (q8-zstd/1) with a camera_info.

    python bench/fleet/arrival_cost.py --loops 3000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def mean_us(call: Callable[[], object], loops: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(loops):
        call()
    return (time.perf_counter() - start) / loops * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", type=int, default=3000)
    args = ap.parse_args(argv)
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo

    from mtl_split.msg import LinkFeedback, SplitFeatures
    from mtl_split_core.runtime.edge import EdgeRunner
    from mtl_split_ros.features_cdr import read_envelope
    from mtl_split_ros.features_msg import packet_to_msg
    from mtl_split_ros.feedback_cdr import link_feedback_cdr
    from mtl_split_server.node import header_of
    sys.path.insert(0, str(ROOT / "test"))
    from support.ros_nodes import tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        edge = EdgeRunner.from_path(tiny_model(Path(tmp) / "tiny"), device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob",
                      k=[400.0, 0, 320, 0, 400.0, 240, 0, 0, 1])
    raw = serialize_message(packet_to_msg(edge(rgb), camera_info=info))
    env = read_envelope(raw)

    def feedback_message() -> bytes:
        return serialize_message(LinkFeedback(
            header=header_of(env), status=LinkFeedback.DROPPED, nbytes=env.nbytes,
            server_ms=1.0, split_index=env.split_index, codec=env.codec))

    rows = [("deserialize the SplitFeatures (rclpy)", lambda: deserialize_message(
                raw, SplitFeatures)),
            ("read its envelope (features_cdr)", lambda: read_envelope(raw)),
            ("LinkFeedback as an rclpy message, serialized", feedback_message),
            ("LinkFeedback as CDR bytes (feedback_cdr)", lambda: link_feedback_cdr(
                env.sec, env.nanosec, env.frame_id, LinkFeedback.DROPPED, 1.0, env.nbytes,
                env.split_index, env.codec))]
    print(f"message: {len(raw)} bytes, codec {env.codec}")
    print("| step | us per call |\n|---|---:|")
    for name, call in rows:
        print(f"| {name} | {mean_us(call, args.loops):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
