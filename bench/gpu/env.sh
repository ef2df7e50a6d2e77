# The environment for a bundle unpacked at $1 (sourced by run_fleet.sh and bundle.sh's check):
# Python 3.12 finds rclpy, the messages and this package; the loader finds the ROS libraries;
# rclpy finds rmw_fastrtps_cpp through the ament index; node_processes finds the executables.
B=$(cd "$1" && pwd)
OURS=$B/install/mtl_split
VISION=$B/install/vision_msgs  # built beside this package by bundle.sh (the detections)
export PYTHONPATH=$OURS/lib/python3.12/site-packages:$VISION/lib/python3.12/site-packages:$B/site-packages${PYTHONPATH:+:$PYTHONPATH}
libs=$(find "$B/site-packages" -maxdepth 1 -type d -name 'ros_*.libs' | tr '\n' ':')
export LD_LIBRARY_PATH=$B/lib:$OURS/lib:$VISION/lib:$libs${LD_LIBRARY_PATH:-}
export AMENT_PREFIX_PATH=$OURS:$VISION:$B
export COLCON_PREFIX_PATH=$B/install
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# The wheels' bootstrapper re-executes Python to set LD_LIBRARY_PATH; it is set already.
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
