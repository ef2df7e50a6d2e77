"""Per-message CPU of the transport choices on this host, real rclpy over DDS between processes.

(1) Publish: the publishing thread's CPU (``time.thread_time``) per ``Publisher.publish`` with
one subscriber in another process: a LinkFeedback (the server's answer per frame), the server's
image outputs as rclpy messages (``outputs.image``) vs as CDR bytes (``image_cdr``), at the
default model's output size (320x240) and the source size (640x480).
(2) Receive: a subscriber process's CPU per 640x480 rgb8 camera image at 30 fps, typed
(``sensor_msgs/Image``) vs ``raw=True`` (serialized bytes, what a hand-written CDR parser would
start from). (3) Admission, in this process: the server's per-message chain for the default
model's packet of a bench frame: rclpy deserialising the SplitFeatures bytes, ``msg_to_packet``
(field checks), ``ServerRunner.admit`` (packet checks, zstd, dequantise), and the worker's
whole unpack (``packet_of_serialized``: bytes -> checked packet, what a tree on PYTHONPATH
first does; ``read_features`` where the tree has it).

    python bench/fleet/message_cost.py --out bench/results/latency_cpu/message_cost.json
    PYTHONPATH=/tmp/before python bench/fleet/message_cost.py --parts admission --model M
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _init(name: str):
    import rclpy
    from rclpy.node import Node
    rclpy.init()
    return rclpy, Node(name)


def subscriber(seconds: float) -> int:
    """Subscribes the publish test's topics until killed."""
    from sensor_msgs.msg import Image

    from mtl_split.msg import LinkFeedback
    from mtl_split_ros.qos import qos_from_name
    rclpy, node = _init("cost_sub")
    qos = qos_from_name("reliable", depth=5)
    node.create_subscription(LinkFeedback, "cost/feedback", lambda m: None, qos)
    node.create_subscription(Image, "cost/image", lambda m: None, qos)
    _spin(rclpy, node, seconds)
    return 0


def _spin(rclpy, node, seconds: float) -> None:
    """Spin until ``seconds`` pass or the process is told to stop (SIGTERM: exit 0)."""
    from rclpy.executors import ExternalShutdownException
    end = time.time() + seconds
    try:
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (ExternalShutdownException, KeyboardInterrupt):
        pass


def camera(seconds: float) -> int:
    """Publishes a 640x480 rgb8 image at 30 fps until killed."""
    from sensor_msgs.msg import Image

    from mtl_split_ros.image_msg import fill_image
    from mtl_split_ros.qos import qos_from_name
    rclpy, node = _init("cost_camera")
    pub = node.create_publisher(Image, "cost/camera", qos_from_name("reliable", depth=1))
    image = fill_image(Image(), np.zeros((480, 640, 3), np.uint8), "rgb8")
    node.create_timer(1 / 30, lambda: pub.publish(image))
    _spin(rclpy, node, seconds)
    return 0


def receiver(raw: bool, warmup: float, seconds: float) -> int:
    """Prints the process CPU ms per received camera image."""
    from sensor_msgs.msg import Image

    from mtl_split_ros.qos import qos_from_name
    rclpy, node = _init("cost_receiver")
    count = [0]

    def on_image(msg) -> None:
        count[0] += 1
        np.frombuffer(msg if raw else msg.data, np.uint8)  # what the edge reads first

    node.create_subscription(Image, "cost/camera", on_image, qos_from_name("reliable", depth=1),
                             raw=raw)
    end = time.time() + warmup
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    c0, n0, end = time.process_time(), count[0], time.time() + seconds
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    frames = count[0] - n0
    print(json.dumps({"frames": frames,
                      "cpu_ms_per_frame": (time.process_time() - c0) * 1e3 / max(frames, 1)}))
    return 0


