"""Results leave a node only while it is open, and never from an abandoned worker thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class OutputGate:
    """A worker publishes (or hands a result on) through ``run``; ``close`` waits for a call in
    progress and after it nothing runs, so no worker publishes into a destroyed node or a
    shut-down context. ``revoke(thread)``: a worker thread the watchdog gave up on passes
    nothing more (its late result would be older than what its replacement produced meanwhile).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True
        self._revoked: set[threading.Thread] = set()

    def run(self, publish: Callable[..., None], *args: Any) -> bool:
        """``publish(*args)`` unless closed or called from a revoked thread; whether it ran."""
        with self._lock:
            if not self._open or threading.current_thread() in self._revoked:
                return False
            publish(*args)
            return True

    def revoke(self, thread: threading.Thread) -> None:
        with self._lock:
            self._revoked.add(thread)

    def close(self) -> None:
        with self._lock:
            self._open = False
