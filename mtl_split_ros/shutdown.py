"""Clean stop on SIGINT / SIGTERM for nodes and tools.

rclpy's own handlers shut the context down from inside the signal (worker threads then publish
into a dead context, spin raises KeyboardInterrupt/ExternalShutdownException mid-call, SIGTERM
ends the process from a C++ handler). Instead, ``init_without_signal_handlers`` starts rclpy
without them and ``StopSignals`` only records the request: the main loop sees it, stops its
workers, then destroys the node and shuts the context down, in that order.
"""

from __future__ import annotations

import rclpy
from rclpy.signals import SignalHandlerOptions

from mtl_split_core.signals import STOP_SIGNALS, StopSignals

# StopSignals is ROS-free (mtl-split process uses it without rclpy); re-exported here.
__all__ = ["STOP_SIGNALS", "StopSignals", "init_without_signal_handlers", "shutdown_quietly"]


def init_without_signal_handlers(args: list[str] | None = None) -> None:
    """``rclpy.init`` leaving SIGINT/SIGTERM to ``StopSignals``."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def shutdown_quietly() -> None:
    """Shut the default context down if it is still up."""
    rclpy.try_shutdown()
