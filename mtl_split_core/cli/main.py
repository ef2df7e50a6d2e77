"""The dispatcher: a table of commands, each a module with ``add_arguments`` and ``run``.

A command's module is imported only when that command runs, so `mtl-split --help` is fast and
commands needing heavy or ROS-only libraries cost nothing to the others.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from mtl_split_core.errors import InputError

PROG = "mtl-split"


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line (no wrapped usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class Command:
    """A command's module (providing ``add_arguments(parser)`` and ``run(args) -> int``) and
    its one-line help."""

    module: str
    help: str


# The core's commands; mtl_split_tools.cli adds the ROS tools to a copy of this table.
COMMANDS: dict[str, Command] = {
    "gen-data": Command("mtl_split_core.cli.gen_data",
                        "render a simulated dataset (and pack shards)"),
    "train": Command("mtl_split_core.cli.train", "train a multi-task split model from a dataset"),
    "train-eb": Command("mtl_split_core.cli.train_entropy",
                        "entropy-coded codecs (eb-<k>/1) for a trained model: fine-tune its "
                        "bottleneck with a rate term, freeze the tables"),
    "eval": Command("mtl_split_core.cli.evaluate",
                    "evaluate a model for a split point and codec"),
    "profile": Command("mtl_split_core.cli.profile",
                       "measure per-split timings and bytes on a device"),
    "plan": Command("mtl_split_core.cli.plan", "choose the split point for a link"),
    "dataset": Command("mtl_split_core.cli.dataset", "make a data set from a robot's bag "
                       "(from-bag) and attach COCO labels (add-labels)"),
    "keygen": Command("mtl_split_core.cli.keygen",
                      "make a key file (or add a key) for authenticated features"),
    "export": Command("mtl_split_core.cli.export",
                      "export a model's edge and server halves to ONNX"),
}


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The top-level parser: lists the commands; their own arguments are added on use."""
    parser = Parser(
        prog=PROG, description="MTL-Split: a multi-task network split between a robot and a "
        "server. `mtl-split COMMAND --help` shows a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands.items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None,
         commands: Mapping[str, Command] = COMMANDS) -> int:
    """Run one command; returns its exit status (2 for bad arguments or unusable input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser(commands)
    if not argv or argv[0] not in commands:
        top.parse_args(argv[:1])  # prints help (exit 0) or usage + the error (exit 2)
        top.error("the following arguments are required: COMMAND")
    name, command = argv[0], commands[argv[0]]
    module = importlib.import_module(command.module)
    parser = Parser(prog=f"{PROG} {name}", description=command.help)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    # SIGTERM (a supervisor, `timeout`, `kill`) ends a command like Ctrl-C: one line, exit 0.
    # SIGALRM is the retry of a signal that came during an import (see _interrupt).
    previous = {sig: signal.signal(sig, _interrupt) for sig in _INTERRUPTS}
    try:
        return int(module.run(args) or 0)
    except InputError as err:
        print(f"{PROG} {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {name}: interrupted", file=sys.stderr)
        return 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
_IMPORT_RETRY_S = 0.02


def _interrupt(_signum: int, frame: FrameType | None) -> None:
    """KeyboardInterrupt in the main thread, unless a module is being imported there.

    A compiled module's initialisation can swallow an exception raised inside it: numpy.random's
    (Cython, imported on first use) did in 1 run of 15 when gen-data was stopped early, and the
    command then ran to its end. So during an import the interrupt is retried a moment later.
    """
    if _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, _IMPORT_RETRY_S)
        return
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
