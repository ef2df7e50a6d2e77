"""Fixtures the ROS node tests share."""

import pytest

from support.ros_nodes import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained model (CPU-fast) for tests of the node plumbing."""
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")
