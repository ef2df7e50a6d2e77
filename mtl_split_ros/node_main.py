"""A node process's main loop, and the executables' entry that starts DDS discovery first.

A restarted node is useful only once its peers have matched it. Participant discovery takes
0.1-3 s (Fast DDS announces a participant a few times at start, then every 3 s); importing the
network stack (torch) takes ~1.2 s on a small CPU. ``run_node_lazily`` creates the DDS participant
(a hidden boot node) before importing the node's module, so the two overlap.

A node may also ask for rmw_fastrtps's asynchronous publication (``publication_mode``): its
``publish`` then hands the message to a Fast DDS thread instead of sending it on the caller's
thread, which in rclpy holds the GIL through the whole DDS write. The server asks for it
(``SERVER_PUBLICATION_MODE``); the environment's own ``RMW_FASTRTPS_PUBLICATION_MODE`` wins.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from mtl_split_ros.params import ParameterError
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly

# Hidden (leading underscore: not in `ros2 node list`); one per process, gone once the node is up.
BOOT_NODE = "_mtl_split_boot"
# A node's ``executor_kind`` attribute picks one (the nodes' ``executor`` parameter).
EXECUTORS = ("single", "events")
# rmw_fastrtps reads it when the context starts (SYNCHRONOUS, ASYNCHRONOUS or AUTO).
PUBLICATION_MODE_VARIABLE = "RMW_FASTRTPS_PUBLICATION_MODE"
# The fleet server publishes three maps per frame: sent on Fast DDS's own thread, the writes no
# longer hold the GIL its worker needs (H100, 34 robots, alternating pairs: +5-10% frames/s,
# one robot within noise; docs/BENCHMARKS.md, "Asynchronous publication").
SERVER_PUBLICATION_MODE = "ASYNCHRONOUS"


def default_publication_mode(mode: str | None) -> None:
    """Ask for rmw_fastrtps's publication ``mode`` in this process unless the environment names
    one already (or ``mode`` is None); before the context starts."""
    if mode is not None:
        os.environ.setdefault(PUBLICATION_MODE_VARIABLE, mode)


def make_executor(kind: str, node: Node) -> Executor:
    """rclpy's SingleThreadedExecutor, or its EventsExecutor (C++; Kilted and newer): that one
    does not rebuild a wait set in Python on every wait, which held a fleet server's GIL most
    of the time (docs/BENCHMARKS.md, "One server, many robots"). Without it: the single one,
    with a warning."""
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            node.get_logger().warning("executor: events needs rclpy's EventsExecutor (ROS 2 "
                                      "Kilted or newer); running the single-threaded one")
        else:
            return EventsExecutor()
    return SingleThreadedExecutor()


def run_node(make_node: Callable[[], Node], args: list[str] | None = None, *,
             discover_first: bool = False, publication_mode: str | None = None) -> int:
    """Create and spin a node until SIGINT/SIGTERM; exit code 0, or 2 for bad parameters.

    ``discover_first``: create the context's DDS participant (a hidden boot node) before
    ``make_node`` runs, so discovery overlaps whatever ``make_node`` imports and loads.
    ``publication_mode``: ``default_publication_mode``'s.
    Shutdown order: stop spinning, ``node.close()`` (stops and joins the node's workers), destroy
    the node, shut the context down — so no thread ever touches a dead node or context.
    """
    default_publication_mode(publication_mode)
    with StopSignals() as stop:
        init_without_signal_handlers(args)
        node: Node | None = None
        executor: Executor | None = None
        # use_global_arguments=False: the command line's `__node:=` / `__ns:=` (ros2 launch
        # passes them) are the real node's; a boot node that took them too shared its name,
        # and `ros2 node info` / `ros2 topic info -v` then showed that name with nothing.
        boot = rclpy.create_node(BOOT_NODE, start_parameter_services=False,
                                 enable_rosout=False, use_global_arguments=False
                                 ) if discover_first else None
        try:
            node = make_node()
            if boot is not None:
                boot.destroy_node()
                boot = None
            executor = make_executor(getattr(node, "executor_kind", "single"), node)
            executor.add_node(node)
            while not stop.is_set() and executor.context.ok():  # a node may end it itself
                executor.spin_once(timeout_sec=0.1)
        except ParameterError as err:
            print(f"[FATAL] {err}", file=sys.stderr, flush=True)
            return 2
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if node is not None:
                close = getattr(node, "close", None)
                if close:
                    close()
            if executor is not None:
                executor.shutdown()
            for n in (node, boot):
                if n is not None:
                    n.destroy_node()
            shutdown_quietly()
    return 0


def run_node_lazily(entry: str, args: list[str] | None = None, *,
                    publication_mode: str | None = None) -> int:
    """``run_node`` for the node class ``entry`` ("package.module:Class"), imported only after
    the DDS participant exists (the executables' entry)."""
    module, _, attribute = entry.partition(":")

    def make_node() -> Node:
        return getattr(importlib.import_module(module), attribute)()

    return run_node(make_node, args, discover_first=True, publication_mode=publication_mode)
