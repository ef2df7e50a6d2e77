"""Write test bags with the rosbags writer (not our recorder)."""

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types


def header(i, frame="cam"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=100 + i,
                                                                           nanosec=i * 1000),
                                    frame_id=frame)


def image(i, encoding="rgb8", size=(80, 60)):
    rgb = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), np.uint8)
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0],
              "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
              }[encoding]
    pixels = np.ascontiguousarray(pixels)
    return T["sensor_msgs/msg/Image"](header=header(i), height=pixels.shape[0],
                                      width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                                      step=pixels.strides[0], data=pixels.ravel())


def compressed(i, fmt="jpeg"):
    rgb = np.random.default_rng(i).integers(0, 256, (60, 80, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", rgb)
    return T["sensor_msgs/msg/CompressedImage"](header=header(i), format=fmt,
                                                data=buf.ravel())


def write_bag(path, topics: dict, storage="mcap", period_ns=100_000_000):
    """topics: name -> (msgtype, [messages]); message j of every topic at t0 + j * period."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as w:
        conns = {name: w.add_connection(name, mt, typestore=STORE)
                 for name, (mt, _) in topics.items()}
        events = [(j * period_ns, name, m) for name, (mt, msgs) in topics.items()
                  for j, m in enumerate(msgs)]
        for t, name, m in sorted(events, key=lambda e: e[0]):
            w.write(conns[name], 1_000_000_000 + t,
                    STORE.serialize_cdr(m, topics[name][0]))
    return path
