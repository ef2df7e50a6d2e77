"""Real `ros2 launch` tests (the shipped launch files, read with `ros2 node/topic/param`).

They need the ros2 CLI (`make setup` installs it from ../shared/ros2-cli-kit; a system ROS 2 has
it) and skip, saying so, where it is absent.
"""

import pytest

from support.ros2cli import missing_cli


@pytest.fixture(autouse=True, scope="session")
def _ros2_cli():
    reason = missing_cli()
    if reason:
        pytest.skip(reason)

