"""A worker thread under a watchdog: restarted when it stalls or dies.

A node's worker takes input from newest-frame slots and runs the network. Per-message isolation
(``isolation.handle_isolated``) keeps one bad message from ending it, but a hang (a deadlock,
a driver call that never returns) or a ``BaseException`` still would, silently: the node keeps
spinning and answers nothing. ``SupervisedWorker.check`` (called from a timer of the node's
executor) notices both, logs an error, reports it on /diagnostics (``problem``) and starts a
fresh thread. Python cannot kill a thread: a stalled one is abandoned (counted; its output gate
is revoked, so whatever it finishes later is never published).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.impl.rcutils_logger import RcutilsLogger

from mtl_split_core.runtime.output_gate import OutputGate
from mtl_split_core.runtime.stats import RECENT_S, RecentEvents

STALLED = "stalled"
DIED = "died"


class SupervisedWorker:
    """Calls ``step()`` in a loop on a daemon thread that ``check()`` replaces when needed.

    ``step`` waits for input itself (a slot's ``take`` with a short timeout) and handles it.
    ``waiting_s()`` says how long input has waited untaken: above ``stall_timeout`` the worker
    counts as stalled (no progress while input waits). A thread that ended while the worker
    was not stopped died. Incidents stay on /diagnostics (ERROR) for ``window_s`` seconds.
    """

    def __init__(self, name: str, step: Callable[[], None], waiting_s: Callable[[], float],
                 gate: OutputGate, logger: RcutilsLogger, stall_timeout: float = 10.0,
                 window_s: float = RECENT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.stall_timeout = float(stall_timeout)
        self._step = step
        self._waiting_s = waiting_s
        self._gate = gate
        self._logger = logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.incidents = RecentEvents(window_s, clock)
        self.abandoned = 0

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread = thread  # set before it runs: _run checks it is still the current one
        thread.start()

    def _run(self) -> None:
        me = threading.current_thread()
        while not self._stop.is_set() and self._thread is me:
            self._step()

    def check(self) -> None:
        """Restart the worker if it died or stalled (call periodically)."""
        thread = self._thread
        if self._stop.is_set() or thread is None:
            return
        if not thread.is_alive():
            kind, detail = DIED, "the worker thread ended"
        elif (waited := self._waiting_s()) > self.stall_timeout:
            kind, detail = STALLED, f"input waited {waited:.1f} s (stall_timeout " \
                                    f"{self.stall_timeout:g} s); thread abandoned"
            self._gate.revoke(thread)
            self.abandoned += 1
        else:
            return
        count = self.incidents.add(kind)
        self._logger.error(f"worker {kind} ({count} so far): {detail}; restarting it")
        self.start()

    def problem(self) -> str | None:
        """An ERROR message while an incident happened within the window, else None."""
        recent = self.incidents.recent()
        if not recent:
            return None
        return "worker " + " and ".join(k for k in (STALLED, DIED) if k in recent) + \
            ", restarted"

    def values(self) -> dict[str, int]:
        """Diagnostics values: lifetime counts."""
        totals = self.incidents.totals()
        return {"worker_restarts": sum(totals.values()), "worker_stalls": totals.get(STALLED, 0),
                "worker_deaths": totals.get(DIED, 0), "worker_threads_abandoned": self.abandoned}

    def stop(self, timeout: float = 10.0) -> None:
        """Stop looping and wait for the current thread (the caller has closed the input)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def watchdog_period(stall_timeout: float) -> float:
    """Seconds between watchdog checks: a stall is seen within a quarter of its timeout."""
    return min(0.5, stall_timeout / 4)
