"""The newest-frame slot: at most one pending item, a new one replaces (drops) the old one.

How the nodes keep only the newest frame while busy instead of queueing without bound: the
subscription callback (or the inference worker) puts, a worker thread takes. ``waiting_s`` (how
long input has waited untaken) is what the watchdog looks at.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from mtl_split_core.runtime.stats import RECENT_S, RecentEvents

T = TypeVar("T")
D = TypeVar("D")  # what a merge drops (put_merged)


class LatestSlot(Generic[T]):
    def __init__(self, window_s: float = RECENT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._item: T | None = None
        self._cv = threading.Condition()
        self._clock = clock
        self._waiting_since: float | None = None  # when the slot last went from empty to full
        self.drops = RecentEvents(window_s, clock)
        self.closed = False

    def put(self, item: T) -> T | None:
        """Hold ``item``; return the unprocessed item it replaced (dropped), or None."""
        with self._cv:
            replaced = self._item
            if replaced is not None:
                self.drops.add("drops")
            else:
                self._waiting_since = self._clock()
            self._item = item
            self._cv.notify()
            return replaced

    def put_merged(self, item: T, merge: Callable[[T, T], tuple[T, list[D]]]) -> list[D]:
        """Like ``put``, but a held item is combined with ``item``: ``merge(held, item)``
        gives what to hold and the unprocessed items that drops (returned, each counted)."""
        with self._cv:
            held = self._item
            dropped: list[D] = []
            if held is None:
                self._waiting_since = self._clock()
                self._item = item
            else:
                self._item, dropped = merge(held, item)
            for _ in dropped:
                self.drops.add("drops")
            self._cv.notify()
            return dropped

    def count_drop(self) -> None:
        """Count an item dropped unprocessed after it was taken (a merged item not needed)."""
        self.drops.add("drops")

    def take(self, timeout: float = 0.2) -> T | None:
        """The pending item, or None after ``timeout`` seconds / when closed."""
        if self._item is None and timeout <= 0:  # nothing to wait for: no lock (a worker
            return None                          # looks at every robot's slot per batch)
        with self._cv:
            if self._item is None and not self.closed and timeout > 0:
                self._cv.wait(timeout)
            item, self._item = self._item, None
            self._waiting_since = None
            return item

    def waiting_s(self) -> float:
        """Seconds input has been waiting untaken (replacements included); 0 when empty."""
        with self._cv:
            since = self._waiting_since
        return 0.0 if since is None else self._clock() - since

    @property
    def dropped(self) -> int:
        """Items replaced before they were taken, since start."""
        return self.drops.total()

    def recent_drops(self) -> int:
        """Items replaced before they were taken, within the window."""
        return sum(self.drops.recent().values())

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()
