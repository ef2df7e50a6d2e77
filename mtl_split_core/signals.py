"""SIGINT / SIGTERM as a request to stop, for the main loop to act on (ROS-free).

Nodes and tools stop their workers, close what they write and exit 0 instead of dying inside a
signal handler (mtl_split_ros.shutdown adds the rclpy side).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

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
