"""`python -m mtl_split_core.cli`: the core's commands only (no ROS tools)."""

from __future__ import annotations

import sys

from mtl_split_core.cli.main import main

if __name__ == "__main__":  # spawned workers re-import this module: never run main() there
    sys.exit(main())
