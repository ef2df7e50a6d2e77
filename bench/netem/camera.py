"""A robot camera for the link benchmark: publishes the bench frames' JPEG bytes at a fixed rate.

``image/compressed`` (sensor_msgs/CompressedImage, jpeg) and ``camera_info``, stamped with the
wall clock at publish time, so a subscriber on the same host (any namespace) reads end-to-end
latency as ``arrival - stamp``. The JPEGs are encoded in advance, like a camera that delivers
MJPEG: encoding cost is not part of either pipeline. ``--stamps-out``: on exit, which frame went out
with which stamp (JSON ``[[stamp_ns, frame index], ...]``), so outputs can be scored against
that frame's ground truth.

    python bench/netem/camera.py FRAMES.npz --rate 30 --qos reliable [--stamps-out S.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from frames import BenchFrames  # noqa: E402

from mtl_split_ros.node_main import run_node  # noqa: E402
from mtl_split_ros.qos import QOS_PROFILES, qos_from_name  # noqa: E402


class BenchCamera(Node):
    def __init__(self, frames: BenchFrames, rate: float, qos: str,
                 stamps_out: Path | None = None):
        super().__init__("bench_camera")
        self.frames, self.stamps_out = frames, stamps_out
        self.stamps: list[tuple[int, int]] = []
        self.jpegs = [frames.jpeg(i) for i in range(frames.count)]
        self.count = 0
        self.pub_image = self.create_publisher(CompressedImage, "image/compressed",
                                               qos_from_name(qos))
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos_from_name(qos))
        self.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        header = CompressedImage().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = "camera_optical_frame"
        index = self.count % len(self.jpegs)
        if self.stamps_out is not None:
            self.stamps.append((header.stamp.sec * 1_000_000_000 + header.stamp.nanosec, index))
        info = CameraInfo(header=header, width=self.frames.width, height=self.frames.height,
                          distortion_model="plumb_bob", k=self.frames.k)
        self.pub_info.publish(info)
        self.pub_image.publish(CompressedImage(header=header, format="jpeg",
                                               data=self.jpegs[index]))
        self.count += 1

    def close(self) -> None:
        if self.stamps_out is not None:
            tmp = self.stamps_out.with_suffix(".part")
            tmp.write_text(json.dumps(self.stamps))
            tmp.replace(self.stamps_out)  # never half-written
        print(f"published {self.count} frames", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames", type=Path)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--qos", default="reliable", choices=QOS_PROFILES)
    ap.add_argument("--stamps-out", type=Path, help="JSON of [stamp_ns, frame index] on exit")
    args = ap.parse_args()
    frames = BenchFrames(args.frames)
    return run_node(lambda: BenchCamera(frames, args.rate, args.qos, args.stamps_out))


if __name__ == "__main__":
    sys.exit(main())
