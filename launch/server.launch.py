"""Server node: split features in; detections, segmentation, depth and RViz views out."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("mtl_split")
    args = [
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "server.yaml")),
        DeclareLaunchArgument("model", default_value="", description="'' = packaged default"),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
    ]
    server = Node(
        package="mtl_split", executable="server_node", name="mtl_split_server",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "model": LaunchConfiguration("model"),
            "device": LaunchConfiguration("device"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
        }],
    )
    return LaunchDescription(args + [server])
