"""The whole pipeline: edge + server, optionally the sim camera and RViz.

    ros2 launch mtl_split mtl_split.launch.py sim:=true rviz:=true

Edge and server are built by edge.launch.py / server.launch.py (loaded as modules, not included,
so only this file's arguments show in --show-args). Every parameter default is in config/*.yaml.
"""

from __future__ import annotations

import os
from functools import partial

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

HERE = os.path.dirname(__file__)
common = load_python_launch_file_as_module(os.path.join(HERE, "common.py"))
edge = load_python_launch_file_as_module(os.path.join(HERE, "edge.launch.py"))
server = load_python_launch_file_as_module(os.path.join(HERE, "server.launch.py"))


def sim_camera_node(context: LaunchContext) -> list:
    # Not required: a sim camera with `frames: N` ends on its own and the pipeline stays up.
    return [Node(
        package="mtl_split", executable="sim_camera_node", name="mtl_split_sim_camera",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=common.params_files(context, "sim_params_file",
                                       os.path.join(common.CONFIG, "sim_camera.yaml"),
                                       common.given(context, ["use_sim_time"])),
        remappings=common.topic_remaps(context),
    )]


def rviz_node(context: LaunchContext) -> list:
    return [Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", os.path.join(common.CONFIG, "mtl_split.rviz")],
        parameters=[common.given(context, ["use_sim_time"])],
    )]


def generate_launch_description():
    arguments = list(dict.fromkeys(edge.ARGUMENTS + server.ARGUMENTS))  # union, in order
    return LaunchDescription([
        *common.dds_profile(),
        *common.declare(arguments),
        DeclareLaunchArgument("edge_params_file", default_value=edge.SHIPPED_PARAMS,
                              description="Edge parameters file; replaces the shipped one."),
        DeclareLaunchArgument("server_params_file", default_value=server.SHIPPED_PARAMS,
                              description="Server parameters file; replaces the shipped one."),
        DeclareLaunchArgument("sim_params_file", default_value="",
                              description="Sim camera parameters file ('' = the shipped "
                                          "config/sim_camera.yaml); used with sim:=true."),
        DeclareLaunchArgument("sim", default_value="false",
                              description="true: also start the simulated camera (PyBullet)."),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="true: also start RViz with config/mtl_split.rviz."),
        OpaqueFunction(function=partial(edge.edge_node, params_file_argument="edge_params_file")),
        OpaqueFunction(function=partial(server.server_node,
                                        params_file_argument="server_params_file")),
        OpaqueFunction(function=sim_camera_node, condition=IfCondition(LaunchConfiguration("sim"))),
        OpaqueFunction(function=rviz_node, condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
