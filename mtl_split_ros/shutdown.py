"""Clean stop on SIGINT / SIGTERM for nodes and tools.

rclpy's own handlers shut the context down from inside the signal (worker threads then publish
into a dead context, spin raises KeyboardInterrupt/ExternalShutdownException mid-call, SIGTERM
ends the process from a C++ handler). Instead, ``init_without_signal_handlers`` starts rclpy
without them and ``StopSignals`` only records the request: the main loop sees it, stops its
workers, then destroys the node and shuts the context down, in that order.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import rclpy
from rclpy.signals import SignalHandlerOptions

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What signal.signal takes and returns: a function, SIG_DFL / SIG_IGN, or None (not set from
# Python).
SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class StopSignals:
    """While active (``with``), SIGINT and SIGTERM only record that a stop was requested.

    The handler sets a plain attribute: taking a lock (``threading.Event.set``) inside a signal
    handler can deadlock when the main thread holds that lock.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, SignalHandler] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def is_set(self) -> bool:
        return self.received is not None

    def wait(self, timeout: float, step: float = 0.05) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as a stop was requested."""
        end = time.monotonic() + timeout
        while not self.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, step))
        return True


def init_without_signal_handlers(args: list[str] | None = None) -> None:
    """``rclpy.init`` leaving SIGINT/SIGTERM to ``StopSignals``."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def shutdown_quietly() -> None:
    """Shut the default context down if it is still up."""
    rclpy.try_shutdown()
