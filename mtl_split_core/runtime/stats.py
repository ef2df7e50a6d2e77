"""Small run-time statistics for /diagnostics and the demo's metrics.json.

All classes are thread-safe: nodes record from their worker thread while a timer thread
reads for diagnostics (iterating a deque that another thread appends to raises).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

# Seconds of history behind diagnostic levels (rejections, drops, internal errors, restarts).
RECENT_S = 10.0

class RollingStats:
    """Rolling window of the last ``window`` values of any scalar (latency ms, bytes per frame).

    Percentiles use numpy's default (linear) interpolation over the window. With no values yet
    they are NaN (an honest "unknown"; ``as_dict`` turns them into None for JSON).
    Non-finite values are ignored rather than poisoning the window.
    """

    def __init__(self, window: int = 300):
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = int(window)
        self._values: deque[float] = deque(maxlen=self.window)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            return
        with self._lock:
            self._values.append(value)
            self._count += 1

    def _snapshot(self) -> np.ndarray:
        with self._lock:
            return np.array(self._values, dtype=np.float64)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the window; NaN if empty."""
        values = self._snapshot()
        return float(np.percentile(values, q)) if values.size else math.nan

    @property
    def p50(self) -> float:
        return self.percentile(50.0)

    @property
    def p95(self) -> float:
        return self.percentile(95.0)

    @property
    def mean(self) -> float:
        values = self._snapshot()
        return float(values.mean()) if values.size else math.nan

    @property
    def max(self) -> float:
        values = self._snapshot()
        return float(values.max()) if values.size else math.nan

    @property
    def count(self) -> int:
        """Values added since creation (not capped by the window): frames processed."""
        return self._count

    def __len__(self) -> int:
        """Values currently in the window."""
        return len(self._values)

    def as_dict(self, prefix: str = "") -> dict:
        """``{prefix}count/mean/p50/p95/max`` with None instead of NaN (valid JSON)."""
        values = {"count": self.count, "mean": self.mean, "p50": self.p50, "p95": self.p95,
                  "max": self.max}
        return {prefix + k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in values.items()}


class RateMeter:
    """Events per second over the last ``window_s`` seconds, from ``tick()`` timestamps.

    For a steady stream the rate is exact: (ticks - 1) / (newest - oldest). When the stream
    stalls (the time since the newest tick exceeds the average interval) the elapsed time up to
    *now* is used instead, so the rate decays towards 0 rather than freezing at its last value;
    it is 0.0 once fewer than two ticks remain in the window.
    ``clock`` defaults to ``time.monotonic`` and is injectable for tests.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._ticks: deque[float] = deque()
        self._count = 0
        self._lock = threading.Lock()

    def tick(self, t: float | None = None) -> None:
        """Record one event at ``t`` (default: now)."""
        t = self._clock() if t is None else float(t)
        with self._lock:
            self._ticks.append(t)
            self._count += 1
            self._expire(t)

    def _expire(self, now: float) -> None:
        while self._ticks and self._ticks[0] < now - self.window_s:
            self._ticks.popleft()

    def fps(self) -> float:
        now = self._clock()
        with self._lock:
            self._expire(now)
            n = len(self._ticks)
            if n < 2:
                return 0.0
            oldest, newest = self._ticks[0], self._ticks[-1]
        span = newest - oldest
        if now - newest > span / (n - 1):
            span = now - oldest  # stalled: count the silence too
        return (n - 1) / span if span > 0 else 0.0

    @property
    def count(self) -> int:
        """Ticks since creation."""
        return self._count


class Counters:
    """Named event counters (drops, rejections, ...): ``counts.inc('drops')``."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1) -> int:
        """Add ``n`` to ``name`` and return its new value."""
        with self._lock:
            value = self._counts.get(name, 0) + int(n)
            self._counts[name] = value
            return value

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    __getitem__ = get

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        """A sorted copy, safe to serialise while counting goes on."""
        with self._lock:
            return dict(sorted(self._counts.items()))


class RecentEvents:
    """Named events: lifetime counts plus the counts of the last ``window_s`` seconds.

    Diagnostic levels come from ``recent()`` (what happens now: a past burst of bad input no
    longer warns once the window has passed it) while ``totals()`` keeps the history.
    ``clock`` defaults to ``time.monotonic`` and is injectable for tests.
    """

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._events: deque[tuple[float, str]] = deque()
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> int:
        """Record one ``name`` event now; its lifetime count."""
        now = self._clock()
        with self._lock:
            self._events.append((now, name))
            self._expire(now)
            count = self._totals[name] = self._totals.get(name, 0) + 1
            return count

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._events.popleft()

    def recent(self) -> dict[str, int]:
        """Counts by name within the window (names without recent events are absent)."""
        with self._lock:
            self._expire(self._clock())
            counts: dict[str, int] = {}
            for _, name in self._events:
                counts[name] = counts.get(name, 0) + 1
            return counts

    def totals(self) -> dict[str, int]:
        """Lifetime counts by name (a copy)."""
        with self._lock:
            return dict(self._totals)

    def total(self, name: str | None = None) -> int:
        """The lifetime count of ``name``, or of all events."""
        with self._lock:
            return self._totals.get(name, 0) if name else sum(self._totals.values())
