#!/usr/bin/env python3
"""Write the small sample bag shipped in samples/: the sim camera's view as a robot would
record it (image/compressed JPEG q90 + camera_info at 4 Hz), with the rosbags writer.

    python scripts/make_sample_bag.py samples/sim_camera --frames 20
"""

import argparse
import math

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mtl_split_core.sim.camera import SimCamera
from mtl_split_core.sim.scene import SimScene


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    store = get_typestore(Stores.ROS2_JAZZY)
    T = store.types
    cam = SimCamera(640, 480, 60.0)
    with SimScene(args.seed, 640, 480) as scene, \
            Writer(args.out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c_img = w.add_connection("/image/compressed", "sensor_msgs/msg/CompressedImage",
                                 typestore=store)
        c_info = w.add_connection("/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        a, b = scene.random_pose(), scene.random_pose()
        for i in range(args.frames):
            if i and i % 8 == 0:
                a, b = b, scene.random_pose()
            t = (i % 8) / 8
            dyaw = (b[3] - a[3] + math.pi) % (2 * math.pi) - math.pi
            pose = tuple(a[j] + (b[j] - a[j]) * t for j in range(3)) + (a[3] + dyaw * t,
                                                                        a[4] + (b[4] - a[4]) * t)
            frame = scene.render(pose, cam)
            ns = 1_700_000_000_000_000_000 + int(i * 1e9 / args.rate)
            header = T["std_msgs/msg/Header"](
                stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                frame_id="camera_optical_frame")
            jpg = cv2.imencode(".jpg", frame.rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            w.write(c_img, ns, store.serialize_cdr(T["sensor_msgs/msg/CompressedImage"](
                header=header, format="jpeg", data=jpg.ravel()), "sensor_msgs/msg/CompressedImage"))
            roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                        do_rectify=False)
            info = T["sensor_msgs/msg/CameraInfo"](
                header=header, height=480, width=640, distortion_model="plumb_bob",
                d=np.zeros(5), k=np.array(cam.k), r=np.eye(3).ravel(),
                p=np.array([cam.fx, 0, cam.cx, 0, 0, cam.fy, cam.cy, 0, 0, 0, 1, 0], float),
                binning_x=0, binning_y=0, roi=roi)
            w.write(c_info, ns, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))


if __name__ == "__main__":
    main()
