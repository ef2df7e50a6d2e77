"""mtl_split_server."""
