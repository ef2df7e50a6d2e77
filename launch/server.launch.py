"""Server node: split features in; detections, segmentation, depth and RViz views out.

    ros2 launch mtl_split server.launch.py namespace:=robot1

Every parameter default is in config/server.yaml; an argument overrides it only when given.
"""

from __future__ import annotations

import os

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description_sources import load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

common = load_python_launch_file_as_module(os.path.join(os.path.dirname(__file__), "common.py"))

SHIPPED_PARAMS = os.path.join(common.CONFIG, "server.yaml")
# Launch arguments that become server parameters of the same name.
PARAMETERS = ("model", "device", "score_threshold", "auth_key_file", "backend", "onnx_dir",
              "engine_cache", "use_sim_time")
# All the server's arguments but params_file, which the top launch file names server_params_file.
ARGUMENTS = ("namespace", *PARAMETERS)


def named_server(context: LaunchContext, name: str, params: dict) -> Node:
    """One server process of a fleet or pool: ``name``, the params file plus ``params``."""
    return Node(package="mtl_split", executable="server_node", name=name, output="screen",
                parameters=common.params_files(context, "params_file", SHIPPED_PARAMS, params),
                on_exit=common.required(name))


def server_node(context: LaunchContext, params_file_argument: str = "params_file") -> list:
    return [Node(
        package="mtl_split", executable="server_node", name="mtl_split_server",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=common.params_files(context, params_file_argument, SHIPPED_PARAMS,
                                       common.given(context, PARAMETERS)),
        on_exit=common.required("mtl_split_server"),
    )]


def generate_launch_description():
    return LaunchDescription([
        *common.dds_profile(),
        DeclareLaunchArgument("params_file", default_value=SHIPPED_PARAMS,
                              description="Server parameters file; replaces the shipped one."),
        *common.declare(ARGUMENTS),
        OpaqueFunction(function=server_node),
    ])
