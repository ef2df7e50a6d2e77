"""The installed `mtl-split` command: the core's commands plus the ROS bag tools.

The ROS-free core (mtl_split_core.cli) knows only its own commands; this module adds the tools
that need rclpy to a copy of its table. Each tool's module provides ``add_arguments(parser)``
and ``run(args) -> int`` like the core's commands, and is imported only when it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mtl_split_core.cli.main import COMMANDS as CORE_COMMANDS
from mtl_split_core.cli.main import Command
from mtl_split_core.cli.main import main as dispatch

TOOL_COMMANDS: dict[str, Command] = {
    "replay": Command("mtl_split_tools.replay",
                      "publish a bag's messages with their recorded timing"),
    "record": Command("mtl_split_tools.record", "record topics into an MCAP rosbag2"),
    "process": Command("mtl_split_tools.process",
                       "run edge + server over the image topics of a bag"),
    "fleet": Command("mtl_split_tools.fleet_status",
                     "fleet status: live table of the pool's servers and the robots"),
}
COMMANDS: dict[str, Command] = {**CORE_COMMANDS, **TOOL_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    """`mtl-split` with every command; returns the exit status."""
    return dispatch(argv, COMMANDS)


if __name__ == "__main__":  # spawned workers re-import this module: never run main() there
    sys.exit(main())
