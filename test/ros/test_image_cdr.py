"""image_cdr: the serialized Image is the message outputs.image builds (deserialized back field
by field; the same length as rclpy's serialization, which differs only in its uninitialised
padding bytes), for every encoding the outputs use, odd sizes and frame ids of every
alignment."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtl_split_ros.image_cdr import image_cdr
from mtl_split_ros.msg_factory import RclpyMessages
from mtl_split_ros.outputs import image

MESSAGES = RclpyMessages()


@pytest.mark.parametrize("shape, dtype, encoding, frame_id", [
    ((96, 128), np.uint8, "mono8", ""),
    ((97, 131), np.float32, "32FC1", "a"),
    ((5, 7, 3), np.uint8, "rgb8", "ab"),
    ((240, 320), np.float32, "32FC1", "camera_optical_frame"),
    ((1, 1), np.uint8, "mono8", "r7/cam"),
    ((0, 4), np.uint8, "mono8", "abc"),
])
def test_the_bytes_are_the_message(shape, dtype, encoding, frame_id):
    rng = np.random.default_rng(len(frame_id))
    header = Header(stamp=Time(sec=int(rng.integers(0, 2**31)),
                               nanosec=int(rng.integers(0, 10**9))), frame_id=frame_id)
    pixels = (rng.uniform(0, 255, shape)).astype(dtype)
    want = image(MESSAGES, header, pixels, encoding)
    got = image_cdr(header, pixels, encoding)
    assert len(got) == len(serialize_message(want))
    assert deserialize_message(got, Image) == want


def test_a_strided_view_is_written_as_its_pixels():
    """A non-contiguous array (a crop, every other column) gives the pixels it shows."""
    pixels = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)[2:9, ::2]
    header = Header(frame_id="cam")
    back = deserialize_message(image_cdr(header, pixels, "32FC1"), Image)
    assert (back.height, back.width, back.step) == (7, 5, 20)
    assert np.array_equal(np.frombuffer(bytes(back.data), np.float32).reshape(7, 5), pixels)
