"""launch/fleet.launch.py for real: robots by namespace, one server per listed device."""

import re

import pytest

from support.ros2cli import (
    GRAPH,
    node_names,
    param_get,
    ros2,
    ros2_launch,
    shutdown_problems,
    topic_names,
    wait_until,
)

pytestmark = pytest.mark.ros


def test_robots_are_dealt_to_one_server_per_device(tmp_path):
    with ros2_launch("fleet.launch.py", "robots:=r1,/r2/,r3", "devices:=cpu,cpu",
                     "max_batch:=4", log=tmp_path / "launch.log") as launch:
        servers = {"/mtl_split_server_0", "/mtl_split_server_1"}
        launch.wait_until(lambda: servers <= node_names(), 120, "both servers")
        expected = {f"/{r}/mtl_split/{t}" for r in ("r1", "r2", "r3")
                    for t in ("features", "detections", "depth", "segmentation")}
        wait_until(lambda: expected <= topic_names(), 30, f"topics {sorted(expected)}")
        # r1 and r3 to the first server, r2 to the second.
        assert _topics("/mtl_split_server_0") == ["/r1/mtl_split/features",
                                                   "/r3/mtl_split/features"]
        assert _topics("/mtl_split_server_1") == ["/r2/mtl_split/features"]
        assert param_get("/mtl_split_server_1", "max_batch") == "4"  # given: overrides the yaml
        assert param_get("/mtl_split_server_1", "batch_wait_ms") == "0.0"  # the yaml's
        rc = launch.interrupt(group=True)
        assert rc == 0 and shutdown_problems(launch.output()) == [], launch.output()[-3000:]


def _topics(node):
    """The feature_topics parameter (a string array) of ``node``."""
    out = ros2("param", "get", *GRAPH, "--timeout", "10", node, "feature_topics").stdout
    return re.findall(r"'([^']*)'", out)


@pytest.mark.parametrize("arguments, message", [((), "robots:= is required"),
                                                (("robots:=r1,2x",), "'2x' is not a ROS "
                                                 "namespace"),
                                                (("robots:=r1,r1",), "listed twice")])
def test_a_bad_robot_list_is_one_clear_line(tmp_path, arguments, message):
    with ros2_launch("fleet.launch.py", *arguments, log=tmp_path / "launch.log") as launch:
        rc = launch.proc.wait(60)
        out = launch.output()
    assert rc != 0 and message in out and "Traceback" not in out, out
