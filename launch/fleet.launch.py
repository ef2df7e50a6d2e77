"""One server for many robots: each robot's edge publishes in its own namespace.

    ros2 launch mtl_split fleet.launch.py robots:=r1,r2,r3
    ros2 launch mtl_split fleet.launch.py robots:=r1,r2,r3,r4 devices:=cuda:0,cuda:1

Robot ``r1`` is read on ``/r1/mtl_split/features`` (what ``edge.launch.py namespace:=r1``
publishes) and answered on ``/r1/mtl_split/detections``, ``/r1/mtl_split/depth``, ... with r1's
stamps and frame ids. The server batches the robots' newest frames (``max_batch``,
``batch_wait_ms``). With ``devices`` there is one server process per device
(``mtl_split_server_0``, ``_1``, ...) and the robots are dealt to them in turn (r1 -> 0,
r2 -> 1, r3 -> 0, ...): no load balancer, a fixed assignment. Every other parameter default is
in config/server.yaml; an argument overrides it only when given.
"""

from __future__ import annotations

import os
import re

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description_sources import load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration

HERE = os.path.dirname(__file__)
common = load_python_launch_file_as_module(os.path.join(HERE, "common.py"))
server = load_python_launch_file_as_module(os.path.join(HERE, "server.launch.py"))

# Launch arguments that become parameters of every server of the same name.
PARAMETERS = ("model", "device", "precision", "score_threshold", "max_batch", "batch_wait_ms",
              "use_sim_time")
DESCRIPTIONS = {
    "robots": "Comma-separated robot namespaces, e.g. r1,r2,r3 (required).",
    "devices": "Comma-separated devices, one server process each (e.g. cuda:0,cuda:1); robots "
               "are dealt to them in turn. A device may repeat: cuda:0,cuda:0 runs two server "
               "processes on one GPU (one Python process saturates a core near 340 frames/s) "
               "('' = one server on `device`).",
    "precision": "fp32 or fp16 (fp16 only on CUDA) ('' = params file).",
    "max_batch": "Most robots' frames run as one batch, 1..32 ('' = params file).",
    "batch_wait_ms": "Wait for more robots' frames once one is there, ms ('' = params file).",
}
NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def robot_namespaces(text: str) -> list[str]:
    """``r1, /r2/ ,fleet/r3`` -> ['r1', 'r2', 'fleet/r3']; a bad or repeated name raises."""
    robots = [r.strip().strip("/") for r in text.split(",") if r.strip().strip("/")]
    if not robots:
        raise RuntimeError("robots:= is required: comma-separated robot namespaces, e.g. "
                           "robots:=r1,r2")
    bad = [r for r in robots if not NAMESPACE.match(r)]
    if bad:
        raise RuntimeError(f"robots: {bad[0]!r} is not a ROS namespace (letters, digits, '_', "
                           "'/' between parts; no leading digit)")
    if len(set(robots)) != len(robots):
        raise RuntimeError(f"robots: a namespace is listed twice in {','.join(robots)}")
    return robots


def feature_topic(robot: str) -> str:
    return f"/{robot}/mtl_split/features"


def fleet_servers(context: LaunchContext) -> list:
    robots = robot_namespaces(LaunchConfiguration("robots").perform(context))
    devices = [d.strip() for d in LaunchConfiguration("devices").perform(context).split(",")
               if d.strip()]
    overrides = common.given(context, PARAMETERS)
    groups = ([(None, robots)] if not devices else
              [(d, robots[i::len(devices)]) for i, d in enumerate(devices)
               if robots[i::len(devices)]])
    nodes = []
    for i, (device, members) in enumerate(groups):
        params = {**overrides, "feature_topics": [feature_topic(r) for r in members]}
        if device is not None:
            params["device"] = device
        name = "mtl_split_server" if device is None else f"mtl_split_server_{i}"
        nodes.append(server.named_server(context, name, params))
    return nodes


def generate_launch_description():
    declared = [n for n in PARAMETERS if n in common.DESCRIPTIONS]
    return LaunchDescription([
        *common.dds_profile(),
        DeclareLaunchArgument("params_file", default_value=server.SHIPPED_PARAMS,
                              description="Server parameters file; replaces the shipped one."),
        *common.declare(declared),
        *[DeclareLaunchArgument(n, default_value="", description=DESCRIPTIONS[n])
          for n in ("robots", "devices", *[p for p in PARAMETERS if p not in declared])],
        OpaqueFunction(function=fleet_servers),
    ])
