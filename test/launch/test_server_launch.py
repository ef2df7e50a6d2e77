"""launch/server.launch.py for real: in a robot's namespace, with one argument given."""

import pytest

from mtl_split_core.cli.main import main
from support.ros2cli import (
    node_info,
    node_names,
    param_get,
    ros2_launch,
    shutdown_problems,
    topic_endpoints,
    topic_names,
    wait_until,
)

pytestmark = pytest.mark.ros
SERVER = "/robot1/mtl_split_server"


def test_server_in_a_namespace_with_an_argument_override(tmp_path):
    key_file = tmp_path / "features.key"
    assert main(["keygen", str(key_file), "--key-id", "launch-test"]) == 0
    with ros2_launch("server.launch.py", "namespace:=robot1", "score_threshold:=0.5",
                     f"auth_key_file:={key_file}", log=tmp_path / "launch.log") as launch:
        launch.wait_until(lambda: SERVER in node_names(), 120, "the server node")
        expected = {"/robot1/mtl_split/features", "/robot1/mtl_split/detections",
                    "/robot1/mtl_split/depth"}
        wait_until(lambda: expected <= topic_names(), 30, f"topics {sorted(expected)}")
        # The graph as ROS tools show it: the server's endpoints under its own name (#24).
        info = node_info(SERVER)
        assert "/robot1/mtl_split/features" in info["Subscribers"], info
        assert "/robot1/mtl_split/detections" in info["Publishers"], info
        assert f"{SERVER}/get_parameters" in info["Service Servers"], info
        assert (SERVER, "SUBSCRIPTION") in topic_endpoints("/robot1/mtl_split/features")
        assert param_get(SERVER, "score_threshold") == "0.5"  # given: overrides the yaml
        assert param_get(SERVER, "max_detections") == "50"  # not given: config/server.yaml's
        assert param_get(SERVER, "auth_key_file") == str(key_file)
        launch.wait_until(lambda: "accepting keys launch-test" in launch.output(), 30,
                          "the server's ready line naming the key")
        rc = launch.interrupt(group=True)
        assert rc == 0 and shutdown_problems(launch.output()) == [], launch.output()[-3000:]
