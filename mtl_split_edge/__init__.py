"""mtl_split_edge."""
