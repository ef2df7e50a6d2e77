"""node_main: run_node's clean stop on SIGINT/SIGTERM (the sim camera, a third node using it), and
the executables' lazy entry: DDS participant first, no boot node left once the node is up."""

import os
import signal
import time

import pytest
import rclpy
from ament_index_python.packages import get_package_prefix
from sensor_msgs.msg import Image

from mtl_split_ros.node_main import BOOT_NODE
from mtl_split_ros.qos import qos_from_name
from support.procs import python_process
from support.ros_nodes import assert_clean_exit, signal_and_wait, wait_for

pytestmark = pytest.mark.ros
CAMERA = "from mtl_split_tools.sim_camera_node import main; import sys; sys.exit(main())"
EDGE_EXECUTABLE = os.path.join(get_package_prefix("mtl_split"), "lib", "mtl_split", "edge_node")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sim_camera_stops_cleanly(ros_node, sig):
    got = []
    sub = ros_node.create_subscription(Image, "image", got.append,
                                       qos_from_name("reliable", depth=10))
    args = ["-c", CAMERA, "--ros-args", "-p", "width:=160", "-p", "height:=120",
            "-p", "rate:=10.0"]
    with python_process(args) as cam:
        assert wait_for(ros_node, lambda: len(got) >= 2, 120, (cam,))
        code, log = signal_and_wait(cam, sig)
    ros_node.destroy_subscription(sub)
    assert_clean_exit(code, log, sig)
    assert rclpy.ok()


def _names(node):
    return {name for name, _ in node.get_node_names_and_namespaces()}


def test_the_edge_executable_discovers_first_and_leaves_no_boot_node(ros_node, model_dir):
    """The installed edge_node (run_node_lazily): its hidden boot node is seen by a peer before
    the edge itself (the participant exists while torch is imported), and is gone once the edge
    is up; SIGINT still ends it cleanly."""
    seen_boot = []
    with python_process([EDGE_EXECUTABLE, "--ros-args", "-p", f"model:={model_dir}",
                         "-p", "device:=cpu", "-p", "fallback_after:=0.0"]) as edge:
        def edge_up():
            names = _names(ros_node)
            if BOOT_NODE in names and "mtl_split_edge" not in names:
                seen_boot.append(time.monotonic())
            return "mtl_split_edge" in names
        assert wait_for(ros_node, edge_up, 120, (edge,))
        assert seen_boot, "the edge appeared without its participant being up before"
        assert wait_for(ros_node, lambda: BOOT_NODE not in _names(ros_node), 30, (edge,))
        code, log = signal_and_wait(edge, signal.SIGINT)
    assert_clean_exit(code, log, signal.SIGINT)


def test_bad_parameters_through_the_lazy_entry_are_one_line_and_exit_2(model_dir):
    with python_process([EDGE_EXECUTABLE, "--ros-args", "-p", f"model:={model_dir}",
                         "-p", "codec:=nope"]) as edge:
        code = edge.wait(120)
        log = edge.stdout.read()
    assert code == 2 and "Traceback" not in log and "codec" in log, log[-3000:]
