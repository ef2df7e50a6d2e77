"""Run-time layer shared by the ROS nodes and tools: edge/server runners, statistics, errors."""
