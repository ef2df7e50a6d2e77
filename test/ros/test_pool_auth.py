"""A pool with ``auth_key_file``: a real server and an edge node share a key; a forged server
announces far more room (the real model's fingerprint, a steady id, valid bounds) signed with
a wrong key, and unsigned: the robot never leaves the real server, and the edge counts the
forgeries as rejected (``rejected_pool_auth_forged``, ``rejected_pool_auth_missing``)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import ServerAnnouncement
from mtl_split_core.auth import KeyRing, Signer
from mtl_split_core.runtime.model_files import read_model_card_param
from mtl_split_core.runtime.pool_announcement import Announcement, default_input_topic
from mtl_split_ros import pool_msg
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process, stop
from support.ros_nodes import node_args

pytestmark = [pytest.mark.ros, pytest.mark.slow]
KEY, WRONG = bytes([1]) * 32, bytes([2]) * 32


def test_forged_announcements_do_not_attract_a_robot_of_an_authenticated_pool(
        ros_node, model_dir, tmp_path):
    ros = ros_node
    keys = tmp_path / "keys"
    keys.write_text(f"k1: {KEY.hex()}\n")
    os.chmod(keys, 0o600)
    cam = ros.create_publisher(Image, "/r1/image", qos_from_name("reliable"))
    got: list[float] = []
    ros.create_subscription(Detection2DArray, "/r1/mtl_split/detections",
                            lambda m: got.append(time.monotonic()),
                            qos_from_name("reliable", depth=10))
    edge: dict = {}
    ros.create_subscription(DiagnosticArray, "/diagnostics", lambda m: edge.update(
        {kv.key: kv.value for s in m.status if s.name == "/r1/mtl_split_edge: edge"
         for kv in s.values}), qos_profile_sensor_data)
    forged_pub = ros.create_publisher(ServerAnnouncement, "/mtl_split/pool", pool_msg.POOL_QOS)
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), np.uint8)
    image = Image(height=96, width=128, encoding="rgb8", step=128 * 3, data=rgb.tobytes())
    fingerprint = read_model_card_param(model_dir)["fingerprint"]
    wrong = Signer(KeyRing({"k1": WRONG}))  # the right key id, another secret

    def spin(seconds, until=None, forge=False):
        end, sequence = time.monotonic() + seconds, 1
        while time.monotonic() < end:
            image.header.stamp = ros.get_clock().now().to_msg()
            cam.publish(image)
            if forge:
                ann = Announcement(server_id="forged", sequence=sequence,
                                   input_topic=default_input_topic("forged"),
                                   fingerprints=(fingerprint,), capacity_fps=1e4)
                stamp = ros.get_clock().now().to_msg()
                forged_pub.publish(pool_msg.announcement_to_msg(ann, stamp, wrong))
                forged_pub.publish(pool_msg.announcement_to_msg(ann, stamp))  # unsigned
                sequence += 1
            step_end = time.monotonic() + 0.1
            while time.monotonic() < step_end:
                rclpy.spin_once(ros, timeout_sec=0.01)
            for p in procs:
                assert p.poll() is None, stop(p)
            if until is not None and until():
                return True
        return until is None

    server = node_args("mtl_split_server", model=model_dir, device="cpu", server_id="real",
                       capacity_fps=100.0, auth_key_file=str(keys), max_detections=5)
    robot = [*node_args("mtl_split_edge", model=model_dir, device="cpu", pool=True,
                        auth_key_file=str(keys), diagnostics_period=0.25), "-r", "__ns:=/r1"]
    with python_process(server) as srv, python_process(robot) as rob:
        procs = (srv, rob)
        assert spin(90, lambda: edge.get("pool_server") == "real" and got), edge
        spin(3.0, forge=True)
        spin(0.5)  # a diagnostics period after the last forgery
        assert edge["pool_server"] == "real" and edge["pool_moves"] == "0", edge
        assert edge["link_mode"] == "remote" and edge["fallbacks"] == "0", edge
        assert int(edge.get("rejected_pool_auth_forged", 0)) > 10, edge
        assert int(edge.get("rejected_pool_auth_missing", 0)) > 10, edge
        assert edge["pool_servers_known"] == "1", edge
        assert time.monotonic() - got[-1] < 0.5  # still served
        logs = stop(srv) + stop(rob)
    assert "Traceback" not in logs, logs[-3000:]
