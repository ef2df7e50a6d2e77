"""launch/mtl_split.launch.py for real: `ros2 launch` + `ros2 node/topic/param`.

One launch per fixture, shared by the tests that read it; each ends with a SIGINT check.
"""

import re
import subprocess
import sys
import time

import pytest

from support.procs import stop
from support.ros2cli import (
    ROOT,
    echo_once,
    node_names,
    param_get,
    param_set,
    params_file,
    ros2,
    ros2_launch,
    shutdown_problems,
    topic_names,
    wait_until,
)

pytestmark = pytest.mark.ros
EDGE, SERVER, CAMERA = "/mtl_split_edge", "/mtl_split_server", "/mtl_split_sim_camera"
START_S = 120  # model loading of two nodes on a loaded 2-core machine


def _started(launch, nodes):
    launch.wait_until(lambda: nodes <= node_names(), START_S, f"nodes {sorted(nodes)}")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The pipeline on the sim camera; the edge's params file (not an argument) says s8."""
    tmp = tmp_path_factory.mktemp("sim_launch")
    edge_yaml = params_file(tmp / "edge.yaml", "edge.yaml", split="s8")
    with ros2_launch("mtl_split.launch.py", "sim:=true", f"edge_params_file:={edge_yaml}",
                     log=tmp / "launch.log") as launch:
        _started(launch, {EDGE, SERVER, CAMERA})
        yield launch


def _detections():
    """The `detections` field of the next detections message, as ros2 topic echo prints it."""
    return echo_once("/mtl_split/detections", "--field", "detections", "--no-lost-messages")


def test_nodes_and_topics_appear_and_detections_come_out(sim):
    expected = {"/image", "/camera_info", "/mtl_split/features", "/mtl_split/detections",
                "/mtl_split/depth", "/mtl_split/segmentation", "/diagnostics"}
    wait_until(lambda: expected <= topic_names(), 30, f"topics {sorted(expected)}")
    out = sim.wait_until(lambda: echo_once("/mtl_split/detections", "--no-arr"), 60,
                         "a detections message")
    assert "frame_id: camera_optical_frame" in out


def test_params_file_sets_split_when_no_argument_is_given(sim):
    assert param_get(EDGE, "split") == "s8"
    # The features on the wire say so too: s8 is split index 1 of (s4, s8, s16, s32).
    out = wait_until(lambda: echo_once("/mtl_split/features", "--field", "split_index"), 60,
                     "a features message")
    assert out.split()[0] == "1", out


def test_score_threshold_changes_at_run_time_and_bad_values_are_refused(sim):
    # Before: the sim scene has objects above the shipped threshold (0.3).
    sim.wait_until(lambda: (d := _detections()) and d.split()[0] != "[]", 60,
                   "a detections message with detections")

    result = param_set(SERVER, "score_threshold", "0.99")
    assert "successful" in result, result
    assert param_get(SERVER, "score_threshold") == "0.99"
    time.sleep(1.0)  # let frames already inside the server (queued before the change) pass
    for _ in range(3):
        out = _detections()
        assert out is not None and out.split()[0] == "[]", f"detections at 0.99: {out}"

    refused = param_set(SERVER, "score_threshold", "1.5")
    assert "successful" not in refused and "failed" in refused.lower(), refused
    assert param_get(SERVER, "score_threshold") == "0.99"
    # Read-only parameters say so instead of pretending to change.
    readonly = param_set(EDGE, "device", "cpu")
    assert "successful" not in readonly and "failed" in readonly.lower(), readonly


def test_sigint_to_ros2_launch_ends_everything_cleanly(sim):
    rc = sim.interrupt(group=False)
    out = sim.output()
    assert rc == 0, out[-3000:]
    assert shutdown_problems(out) == [], out[-3000:]
    wait_until(lambda: not sim.group_alive(), 15, "every node ended")


def test_required_node_death_ends_the_launch_non_zero(tmp_path):
    with ros2_launch("mtl_split.launch.py", "split:=s99", log=tmp_path / "launch.log") as launch:
        wait_until(lambda: launch.proc.poll() is not None, START_S, "ros2 launch exits")
        out = launch.output()
        assert launch.proc.returncode != 0, out[-3000:]
        assert "required node mtl_split_edge exited" in out, out[-3000:]
        wait_until(lambda: not launch.group_alive(), 15, "the server ended too")
        assert "Traceback" not in out, out[-3000:]


def test_compressed_bag_replay_and_launch_argument_overrides(tmp_path):
    edge_yaml = params_file(tmp_path / "edge.yaml", "edge.yaml", split="s8", codec="q4-zstd/1")
    # split:=0 is the index form of s4 (launch passes it to the node as an integer).
    with ros2_launch("mtl_split.launch.py", "input_transport:=compressed", "split:=0",
                     f"edge_params_file:={edge_yaml}", log=tmp_path / "launch.log") as launch:
        _started(launch, {EDGE, SERVER})
        assert param_get(EDGE, "split") == "0"  # the argument given wins over the file
        assert param_get(EDGE, "codec") == "q4-zstd/1"  # an omitted argument leaves the file's
        assert param_get(EDGE, "input_transport") == "compressed"
        assert CAMERA not in node_names()  # sim defaults to false (both nodes seen: complete)

        # `mtl-split replay` of the shipped bag (image/compressed + camera_info only), looped;
        # its progress bar goes nowhere so that no pipe fills up.
        player = subprocess.Popen(
            [sys.executable, "-m", "mtl_split_tools.cli", "replay",
             str(ROOT / "samples" / "sim_camera"), "--loop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            out = wait_until(lambda: echo_once("/mtl_split/detections", "--no-arr"), 90,
                             "detections from the replayed compressed bag", alive=player)
            assert "header" in out
            index = echo_once("/mtl_split/features", "--field", "split_index")
            assert index is not None and index.split()[0] == "0", index
        finally:
            stop(player)

        # A terminal's Ctrl-C reaches launch and every node at once.
        rc = launch.interrupt(group=True)
        out = launch.output()
        assert rc == 0, out[-3000:]
        assert shutdown_problems(out) == [], out[-3000:]


@pytest.mark.parametrize("launch_file", ["edge.launch.py", "server.launch.py",
                                         "mtl_split.launch.py"])
def test_every_argument_is_described_and_defaults_stay_in_the_yaml(launch_file):
    out = ros2("launch", "mtl_split", launch_file, "--show-args").stdout
    arguments = dict(re.findall(r"'(\w+)':\n\s+.*\n\s+\(default: '(.*)'\)", out))
    assert "model" in arguments and "use_sim_time" in arguments, out
    assert "no description given" not in out, out
    # Parameter arguments default to '' (= the params file's value), never to a value of their own.
    for name in ("model", "device", "split", "codec", "input_transport", "input_qos",
                 "score_threshold", "auth_key_file", "use_sim_time"):
        assert arguments.get(name, "") == "", f"{launch_file}: {name} has a default of its own"
    if launch_file == "mtl_split.launch.py":
        # Only its own files: the included edge's / server's params_file does not leak.
        assert "params_file" not in arguments, out
        assert {"edge_params_file", "server_params_file", "sim", "rviz"} <= set(arguments)
