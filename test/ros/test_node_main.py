"""node_main: run_node's clean stop on SIGINT/SIGTERM (the sim camera, a third node using it), and
the executables' lazy entry: DDS participant first, no boot node left once the node is up."""

import os
import signal

import pytest
import rclpy
from ament_index_python.packages import get_package_prefix
from sensor_msgs.msg import Image

from mtl_split_ros.node_main import (
    BOOT_NODE,
    PUBLICATION_MODE_VARIABLE,
    SERVER_PUBLICATION_MODE,
    default_publication_mode,
)
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


# A stand-in for a node module: at import time (when torch would load) it looks for the boot
# node in its own process's graph; its node then ends the process as Ctrl-C would.
FAKE_NODE_MODULE = """
import rclpy
from rclpy.node import Node
from mtl_split_ros.node_main import BOOT_NODE
_probe = rclpy.create_node("import_time_probe")
print("boot node at import:", BOOT_NODE in _probe.get_node_names(), flush=True)
_probe.destroy_node()

class FakeNode(Node):
    def __init__(self):
        super().__init__("fake_node")
        self.create_timer(0.2, self._end)

    def _end(self):
        print("nodes when spinning:", sorted(self.get_node_names()), flush=True)
        raise KeyboardInterrupt
"""


def test_the_lazy_entry_creates_the_participant_before_importing_the_node(tmp_path):
    (tmp_path / "fake_node_module.py").write_text(FAKE_NODE_MODULE)
    code = ("import sys; from mtl_split_ros.node_main import run_node_lazily; "
            "sys.exit(run_node_lazily('fake_node_module:FakeNode'))")
    with python_process(code, env={"PYTHONPATH": f"{tmp_path}:{os.environ['PYTHONPATH']}"}
                        ) as proc:
        code = proc.wait(60)
        log = proc.stdout.read()
    assert code == 0 and "Traceback" not in log, log
    assert "boot node at import: True" in log, log
    # Once the node is up the boot node is gone.
    spinning = next(line for line in log.splitlines() if line.startswith("nodes when spinning"))
    assert "fake_node" in spinning and BOOT_NODE not in spinning, log


def test_a_publication_mode_is_asked_for_only_where_the_environment_names_none(monkeypatch):
    monkeypatch.delenv(PUBLICATION_MODE_VARIABLE, raising=False)
    default_publication_mode(None)
    assert PUBLICATION_MODE_VARIABLE not in os.environ
    default_publication_mode(SERVER_PUBLICATION_MODE)
    assert os.environ[PUBLICATION_MODE_VARIABLE] == "ASYNCHRONOUS"
    monkeypatch.setenv(PUBLICATION_MODE_VARIABLE, "SYNCHRONOUS")  # the user's choice wins
    default_publication_mode(SERVER_PUBLICATION_MODE)
    assert os.environ[PUBLICATION_MODE_VARIABLE] == "SYNCHRONOUS"


PRINT_MODE_MODULE = """
import os
from rclpy.node import Node

class ModeNode(Node):
    def __init__(self):
        super().__init__("mode_node")
        print("mode:", os.environ.get("RMW_FASTRTPS_PUBLICATION_MODE"), flush=True)
        raise KeyboardInterrupt
"""


@pytest.mark.parametrize("given, seen", [(None, "ASYNCHRONOUS"), ("SYNCHRONOUS", "SYNCHRONOUS")])
def test_the_lazy_entry_asks_for_the_publication_mode_unless_the_environment_names_one(
        tmp_path, monkeypatch, given, seen):
    """As the server's executable runs it (SERVER_PUBLICATION_MODE); the environment wins."""
    monkeypatch.delenv(PUBLICATION_MODE_VARIABLE, raising=False)
    (tmp_path / "mode_module.py").write_text(PRINT_MODE_MODULE)
    code = ("import sys; from mtl_split_ros.node_main import SERVER_PUBLICATION_MODE, "
            "run_node_lazily; sys.exit(run_node_lazily('mode_module:ModeNode', "
            "publication_mode=SERVER_PUBLICATION_MODE))")
    env = {"PYTHONPATH": f"{tmp_path}:{os.environ['PYTHONPATH']}",
           **({PUBLICATION_MODE_VARIABLE: given} if given else {})}
    with python_process(code, env=env) as proc:
        code = proc.wait(60)
        log = proc.stdout.read()
    assert code == 0 and "Traceback" not in log, log
    assert f"mode: {seen}" in log, log


def test_the_edge_executable_starts_and_stops_cleanly(ros_node, model_dir):
    """The installed edge_node (run_node_lazily): up, no boot node left, SIGINT ends it
    cleanly."""
    with python_process([EDGE_EXECUTABLE, "--ros-args", "-p", f"model:={model_dir}",
                         "-p", "device:=cpu", "-p", "fallback_after:=0.0"]) as edge:
        assert wait_for(ros_node, lambda: "mtl_split_edge" in _names(ros_node), 120, (edge,))
        assert wait_for(ros_node, lambda: BOOT_NODE not in _names(ros_node), 30, (edge,))
        code, log = signal_and_wait(edge, signal.SIGINT)
    assert_clean_exit(code, log, signal.SIGINT)


def test_bad_parameters_through_the_lazy_entry_are_one_line_and_exit_2(model_dir):
    with python_process([EDGE_EXECUTABLE, "--ros-args", "-p", f"model:={model_dir}",
                         "-p", "codec:=nope"]) as edge:
        code = edge.wait(120)
        log = edge.stdout.read()
    assert code == 2 and "Traceback" not in log and "codec" in log, log[-3000:]
