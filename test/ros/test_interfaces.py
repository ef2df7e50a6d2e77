"""Our interface definitions round-trip through rclpy's CDR serialization."""

import array

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from mtl_split.msg import Detection2D, Detection2DArray, SplitFeatures

pytestmark = pytest.mark.ros


def _split_features() -> SplitFeatures:
    msg = SplitFeatures()
    msg.header.frame_id = "cam"
    msg.header.stamp.sec = 42
    msg.header.stamp.nanosec = 7
    msg.camera_info.width = 640
    msg.camera_info.height = 480
    msg.camera_info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    msg.model_id = "m"
    msg.model_fingerprint = "deadbeef"
    msg.split_index = 2
    msg.source_height = 480
    msg.source_width = 640
    msg.transform = [0.5, 0.5, 0.0, 0.0]
    msg.codec = "q4-zstd/1"
    msg.shape = array.array("I", [16, 15, 20])
    msg.scale = array.array("f", np.linspace(0.1, 1.6, 16, dtype=np.float32))
    msg.offset = array.array("f", -np.arange(16, dtype=np.float32))
    msg.data = array.array("B", bytes(range(256)) * 10)
    msg.edge_ms = 12.5
    return msg


def test_split_features_round_trip():
    msg = _split_features()
    back = deserialize_message(serialize_message(msg), SplitFeatures)
    assert back == msg
    assert back.camera_info.k[4] == 500.0
    assert np.frombuffer(back.data, np.uint8).tobytes() == bytes(range(256)) * 10


def test_detection_array_round_trip():
    arr = Detection2DArray()
    arr.header.frame_id = "cam"
    for i in range(3):
        det = Detection2D(class_id=i, class_name=f"c{i}", score=0.5 + i / 8,
                          center_x=10.0 * i, center_y=5.0, size_x=4.0, size_y=3.0, depth=2.5)
        arr.detections.append(det)
    back = deserialize_message(serialize_message(arr), Detection2DArray)
    assert back == arr
    assert [d.class_name for d in back.detections] == ["c0", "c1", "c2"]


def test_transform_is_fixed_size_float32():
    msg = SplitFeatures()
    assert msg.transform.dtype == np.float32 and msg.transform.shape == (4,)
