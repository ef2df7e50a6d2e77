#!/usr/bin/env python3
"""Record the simulated camera as a robot would (image, camera_info and its depth camera as
gt/depth, 32FC1 metres) into rosbag2 files, one bag per scene seed — the input of the
fine-tuning demo (docs/TRAIN_YOUR_DATA.md):

    python bench/finetune/record_style.py --style novel --seeds 1 2 3 4 --frames 150 \
        --out /tmp/novel_bags

Real processes over DDS: the sim camera node and `mtl-split record` (which stops after
``--frames`` messages on each of the three topics).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mtl_split_tools.node_processes import node_command, start, stop_all

TOPICS = ("/image", "/camera_info", "/gt/depth")


def record(seed: int, args: argparse.Namespace, out: Path) -> Path:
    bag = out / f"{args.style}_seed{seed}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    camera = start(node_command("sim_camera_node", {
        "style": args.style, "seed": seed, "frames": args.frames, "rate": args.rate,
        "width": args.width, "height": args.height, "min_subscribers": 1,
        "publish_ground_truth": True}), logs / f"camera_{seed}.log")
    try:
        subprocess.run([sys.executable, "-m", "mtl_split_tools.cli", "record", str(bag),
                        "--topics", *TOPICS, "--max-messages", str(args.frames * len(TOPICS)),
                        "--duration", str(args.frames / args.rate * 4 + 60),
                        "--discovery-timeout", "60"], check=True)
    finally:
        stop_all([camera])
    return bag


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", default="novel")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--frames", type=int, default=150, help="frames per seed")
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    for seed in args.seeds:
        print(f"recorded {record(seed, args, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
