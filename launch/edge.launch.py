"""Edge node: camera topics in, split features out (runs on the robot)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("mtl_split")
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="robot namespace"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "edge.yaml")),
        DeclareLaunchArgument("model", default_value="", description="'' = packaged default"),
        DeclareLaunchArgument("device", default_value="auto"),
        DeclareLaunchArgument("split", default_value="", description="'' = model default"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info"),
    ]
    edge = Node(
        package="mtl_split", executable="edge_node", name="mtl_split_edge",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "model": LaunchConfiguration("model"),
            "device": LaunchConfiguration("device"),
            "split": LaunchConfiguration("split"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
        }],
        remappings=[("image", LaunchConfiguration("image")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
    )
    return LaunchDescription(args + [edge])