def publish_costs(repeats: int) -> dict[str, float]:
    """thread CPU ms (median) per publish of each message, one subscriber matched."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from mtl_split.msg import LinkFeedback
    from mtl_split_ros.image_cdr import image_cdr
    from mtl_split_ros.msg_factory import RclpyMessages
    from mtl_split_ros.outputs import image
    from mtl_split_ros.qos import qos_from_name
    rclpy, node = _init("cost_pub")
    qos = qos_from_name("reliable", depth=5)
    feedback = node.create_publisher(LinkFeedback, "cost/feedback", qos)
    images = node.create_publisher(Image, "cost/image", qos)
    while not (feedback.get_subscription_count() and images.get_subscription_count()):
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)
    factory, header = RclpyMessages(), Header(frame_id="camera_optical_frame")
    cases = {"LinkFeedback (built + published)": (feedback, lambda: LinkFeedback(
        status=1, nbytes=2256, server_ms=1.0, codec="q4-zstd/1"))}
    for (h, w), dtype, encoding in (((240, 320), np.float32, "32FC1"),
                                    ((240, 320), np.uint8, "mono8"),
                                    ((480, 640), np.float32, "32FC1")):
        pixels = np.random.default_rng(0).uniform(0, 10, (h, w)).astype(dtype)
        check = deserialize_message(image_cdr(header, pixels, encoding), Image)
        assert check == image(factory, header, pixels, encoding)  # the same message
        cases[f"Image {w}x{h} {encoding}: message"] = (
            images, lambda p=pixels, e=encoding: image(factory, header, p, e))
        cases[f"Image {w}x{h} {encoding}: CDR bytes"] = (
            images, lambda p=pixels, e=encoding: image_cdr(header, p, e))
    out: dict[str, list[float]] = {}
    for _ in range(2):  # interleaved twice: drift on a shared host hits every case alike
        for name, (pub, build) in cases.items():
            cpu = []
            for _ in range(repeats):
                start = time.thread_time()
                pub.publish(build())
                cpu.append(time.thread_time() - start)
                time.sleep(1 / 60)
            out.setdefault(name, []).append(float(np.median(cpu)) * 1e3)
    return {k: round(float(np.mean(v)), 4) for k, v in out.items()}


def admission_costs(repeats: int, model: str | None = None) -> dict[str, float]:
    """CPU ms (process time, mean of ``repeats``) of each step of the server's admission
    (``model``: a model folder; None = the packaged default)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo

    from mtl_split.msg import SplitFeatures
    from mtl_split_core.plan.profile import load_jpeg_frames
    from mtl_split_core.runtime.edge import EdgeRunner
    from mtl_split_core.runtime.server import ServerRunner
    from mtl_split_core.temporal_codec import TemporalDecoder
    from mtl_split_ros import features_cdr
    from mtl_split_ros.features_msg import msg_to_packet, packet_of_serialized, packet_to_msg
    edge = EdgeRunner.from_path(model, device="cpu")
    server = ServerRunner(edge.model, edge.card, device="cpu")
    frames = Path(__file__).resolve().parents[1] / "frames.npz"
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob",
                      k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    msg = packet_to_msg(edge(load_jpeg_frames(frames)[0]), None, info)
    data, packet, references = serialize_message(msg), msg_to_packet(msg), TemporalDecoder()

    def cost(step) -> float:
        start = time.process_time()
        for _ in range(repeats):
            step()
        return round((time.process_time() - start) * 1e3 / repeats, 4)
    costs = {"message bytes": len(data),
             "deserialize SplitFeatures": cost(lambda: deserialize_message(data, SplitFeatures)),
             "msg_to_packet (field checks)": cost(lambda: msg_to_packet(msg)),
             "packet_of_serialized (bytes -> checked packet)": cost(
                 lambda: packet_of_serialized(data)),
             "ServerRunner.admit (checks, zstd, dequantise)": cost(
                 lambda: server.admit(packet, msg.camera_info.k, references))}
    read = getattr(features_cdr, "read_features", None)  # not in older trees
    if read is not None:
        costs["read_features (whole message from CDR)"] = cost(lambda: read(data))
    return costs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", default="run",
                    choices=("run", "subscriber", "camera", "typed", "raw"))
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parts", default="publish,receive,admission",
                    help="which measurements, comma-separated (publish, receive, admission)")
    ap.add_argument("--model", default=None, help="model folder of the admission part "
                    "(default: the packaged model)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.role == "subscriber":
        return subscriber(600)
    if args.role == "camera":
        return camera(600)
    if args.role in ("typed", "raw"):
        return receiver(args.role == "raw", args.warmup, args.seconds)
    me = [sys.executable, str(Path(__file__).resolve())]
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    publish: dict[str, float] = {}
    if "publish" in parts:
        helper = subprocess.Popen(me + ["--role", "subscriber"], env=env)
        try:
            publish = publish_costs(args.repeats)
        finally:
            helper.terminate()
            helper.wait(10)
    receive: dict[str, list[float]] = {}
    if "receive" in parts:
        helper = subprocess.Popen(me + ["--role", "camera"], env=env)
        try:
            for _ in range(2):
                for kind in ("typed", "raw"):
                    line = subprocess.run(me + ["--role", kind, "--seconds", str(args.seconds),
                                                "--warmup", str(args.warmup)], env=env,
                                          capture_output=True, text=True, timeout=120).stdout
                    receive.setdefault(kind, []).append(
                        round(json.loads(line.strip().splitlines()[-1])["cpu_ms_per_frame"], 3))
        finally:
            helper.terminate()
            helper.wait(10)
    admission = admission_costs(args.repeats * 10, args.model) if "admission" in parts else {}
    result = {"meta": {"command": " ".join(["python bench/fleet/message_cost.py",
                                            *sys.argv[1:]]),
                       "machine": f"{platform.node()}: {os.cpu_count()} CPUs",
                       "date": datetime.date.today().isoformat()},
              "publish_thread_cpu_ms_median": publish,
              "receive_640x480_rgb8_process_cpu_ms_per_frame": receive,
              "admission_cpu_ms_default_model" if args.model is None
              else "admission_cpu_ms": admission}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
