"""The `mtl-split` command of the ROS-free core.

Layout (parsing, command and library kept apart):

- ``main.py``: the dispatcher. ``COMMANDS`` names each command's module; ``main(argv, commands)``
  parses the command name, lets that module declare its arguments, runs it, and turns an
  ``InputError`` into one line on stderr and exit status 2.
- one module per command (``gen_data``, ``train``, ``evaluate``, ``profile``, ``plan``), each with
  ``add_arguments(parser)`` (parsing only) and ``run(args) -> int`` (calls library functions
  of the core; no plotting, measuring or file formats here).
- ``arguments.py``: argument types shared by several commands.

The ROS tools (replay, record, process) are added to the table by ``mtl_split_tools.cli``,
which is what the installed `mtl-split` runs; the core never names them.
"""

from __future__ import annotations

from mtl_split_core.cli.main import COMMANDS, Command, main

__all__ = ["COMMANDS", "Command", "main"]
