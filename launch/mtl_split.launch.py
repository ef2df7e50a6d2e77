"""The whole pipeline: edge + server, optionally the sim camera and RViz.

    ros2 launch mtl_split mtl_split.launch.py sim:=true rviz:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("mtl_split")
    config = os.path.join(share, "config")
    ns = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    args = [
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("edge_params_file", default_value=os.path.join(config, "edge.yaml")),
        DeclareLaunchArgument("server_params_file",
                              default_value=os.path.join(config, "server.yaml")),
        DeclareLaunchArgument("model", default_value=""),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("split", default_value=""),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("sim", default_value="false", description="start the sim camera"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
    ]

    def include(name, extra):
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "launch", name)),
            launch_arguments={"namespace": ns, "model": LaunchConfiguration("model"),
                              "device": LaunchConfiguration("device"),
                              "use_sim_time": use_sim_time, **extra}.items())

    sim_camera = Node(
        package="mtl_split", executable="sim_camera_node", name="mtl_split_sim_camera",
        namespace=ns, output="screen", condition=IfCondition(LaunchConfiguration("sim")),
        parameters=[os.path.join(config, "sim_camera.yaml"), {"use_sim_time": use_sim_time}],
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", os.path.join(config, "mtl_split.rviz")],
        condition=IfCondition(LaunchConfiguration("rviz")),
        parameters=[{"use_sim_time": use_sim_time}],
    )
    return LaunchDescription(args + [
        include("edge.launch.py", {"split": LaunchConfiguration("split"),
                                   "params_file": LaunchConfiguration("edge_params_file")}),
        include("server.launch.py", {"params_file": LaunchConfiguration("server_params_file")}),
        sim_camera,
        rviz,
    ])
