"""Real rosbag2 files of a simulated RGB-D camera, written with the rosbags writer: what a
robot records (image + depth + camera_info), with known pixels, depth and intrinsics."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_KILTED)
T = STORE.types
NS = 1_000_000_000
T0 = 1_700_000_000 * NS  # a realistic wall-clock stamp
PERIOD = 100_000_000     # 10 Hz


@dataclass(frozen=True)
class SimFrame:
    rgb: np.ndarray    # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = nothing hit
    k: list[float]


@functools.lru_cache(maxsize=8)
def sim_frames(count: int, width: int = 64, height: int = 48, seed: int = 3
               ) -> tuple[SimFrame, ...]:
    """``count`` renders of one simulated scene (cached: rendering is the slow part)."""
    from mtl_split_core.sim.scene import SimScene
    with SimScene(seed, width, height) as scene:
        camera = scene.camera()
        frames = []
        for _ in range(count):
            f = scene.render(camera=camera)
            frames.append(SimFrame(f.rgb, f.depth, list(camera.k)))
    return tuple(frames)


def stamp(ns: int):
    return T["builtin_interfaces/msg/Time"](sec=ns // NS, nanosec=ns % NS)


def header(ns: int, frame_id: str = "camera_optical_frame"):
    return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id=frame_id)


def image_msg(ns: int, pixels: np.ndarray, encoding: str, step_padding: int = 0,
              bigendian: bool = False, frame_id: str = "camera_optical_frame"):
    """sensor_msgs/Image of ``pixels`` (H, W[, C]); ``step_padding`` bytes at each row end."""
    pixels = np.ascontiguousarray(pixels)
    if bigendian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    if step_padding:
        rows = np.hstack([rows, np.full((rows.shape[0], step_padding), 7, np.uint8)])
    return T["sensor_msgs/msg/Image"](
        header=header(ns, frame_id), height=pixels.shape[0], width=pixels.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian), step=rows.shape[1], data=np.ascontiguousarray(rows).ravel())


def compressed_msg(ns: int, rgb: np.ndarray, fmt: str = "png"):
    import cv2
    ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return T["sensor_msgs/msg/CompressedImage"](header=header(ns), format=fmt, data=buf.ravel())


def camera_info_msg(ns: int, k: list[float], width: int, height: int):
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(ns), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.asarray(k, np.float64), r=np.eye(3).ravel(),
        p=np.zeros(12), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                  do_rectify=False))


def depth_32fc1(depth: np.ndarray) -> np.ndarray:
    """Metres with REP 118 invalid values: NaN where nothing was hit."""
    out = depth.astype(np.float32).copy()
    out[depth <= 0] = np.nan
    return out


def depth_16uc1(depth: np.ndarray) -> np.ndarray:
    return np.round(depth * 1000.0).astype(np.uint16)


def write_bag(path, messages, storage: str = "mcap"):
    """messages: iterable of (topic, msgtype, receive time ns, message); written in time
    order (as a recorder would)."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, msgtype, t, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=STORE)
            writer.write(conns[topic], t, STORE.serialize_cdr(msg, msgtype))
    return path


def rgbd_messages(frames, depth_encoding: str = "32FC1", depth_offset_ns: int = 0,
                  image_encoding: str = "rgb8", prefix: str = "/camera"):
    """Image, depth and camera_info messages of ``frames`` at 10 Hz; the depth header stamps
    are ``depth_offset_ns`` later than the image's (an unsynchronised depth camera)."""
    out = []
    for i, f in enumerate(frames):
        t = T0 + i * PERIOD
        h, w = f.depth.shape
        rgb = {"rgb8": f.rgb, "bgr8": f.rgb[..., ::-1]}[image_encoding]
        out.append((f"{prefix}/image_raw", "sensor_msgs/msg/Image", t,
                    image_msg(t, rgb, image_encoding)))
        depth = depth_32fc1(f.depth) if depth_encoding == "32FC1" else depth_16uc1(f.depth)
        td = t + depth_offset_ns
        out.append((f"{prefix}/depth/image_raw", "sensor_msgs/msg/Image", td + 1000,
                    image_msg(td, depth, depth_encoding)))
        out.append((f"{prefix}/camera_info", "sensor_msgs/msg/CameraInfo", t + 2000,
                    camera_info_msg(t, f.k, w, h)))
    return out
