"""A SplitFeatures message crosses from one OS process to another through Fast DDS intact."""

import hashlib
import json

import pytest

from support.procs import python_process, stop

pytestmark = pytest.mark.ros

PAYLOAD_BYTES = 200 * 1024

PUBLISHER = f"""
import array, time, random
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from mtl_split.msg import SplitFeatures
rclpy.init()
node = rclpy.create_node('feature_publisher')
qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
pub = node.create_publisher(SplitFeatures, 'mtl_split/features', qos)
msg = SplitFeatures()
msg.header.frame_id = 'camera_optical_frame'
msg.header.stamp.sec = 1234
msg.header.stamp.nanosec = 567890
msg.model_id = 'test'
msg.codec = 'q8-zstd/1'
msg.shape = array.array('I', [8, 100, 256])
msg.data = array.array('B', random.Random(7).randbytes({PAYLOAD_BYTES}))
while rclpy.ok():
    pub.publish(msg)
    rclpy.spin_once(node, timeout_sec=0.2)
"""

SUBSCRIBER = """
import hashlib, json, sys
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, DurabilityPolicy
from mtl_split.msg import SplitFeatures
rclpy.init()
node = rclpy.create_node('feature_subscriber')
got = []
qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
node.create_subscription(SplitFeatures, 'mtl_split/features', got.append, qos)
while not got:
    rclpy.spin_once(node, timeout_sec=0.5)
m = got[0]
data = np.frombuffer(m.data, dtype=np.uint8)
print('RESULT ' + json.dumps({
    'sha256': hashlib.sha256(data.tobytes()).hexdigest(), 'size': int(data.size),
    'frame_id': m.header.frame_id, 'sec': m.header.stamp.sec,
    'nanosec': m.header.stamp.nanosec, 'shape': list(m.shape), 'codec': m.codec}), flush=True)
"""


def test_split_features_cross_process_byte_equal():
    import random
    expected = hashlib.sha256(random.Random(7).randbytes(PAYLOAD_BYTES)).hexdigest()
    with python_process(SUBSCRIBER) as sub, python_process(PUBLISHER) as pub:
        try:
            sub.wait(timeout=90)
        finally:
            pub_log = stop(pub)
        out = stop(sub)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"subscriber printed no result:\n{out}\npublisher:\n{pub_log}"
    result = json.loads(lines[0][len("RESULT "):])
    assert result == {
        "sha256": expected, "size": PAYLOAD_BYTES, "frame_id": "camera_optical_frame",
        "sec": 1234, "nanosec": 567890, "shape": [8, 100, 256], "codec": "q8-zstd/1",
    }
