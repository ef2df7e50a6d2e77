"""detections_cdr: the serialized Detection2DArray is the message outputs.detection_array
builds (deserialized back field by field; the same length as rclpy's serialization, which
differs only in its uninitialised padding bytes), for any count, class id and frame id."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from mtl_split_ros.detections_cdr import detection_array_cdr
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.outputs import detection_array

MESSAGES = RclpyMessages()


@pytest.mark.parametrize("n, frame_id", [(0, ""), (1, "a"), (3, "cam"), (15, "r7/camera"),
                                         (50, "xyz_optical_frame")])
def test_the_bytes_are_the_message(n, frame_id):
    rng = np.random.default_rng(n)
    header = Header(stamp=Time(sec=int(rng.integers(0, 2**31)),
                               nanosec=int(rng.integers(0, 10**9))), frame_id=frame_id)
    boxes = rng.uniform(0, 600, (n, 4))
    boxes[:, 2:] += boxes[:, :2]
    class_ids = rng.integers(0, 1200, n)  # 1 to 4 characters of class id text
    scores = rng.uniform(0, 1, n).astype(np.float32)
    want = detection_array(MESSAGES, header, boxes, class_ids, scores)
    got = detection_array_cdr(header, boxes, class_ids, scores)
    assert len(got) == len(serialize_message(want))
    back = deserialize_message(got, Detection2DArray)
    assert back == want
    assert [d.results[0].hypothesis.class_id for d in back.detections] == \
        [str(c) for c in class_ids]


def test_arrays_of_different_lengths_give_the_message_of_the_shortest():
    """As outputs.detection_array (its zip): the count says what is written."""
    header = Header(stamp=Time(sec=1, nanosec=2), frame_id="cam")
    boxes, class_ids, scores = np.ones((4, 4)), np.arange(3), np.ones(5, np.float32)
    back = deserialize_message(detection_array_cdr(header, boxes, class_ids, scores),
                               Detection2DArray)
    assert back == detection_array(MESSAGES, header, boxes, class_ids, scores)
    assert len(back.detections) == 3
