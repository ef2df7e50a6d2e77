"""publish_bytes: CDR bytes written through rcl with the GIL released arrive in another process
as the same message; message objects still go through rclpy; a destroyed publisher refuses
as rclpy's does; the library lookup reads /proc/self/maps."""

import pytest
from rclpy.serialization import deserialize_message
from std_msgs.msg import UInt8MultiArray

from mtl_split_ros import publish_bytes
from support.procs import python_process, stop
from support.ros_nodes import wait_for

TOPIC = "publish_bytes_test"
PUBLISHER = f"""
import time
import rclpy
from rclpy.serialization import serialize_message
from std_msgs.msg import UInt8MultiArray
from mtl_split_ros import publish_bytes
rclpy.init()
node = rclpy.create_node("bytes_publisher")
pub = node.create_publisher(UInt8MultiArray, "{TOPIC}", 10)
print("gil_free", publish_bytes.gil_free(), flush=True)
i = 0
try:
    while True:  # resent until the test has what it waits for (it ends this process)
        publish_bytes.publish(pub, serialize_message(
            UInt8MultiArray(data=bytes([i % 251]) * 300_000)))
        publish_bytes.publish(pub, UInt8MultiArray(data=b"object"))
        i += 1
        time.sleep(0.05)
except KeyboardInterrupt:
    pass
"""


@pytest.mark.ros
def test_bytes_and_messages_arrive_in_another_process(ros_node):
    got: list[bytes] = []
    ros_node.create_subscription(UInt8MultiArray, TOPIC, got.append, 10, raw=True)
    with python_process(PUBLISHER) as proc:
        assert wait_for(ros_node, lambda: len({len(b) for b in got}) == 2, 60, (proc,)), \
            f"received {len(got)} messages"
        log = stop(proc)
    assert "gil_free True" in log, log  # Linux with rclpy's librcl mapped: the ctypes path
    messages = [deserialize_message(b, UInt8MultiArray) for b in got]
    large = [m for m in messages if len(m.data) == 300_000]
    assert large and all(len(set(m.data)) == 1 for m in large)  # every byte as sent
    assert any(bytes(m.data) == b"object" for m in messages)


def test_a_destroyed_publisher_refuses_like_rclpys(ros_node):
    from rclpy.serialization import serialize_message

    pub = ros_node.create_publisher(UInt8MultiArray, TOPIC + "_gone", 1)
    data = serialize_message(UInt8MultiArray(data=b"x"))
    publish_bytes.publish(pub, data)  # alive: fine, with or without a subscriber
    ros_node.destroy_publisher(pub)
    with pytest.raises(Exception) as gone:
        publish_bytes.publish(pub, data)
    with pytest.raises(type(gone.value)):
        pub.publish(data)


def test_the_library_is_found_in_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r--p 00000000 08:01 11 /opt/ros/kilted/lib/librcl_action.so\n"
        "7f01-7f02 r-xp 00001000 08:01 12 /opt/ros/kilted/lib/librcl.so\n"
        "7f02-7f03 rw-p 00000000 00:00 0 \n"
        "7f03-7f04 r-xp 00000000 08:01 13 /usr/lib/librcutils.so.5\n")
    assert publish_bytes.loaded_library("librcl.so", maps) == "/opt/ros/kilted/lib/librcl.so"
    assert publish_bytes.loaded_library("librcutils.so", maps) == "/usr/lib/librcutils.so.5"
    assert publish_bytes.loaded_library("librmw.so", maps) is None
    assert publish_bytes.loaded_library("librcl.so", tmp_path / "missing") is None
    assert publish_bytes.loaded_library("librcl.so") is not None  # this process: rclpy's
