"""Counting what a node could not use: rejected inputs by reason, unexpected exceptions by
type, each logged once per period; and the isolation boundary of one item of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from mtl_split_core.runtime.stats import RECENT_S, RecentEvents

INTERNAL = "internal"  # reason prefix of unexpected exceptions: internal_<Type>
T = TypeVar("T")


class Logger(Protocol):
    """What rejections log through (a ROS node's logger, or ``logging``)."""

    def warning(self, message: str) -> Any: ...


class Rejections:
    """Counts rejected inputs by reason and logs one clear, rate-limited line per reason.

    Counts are kept for the node's lifetime and for the last ``window_s`` seconds: the
    diagnostics level comes from the recent ones (see ``problem``). Unexpected exceptions are
    counted by type as reason ``internal_<Type>``.
    """

    def __init__(self, logger: Logger, period_s: float = 5.0,
                 window_s: float = RECENT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._events = RecentEvents(window_s, clock)
        self._lock = threading.Lock()  # the worker logs while the diagnostics timer reads

    def __call__(self, reason: str, detail: str) -> None:
        count = self._events.add(reason)
        now = self._clock()
        with self._lock:
            if now - self._last.get(reason, -1e9) < self._period:
                return
            self._last[reason] = now
        self._logger.warning(f"dropped input ({reason}, {count} so far): {detail}")

    def internal(self, err: Exception, where: str) -> None:
        """An unexpected exception while handling one item (``where``: its stamp/frame)."""
        self(f"{INTERNAL}_{type(err).__name__}", f"{type(err).__name__}: {err} ({where})")

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the lifetime counts by reason."""
        return self._events.totals()

    def recent(self) -> dict[str, int]:
        """Counts by reason within the window."""
        return self._events.recent()

    @property
    def total(self) -> int:
        return self._events.total()

    def values(self) -> dict[str, int]:
        """Diagnostics values: ``rejected`` (lifetime), ``rejected_recent`` (window),
        ``rejected_<reason>`` each and ``rejected_internal`` (all unexpected exceptions)."""
        counts = self.counts
        internal = sum(v for k, v in counts.items() if k.startswith(INTERNAL + "_"))
        return {"rejected": sum(counts.values()), "rejected_recent": sum(self.recent().values()),
                f"rejected_{INTERNAL}": internal,
                **{f"rejected_{k}": v for k, v in sorted(counts.items())}}

    def problem(self) -> str | None:
        """A WARN message while inputs were rejected within the window, else None."""
        recent = self.recent()
        internal = sorted(k for k in recent if k.startswith(INTERNAL + "_"))
        if internal:
            return "internal errors: " + ", ".join(k[len(INTERNAL) + 1:] for k in internal)
        if recent:
            return "rejecting input: " + ", ".join(sorted(recent))
        return None


def run_isolated(handle: Callable[[T], None], item: T, rejections: Rejections,
                 describe: Callable[[T], str]) -> bool:
    """Run ``handle(item)``; an unexpected exception costs that item only: it is counted by
    type (reason ``internal_<Type>``) and logged rate-limited with ``describe(item)`` (its
    stamp and frame), so a worker thread survives whatever one item does to it. Whether
    ``handle`` returned normally."""
    try:
        handle(item)
    except Exception as err:  # noqa: BLE001 - the isolation boundary of one item
        rejections.internal(err, describe(item))
        return False
    return True
