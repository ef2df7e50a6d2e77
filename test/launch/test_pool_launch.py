"""launch/pool.launch.py: the server plan (count, devices, ids, capacity) as a function, and
`ros2 launch` for real: its arguments, its one-line errors, and two real pool servers that
announce themselves (seen by `mtl-split fleet status`) and end cleanly on Ctrl-C."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from launch.launch_description_sources import load_python_launch_file_as_module

from support.ros2cli import ros2, ros2_launch, shutdown_problems
from support.ros_nodes import tiny_model

ROOT = Path(__file__).resolve().parents[2]
pool = load_python_launch_file_as_module(str(ROOT / "launch" / "pool.launch.py"))


def test_servers_are_dealt_to_devices_in_turn_with_host_unique_ids():
    plan = pool.server_plan("3", ["cuda:0", "cuda:1"], None, "gpuhost")
    assert [p["name"] for p in plan] == [f"mtl_split_server_{i}" for i in range(3)]
    assert [p["params"] for p in plan] == [
        {"server_id": "gpuhost_0", "device": "cuda:0"},
        {"server_id": "gpuhost_1", "device": "cuda:1"},
        {"server_id": "gpuhost_2", "device": "cuda:0"}]
    assert pool.server_plan("1", [], None, "h") == [
        {"name": "mtl_split_server_0", "params": {"server_id": "h_0"}}]


def test_auto_takes_the_count_and_each_capacity_from_the_measured_file(tmp_path):
    path = tmp_path / "cap.json"
    path.write_text(json.dumps({"process_fps": 340.0, "device_fps": 656.0}))
    capacity = pool.read_capacity(str(path))
    plan = pool.server_plan("auto", ["cuda:0", "cuda:1"], capacity, "h")
    assert [p["params"].get("device") for p in plan] == ["cuda:0"] * 2 + ["cuda:1"] * 2
    assert {p["params"]["capacity_fps"] for p in plan} == {328.0}  # 656 / 2 < 340
    # Given a count, the file still sets each server's capacity.
    one = pool.server_plan("1", ["cuda:0"], capacity, "h")
    assert one[0]["params"]["capacity_fps"] == 340.0


@pytest.mark.parametrize("servers, message", [("0", "expected a count 1..64"),
                                              ("65", "expected a count 1..64"),
                                              ("two", "expected a count"),
                                              ("", "(missing)"),
                                              ("auto", "servers:=auto needs capacity_file")])
def test_a_bad_server_count_says_what_it_needs(servers, message):
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pool.server_plan(servers, [], None, "h")


def test_capacity_file_and_prefix_checks(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"process_fps": -1, "device_fps": 10}))
    with pytest.raises(RuntimeError, match="must be in"):
        pool.read_capacity(str(bad))
    bad.write_text("{}")
    with pytest.raises(RuntimeError, match="'process_fps'"):
        pool.read_capacity(str(bad))
    assert pool.id_prefix("gpu-host.lan") == "gpu_host"
    assert pool.id_prefix("42box") == "s42box"


@pytest.mark.ros
def test_ros2_launch_lists_the_arguments_and_fails_in_one_line(tmp_path):
    shown = ros2("launch", "mtl_split", "pool.launch.py", "--show-args").stdout
    for name in ("servers", "devices", "capacity_file", "server_id_prefix", "pool_topic"):
        assert f"'{name}'" in shown, shown
    with ros2_launch("pool.launch.py", "servers:=auto", log=tmp_path / "launch.log") as launch:
        rc = launch.proc.wait(60)
        out = launch.output()
    assert rc != 0 and "servers:=auto needs capacity_file" in out and "Traceback" not in out


def test_the_launch_function_builds_one_node_per_planned_server():
    from launch import LaunchContext
    context = LaunchContext()
    context.launch_configurations.update(
        {name: "" for name in (*pool.PARAMETERS, "capacity_file", "pool_topic", "params_file")})
    context.launch_configurations.update({"servers": "2", "devices": "cpu",
                                          "server_id_prefix": "h"})
    assert len(pool.pool_servers(context)) == 2
    context.launch_configurations["pool_topic"] = "not/absolute"
    with pytest.raises(RuntimeError, match="expected an absolute topic"):
        pool.pool_servers(context)


@pytest.mark.ros
@pytest.mark.slow
def test_ros2_launch_starts_pool_servers_that_announce_themselves(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    with ros2_launch("pool.launch.py", "servers:=2", "devices:=cpu", "server_id_prefix:=ci",
                     f"model:={model}", "max_batch:=4", log=tmp_path / "launch.log") as launch:
        def both_announced():
            table = subprocess.run(
                [sys.executable, "-m", "mtl_split_tools.cli", "fleet", "status", "--once",
                 "--wait", "3"], capture_output=True, text=True, timeout=60).stdout
            return table if "ci_0" in table and "ci_1" in table else None
        table = launch.wait_until(both_announced, 120, "announcements of ci_0 and ci_1")
        assert "accepting" in table, table
        rc = launch.interrupt(group=True)
        assert rc == 0 and shutdown_problems(launch.output()) == [], launch.output()[-3000:]
