"""Run by bundle.sh with python3.12 -S and only the bundle (+ numpy) on the path: rclpy starts
with the bundled rmw, this package's messages import, and a SplitFeatures crosses DDS."""

from __future__ import annotations

import array
import os
import sys
import time
from pathlib import Path

import rclpy
import yaml  # noqa: F401 - the nodes' parameter files need it
import zstandard  # noqa: F401 - the codec needs it
from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401
from rclpy.utilities import get_rmw_implementation_identifier
from sensor_msgs.msg import CameraInfo, Image  # noqa: F401
from vision_msgs.msg import Detection2DArray  # noqa: F401
from visualization_msgs.msg import MarkerArray  # noqa: F401

from mtl_split.msg import SplitFeatures  # noqa: F401
from mtl_split_ros.qos import qos_from_name  # this package's Python (the torch-free part)


def main() -> int:
    prefix = Path(os.environ["COLCON_PREFIX_PATH"].split(":")[0])
    for exe in ("server_node", "edge_node"):  # what bench/fleet/run.py starts
        if not (prefix / "mtl_split" / "lib" / "mtl_split" / exe).is_file():
            print(f"bundle check: {exe} not in {prefix}", file=sys.stderr)
            return 1
    rclpy.init()
    node = rclpy.create_node("bundle_check")
    got: list[SplitFeatures] = []
    qos = qos_from_name("reliable", depth=10)
    node.create_subscription(SplitFeatures, "bundle_check/features", got.append, qos)
    pub = node.create_publisher(SplitFeatures, "bundle_check/features", qos)
    msg = SplitFeatures(codec="q4-zstd/1", shape=array.array("I", [8, 15, 20]))
    msg.data = array.array("B", bytes(range(64)))
    deadline = time.time() + 20
    while not got and time.time() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.2)
    node.destroy_node()
    rclpy.shutdown()
    if not got or bytes(got[0].data) != bytes(range(64)):
        print("bundle check: no SplitFeatures came back over DDS", file=sys.stderr)
        return 1
    print(f"bundle check ok: Python {sys.version.split()[0]}, "
          f"{get_rmw_implementation_identifier()}, rclpy from {rclpy.__file__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
