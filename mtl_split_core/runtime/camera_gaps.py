"""Frames a camera sent that the edge never saw, from the gaps in their header stamps.

The edge's image subscription keeps one sample (history depth 1, and a newest-frame slot
behind it): a frame DDS replaced before the callback ran, or one lost on the way, leaves no
trace there — except a gap in the stamps of the frames that did arrive. A camera stamps its
frames at a steady period T, so a stamp ``d`` after the previous one means ``round(d / T) - 1``
frames went missing.

T is inferred from the stamps, robustly: over the last ``window`` stamp differences, the 10th
percentile picks a difference that is one period even when up to nine tenths of the pairs
span a gap (a slow edge behind a depth-1 reader sees one frame in three); then T is, three
times over, the median of the differences within 1.5x of the estimate so far (a low
percentile of jittery stamps starts below T; each round takes in more of the one-period
differences and no two-period one). Stamp jitter up to +-20% of a period per stamp is told
apart from a missed frame.
A difference counts as a gap above 1.5 T (stamp jitter up to half a period is not a loss).
No gap is judged before ``min_deltas`` differences are known. A stamp that goes backwards (a
restarted driver, a looping bag, sim time reset) or jumps more than ``max_gap_periods``
periods (a paused camera: it did not send those frames) restarts the estimate and is counted
as a reset, not as missed frames; a repeated stamp is counted apart and ignored. Stamps of
zero (a driver that does not stamp) cannot be judged: counted as unstamped.

Time (``now``, seconds, monotonic) is passed in, for the recent counts; the class has no ROS
and no clock of its own, so every decision is testable with synthetic stamps.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

NS_PER_S = 1_000_000_000
GAP_FACTOR = 1.5  # a difference above this many periods is a gap
PERIOD_PERCENTILE = 10  # of the stamp differences: one period while >= 10% of pairs are adjacent


class StampGaps:
    """One camera's stamps -> frames missed (module docstring)."""

    def __init__(self, window: int = 64, min_deltas: int = 8, max_gap_periods: float = 50.0,
                 recent_s: float = 10.0) -> None:
        if not (window >= min_deltas >= 2 and max_gap_periods > GAP_FACTOR and recent_s > 0):
            raise ValueError(f"need window >= min_deltas >= 2, max_gap_periods > {GAP_FACTOR}, "
                             f"recent_s > 0; got {window}, {min_deltas}, {max_gap_periods}, "
                             f"{recent_s}")
        self.min_deltas, self.max_gap_periods = int(min_deltas), float(max_gap_periods)
        self.recent_s = float(recent_s)
        self._deltas: deque[int] = deque(maxlen=int(window))  # ns
        self._last: int | None = None
        self._period_ns: float | None = None
        self._recent: deque[tuple[float, int, int]] = deque()  # (now, seen, missed)
        self.seen = self.missed = self.resets = self.repeats = self.unstamped = 0

    @property
    def period_s(self) -> float | None:
        """The inferred frame period (None until ``min_deltas`` differences are known)."""
        return None if self._period_ns is None else self._period_ns / NS_PER_S

    def add(self, stamp_ns: int, now: float) -> int:
        """The edge received a frame stamped ``stamp_ns`` at ``now``; the frames missed right
        before it (0 when none or when it cannot be told)."""
        stamp = int(stamp_ns)
        self.seen += 1
        missed = self._judge(stamp)
        self._recent.append((float(now), 1, missed))
        self._expire(float(now))
        return missed

    def _judge(self, stamp: int) -> int:
        if stamp <= 0:
            self.unstamped += 1
            return 0
        last, self._last = self._last, stamp
        if last is None:
            return 0
        delta = stamp - last
        if delta == 0:
            self.repeats += 1
            return 0
        period = self._period_ns
        if delta < 0 or (period is not None and delta > self.max_gap_periods * period):
            self.resets += 1
            self._deltas.clear()
            self._period_ns = None
            return 0
        self._deltas.append(delta)
        missed = 0
        if period is not None and delta > GAP_FACTOR * period:
            missed = max(0, round(delta / period) - 1)
            self.missed += missed
        if len(self._deltas) >= self.min_deltas:
            self._period_ns = _period(self._deltas)
        return missed

    def _expire(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.recent_s:
            self._recent.popleft()

    def recent(self, now: float) -> tuple[int, int]:
        """(frames seen, frames missed) within the last ``recent_s`` seconds."""
        self._expire(float(now))
        return (sum(seen for _, seen, _ in self._recent),
                sum(missed for _, _, missed in self._recent))

    def values(self, now: float) -> dict[str, object]:
        """/diagnostics values: ``missed`` (lifetime), ``missed_recent``, ``seen_fraction_recent``
        (of the frames the camera sent recently, the share the edge saw; NaN before any
        judgement), ``period_ms`` (NaN while unknown), ``stamp_resets``, ``stamp_repeats``,
        ``unstamped``."""
        seen, missed = self.recent(now)
        period = self.period_s
        return {"missed": self.missed, "missed_recent": missed,
                "seen_fraction_recent": seen / (seen + missed) if period and seen else
                float("nan"),
                "period_ms": float("nan") if period is None else period * 1e3,
                "stamp_resets": self.resets, "stamp_repeats": self.repeats,
                "unstamped": self.unstamped}


def _period(deltas: deque[int]) -> float:
    """The frame period from stamp differences (module docstring). Runs on every image in
    the edge's receive callback: one sort of at most ``window`` ints, then every median is of
    a prefix of it (the differences within 1.5x of an estimate are the smallest ones), what
    numpy's percentile and median give, without their per-call overhead (1.2 ms of the
    callback's GIL time per frame on the 2-core CPU, bench/results/latency_cpu)."""
    values = sorted(deltas)
    estimate = _linear_percentile(values, PERIOD_PERCENTILE)
    for _ in range(3):
        estimate = _median_of_prefix(values, bisect.bisect_right(values, GAP_FACTOR * estimate))
    return estimate


def _linear_percentile(ordered: list[int], q: float) -> float:
    """numpy.percentile(ordered, q) (linear interpolation) of a sorted, non-empty list."""
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _median_of_prefix(ordered: list[int], count: int) -> float:
    """numpy.median of ``ordered[:count]`` (sorted; at least the smallest value counts: every
    estimate is at least the smallest difference, and 1.5x of it keeps that one)."""
    count = max(1, count)
    middle = count // 2
    return float(ordered[middle]) if count % 2 else (ordered[middle - 1] + ordered[middle]) / 2


MAX_FRAME_ID_CHARS = 64  # of a frame id in a /diagnostics key (it is input)


class CameraGaps:
    """``StampGaps`` per camera (header.frame_id), thread-safe: the image callback adds, the
    diagnostics timer reads. At most ``max_cameras`` are tracked (frame ids are input: a
    stream of new ones must not grow memory); frames of others are counted as untracked."""

    def __init__(self, max_cameras: int = 8,
                 make: Callable[[], StampGaps] = StampGaps) -> None:
        self.max_cameras = int(max_cameras)
        self._make = make
        self._cameras: OrderedDict[str, StampGaps] = OrderedDict()
        self._lock = threading.Lock()
        self.untracked = 0

    def add(self, frame_id: str, stamp_ns: int, now: float) -> int:
        """A frame of camera ``frame_id`` arrived; the frames of it missed right before."""
        with self._lock:
            gaps = self._cameras.get(frame_id)
            if gaps is None:
                if len(self._cameras) >= self.max_cameras:
                    self.untracked += 1
                    return 0
                gaps = self._cameras[frame_id] = self._make()
            return gaps.add(stamp_ns, now)

    def values(self, now: float) -> dict[str, object]:
        """``camera_<value>`` of each camera (``StampGaps.values``); with more than one
        camera each key ends in ``[frame_id]``."""
        out: dict[str, object] = {}
        with self._lock:
            for frame_id, gaps in self._cameras.items():
                suffix = "" if len(self._cameras) == 1 else \
                    f"[{frame_id[:MAX_FRAME_ID_CHARS]}]"
                out.update({f"camera_{k}{suffix}": v for k, v in gaps.values(now).items()})
            if self.untracked:
                out["camera_untracked_frames"] = self.untracked
        return out
