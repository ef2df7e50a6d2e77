"""mtl_split_ros."""
