"""The `mtl-split` command: one entry point, one module per subcommand.

Subcommands register themselves in ``SUBCOMMANDS`` as (module, help); each module provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so `mtl-split --help` stays fast and ROS-only subcommands (replay, record)
do not make the core depend on rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module implementing it, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "gen-data": ("mtl_split_core.cli_data", "render a simulated dataset (and pack shards)"),
    "train": ("mtl_split_core.cli_train", "train a multi-task split model from shards"),
    "eval": ("mtl_split_core.cli_eval", "evaluate a model for a split point and codec"),
    "profile": ("mtl_split_core.cli_profile", "measure per-split timings and bytes on a device"),
    "plan": ("mtl_split_core.cli_plan", "choose the split point for a link"),
    "replay": ("mtl_split_tools.replay", "publish a bag's messages with their recorded timing"),
    "record": ("mtl_split_tools.record", "record topics into an MCAP rosbag2"),
    "process": ("mtl_split_tools.process", "run edge + server over the image topics of a bag"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-split",
        description="MTL-Split: a multi-task network split between a robot and a server.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse the command name first, then let its module declare the rest of its arguments.
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    if getattr(known, "command", None) is None:
        parser.print_help()
        return 0 if any(a in ("-h", "--help") for a in argv) or not argv else 2
    module = importlib.import_module(known._module)
    sub = argparse.ArgumentParser(prog=f"mtl-split {known.command}",
                                  description=SUBCOMMANDS[known.command][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
