"""feedback_cdr: the bytes deserialize to the LinkFeedback with the same fields, for frame ids
and codecs of every alignment, and are as long as rclpy's serialization."""

import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from mtl_split.msg import LinkFeedback
from mtl_split_ros.feedback_cdr import link_feedback_cdr


@pytest.mark.parametrize("frame_id, codec", [
    ("", ""), ("a", "q4-zstd/1"), ("ab", "t30-s20-q4-zstd/1"), ("abc", "f16"),
    ("r17_camera", "jpeg-q80/1"),
])
@pytest.mark.parametrize("status", [LinkFeedback.SERVED, LinkFeedback.DROPPED,
                                    LinkFeedback.NEED_KEYFRAME])
def test_the_bytes_are_the_message(frame_id, codec, status):
    want = LinkFeedback(header=Header(stamp=Time(sec=1_700_000_001, nanosec=999_999_999),
                                      frame_id=frame_id),
                        status=status, server_ms=12.5, nbytes=2792, split_index=255,
                        codec=codec)
    got = link_feedback_cdr(1_700_000_001, 999_999_999, frame_id, status, 12.5, 2792, 255,
                            codec)
    assert len(got) == len(serialize_message(want))
    assert deserialize_message(got, LinkFeedback) == want
