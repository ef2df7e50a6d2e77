"""`mtl-split dataset ACTION`: make a ``folder`` data set from a robot's recording
(``from-bag``) and attach labels made in an annotation tool (``add-labels``).

Both stop cleanly on Ctrl-C / SIGTERM: nothing half-written stays behind, the summary line says
so, exit 0.
"""

from __future__ import annotations

import argparse
import sys

from mtl_split_core.cli.arguments import non_negative_float, output_folder, positive_int
from mtl_split_core.signals import StopSignals


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser(
        "from-bag", help="a rosbag2 (mcap or sqlite3) with RGB (+ depth, camera_info) -> a "
        "folder data set", description="Turn a robot's RGB-D recording into a folder data set "
        "(docs/TRAIN_YOUR_DATA.md): images PNG, depth uint16 mm PNG (REP 118 input: 32FC1 m or "
        "16UC1 mm, raw or image_transport compressedDepth png/rvl), intrinsics from "
        "camera_info.")
    b.add_argument("bag", help="rosbag2 folder or .mcap / .db3 file")
    b.add_argument("--image", required=True, metavar="TOPIC",
                   help="sensor_msgs/Image or CompressedImage topic")
    b.add_argument("--depth", default=None, metavar="TOPIC",
                   help="depth topic registered to the image: an Image (32FC1 m or 16UC1 mm) "
                   "or its compressedDepth transport (e.g. .../image_raw/compressedDepth)")
    b.add_argument("--camera-info", default=None, metavar="TOPIC",
                   help="sensor_msgs/CameraInfo of the image's camera (intrinsics)")
    b.add_argument("--every", type=positive_int, default=1, metavar="N",
                   help="keep every N-th synchronised frame (default 1)")
    b.add_argument("--tolerance", type=non_negative_float, default=0.02, metavar="SECONDS",
                   help="largest image/depth header stamp difference to pair (default 0.02)")
    b.add_argument("--split-by", choices=("time", "hash"), default="time",
                   help="time: first 80%% train, next 10%% val, last 10%% test (default); "
                   "hash: by a hash of the frame name")
    b.add_argument("--out", type=output_folder, required=True,
                   help="data set folder to create (must not exist or be empty)")
    a = sub.add_parser(
        "add-labels", help="attach boxes and masks from a COCO export (CVAT etc.)",
        description="Attach COCO boxes (and polygon/RLE masks -> semantic) to a folder data "
        "set, matching images by file name; categories by name.")
    a.add_argument("dir", help="folder data set (with index.json)")
    a.add_argument("--coco", required=True, metavar="FILE", help="COCO instances JSON")
    a.add_argument("--background", default=None, metavar="CLASS",
                   help="segmentation class for pixels no mask covers (default: ignore, 255)")


def run(args: argparse.Namespace) -> int:
    if args.action == "from-bag":
        return _from_bag(args)
    return _add_labels(args)


def _from_bag(args: argparse.Namespace) -> int:
    from mtl_split_core.data.from_bag import bag_to_folder

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} frames", end="", file=sys.stderr, flush=True)

    with StopSignals() as stop:
        report = bag_to_folder(args.bag, args.out, args.image, args.depth, args.camera_info,
                               every=args.every, tolerance=args.tolerance,
                               split_by=args.split_by, should_stop=stop.is_set,
                               progress=show if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(report.summary())
    return 0


def _add_labels(args: argparse.Namespace) -> int:
    from mtl_split_core.data.add_labels import add_coco_labels

    with StopSignals() as stop:
        report = add_coco_labels(args.dir, args.coco, background=args.background,
                                 should_stop=stop.is_set)
    print(report.summary())
    return 0
