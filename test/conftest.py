"""Session-wide test settings.

Tests that start ROS nodes isolate themselves (DESIGN.md §6): one ROS_DOMAIN_ID per test
session, discovery limited to this machine, so parallel sessions and other users' nodes never
see each other. Child processes inherit these variables.
"""

import os

import pytest


def _pick_domain_id() -> int:
    # 1..100 are valid on Linux with default port mapping; 0 is what everyone else uses.
    return 1 + os.getpid() % 100


os.environ.setdefault("ROS_DOMAIN_ID", str(_pick_domain_id()))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("PYTHONUNBUFFERED", "1")
# One torch thread per process (child processes inherit it): the tests' networks are tiny, too
# small to share out over threads, and on a 2-core machine a second thread stalls whenever the
# other core is busy (a node process, another test's child): up to tenfold on a forward pass.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])


@pytest.fixture(scope="module")
def ros_node(request):
    """An rclpy node in the test process (one per test module), shut down afterwards."""
    import rclpy
    rclpy.init()
    node = rclpy.create_node(request.module.__name__.rsplit(".", 1)[-1])
    yield node
    node.destroy_node()
    rclpy.shutdown()


def pytest_collection_modifyitems(items):
    # Tests that start processes talking over DDS depend on discovery timing on a shared,
    # loaded 2-core machine; one rerun separates a slow discovery from a real failure (a real
    # failure fails twice). Core tests are never rerun.
    for item in items:
        if item.get_closest_marker("ros"):
            item.add_marker(pytest.mark.flaky(reruns=1))
