"""Edge node: camera topics in, split features out (runs on the robot).

    ros2 launch mtl_split edge.launch.py image:=/camera/image_raw input_qos:=reliable

Every parameter default is in config/edge.yaml; an argument overrides it only when given.
"""

from __future__ import annotations

import os

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.launch_description_sources import load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

common = load_python_launch_file_as_module(os.path.join(os.path.dirname(__file__), "common.py"))

SHIPPED_PARAMS = os.path.join(common.CONFIG, "edge.yaml")
# Launch arguments that become edge parameters of the same name.
PARAMETERS = ("model", "device", "split", "codec", "input_transport", "input_qos",
              "auth_key_file", "backend", "onnx_dir", "engine_cache", "fallback_after",
              "use_sim_time", "pool")
# All the edge's arguments but params_file, which the top launch file names edge_params_file.
ARGUMENTS = ("namespace", *PARAMETERS, "image", "camera_info")


def edge_node(context: LaunchContext, params_file_argument: str = "params_file") -> list:
    return [Node(
        package="mtl_split", executable="edge_node", name="mtl_split_edge",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=common.params_files(context, params_file_argument, SHIPPED_PARAMS,
                                       common.given(context, PARAMETERS)),
        remappings=common.topic_remaps(context),
        on_exit=common.required("mtl_split_edge"),
    )]


def generate_launch_description():
    return LaunchDescription([
        *common.dds_profile(),
        DeclareLaunchArgument("params_file", default_value=SHIPPED_PARAMS,
                              description="Edge parameters file; replaces the shipped one."),
        *common.declare(ARGUMENTS),
        OpaqueFunction(function=edge_node),
    ])
