"""The server's side of the pool: which robots it takes, its measured capacity, and what it
announces (docs/POOL.md).

``ServerAdmission`` is fed by the server's scheduler — per arriving frame ``admit(robot,
now)`` (before the newest-frame slot: a refused robot's frame goes no further), per batch
``batch_done(frames, busy_s, now)``, per published frame ``served(robot, queue_ms,
latency_ms, now)``, per frame replaced unrun in a slot ``dropped(robot, now)`` — and builds
the announcement (``announcement(now)``) every period. Time is passed in (seconds,
monotonic); thread-safe (admission runs in subscription callbacks, batches in the worker,
announcements in a timer).

Capacity (frames/s), in this order:
1. ``capacity_fps`` when configured (> 0): a measured figure (bench/fleet, the capacity file
   of ``pool.launch.py servers:=auto``);
2. else the batch timings at the full batch (``BatchCapacity``): a batching worker's time per
   batch is a fixed part plus a part per frame (busy = a + b x frames), so frames / busy
   measured at low load (small batches) underestimates what it serves at ``max_batch`` (on
   an H100: 355-535 measured where one process served 1,007-1,139 frames/s,
   docs/BENCHMARKS.md "Failover"). The median busy time per batch size (the last
   ``per_size`` batches of each) is fitted with a, b >= 0 and the capacity taken at
   ``max_batch``: observed directly when batches of that size were seen, else the fit,
   bounded by max(1, max_batch / largest size seen) x the best rate seen (what it would be
   if the whole of a batch's time were fixed); one size seen: that bound. Taking one small
   size as seen made a lightly loaded server announce what its load asked of it, not what
   it can serve: on an H100 a server with one robot (batches of 1) announced 83 frames/s
   where one process serves 981, drew no robots in the rebalancing and refused the failover's
   (5.7 s blind, 2,101 local frames; bench/results/pool_gpu/run4). It leaves out the
   executor's admission and the publisher (a Python process, not its GPU, can be the limit),
   which step 3 catches;
3. either is lowered by saturation: while more than ``drop_tolerance`` of the frames that
   arrived in the window were dropped unrun (the server did not keep up) for ``overload_s``
   in a row, the capacity is what it served then; this holds ``saturation_s`` after the last
   such reading. One reading is not enough, and none is taken within ``window_s`` of a new
   robot's arrival: a start-up or a failover's burst (many robots found at once, their
   publishers made) would otherwise hold the capacity far below what the process serves for
   ``saturation_s`` and shed robots the pool has room for (both seen on an H100; a steady set
   of robots measures the process, a joining one its start-up).
Unknown capacity (nothing configured or measured yet): the server takes up to ``max_robots``.

Admission: a robot already served stays (while it keeps sending: silent for ``idle_s`` frees
its place). A new one is taken while the load plus its demand fits ``headroom`` of the
capacity. Until its rate is measured (``window_s``) its demand is the rate its edge announces
(SplitFeatures.send_fps, at most ``max_announced_fps``: a forged huge value cannot hold the
server's room) or ``new_robot_fps`` when it announces none (0), and never less than what has
arrived of it so far (a robot announcing less than it sends shows its rate within a bin).
A load over the capacity for ``overload_s`` sheds the newest robots until it fits
``headroom`` again (never the last one): they are refused for ``refuse_s``, named with their
reason in the announcement, and their edges move to another server.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from mtl_split_core.runtime.pool_announcement import (
    MAX_FPS,
    MAX_ROBOTS,
    Announcement,
    check_input_topic,
    check_server_id,
)

BIN_S = 0.25  # arrival counts are kept per bin: bounded memory whatever the rate


@dataclass(frozen=True)
class Admission:
    accepted: bool
    reason: str = ""  # why refused


class _Rate:
    """Events per second over ``window_s`` from counts per ``BIN_S`` bin (bounded)."""

    def __init__(self, window_s: float, start: float) -> None:
        self.window_s, self.start = window_s, start
        self._bins: deque[list[float]] = deque(maxlen=int(window_s / BIN_S) + 2)

    def add(self, now: float, n: int = 1) -> None:
        b = math.floor(now / BIN_S) * BIN_S
        if self._bins and self._bins[-1][0] == b:
            self._bins[-1][1] += n
        else:
            self._bins.append([b, float(n)])

    def rate(self, now: float) -> float:
        horizon = now - self.window_s
        count = sum(n for b, n in self._bins if b + BIN_S > horizon)
        span = min(self.window_s, max(now - self.start, BIN_S))
        return count / span


class _Robot:
    def __init__(self, now: float, window_s: float, assumed_fps: float) -> None:
        self.since = self.last_t = now
        self.assumed_fps = assumed_fps  # its demand until measured (announced or the default)
        self.arrived = _Rate(window_s, now)
        self.dropped = _Rate(window_s, now)


class BatchCapacity:
    """Frames/s of a batching worker at a batch size, from its batch timings (module
    docstring, step 2). Bounded memory: the last ``per_size`` busy times of each batch size
    up to ``MAX_BATCH``."""

    MAX_BATCH = 64          # sizes above are ignored (the scheduler's max_batch is <= 32)
    MIN_PER_SIZE = 3        # batches of one size before its median counts

    def __init__(self, per_size: int = 32, min_batches: int = 16) -> None:
        self.per_size, self.min_batches = int(per_size), int(min_batches)
        self._busy: dict[int, deque[float]] = {}
        self._count = 0
        self._fit: tuple[dict[int, float], float, float] | None = None  # cache, per add

    def add(self, frames: int, busy_s: float) -> None:
        if 1 <= frames <= self.MAX_BATCH and math.isfinite(busy_s) and 0 < busy_s < 60:
            self._busy.setdefault(int(frames), deque(maxlen=self.per_size)).append(busy_s)
            self._count = min(self._count + 1, self.min_batches)
            self._fit = None

    def model(self) -> tuple[dict[int, float], float, float] | None:
        """(median busy seconds per size with ``MIN_PER_SIZE`` batches, a, b) of busy = a +
        b x frames, weighted least squares over the medians (weights: their batch counts),
        a, b >= 0; None before ``min_batches`` or without a size of ``MIN_PER_SIZE``."""
        if self._fit is None and self._count >= self.min_batches:
            groups = {n: (float(np.median(v)), len(v)) for n, v in sorted(self._busy.items())
                      if len(v) >= self.MIN_PER_SIZE}
            if groups:
                self._fit = ({n: m for n, (m, _) in groups.items()}, *_fit_line(groups))
        return self._fit

    def fps(self, batch: int) -> float:
        """Frames/s at batches of ``batch`` frames (module docstring); NaN when unknown."""
        fit = self.model()
        if fit is None:
            return math.nan
        medians, a, b = fit
        rates = {n: n / m for n, m in medians.items()}
        if batch in medians:
            return rates[batch]
        bound = max(1.0, batch / max(medians)) * max(rates.values())
        if len(medians) == 1:  # no line through one point: all of its time taken as fixed
            return bound
        return min(batch / max(a + b * batch, 1e-9), bound)


def _fit_line(groups: dict[int, tuple[float, int]]) -> tuple[float, float]:
    """a, b >= 0 of y = a + b x, weighted least squares over {x: (y, weight)}."""
    x = np.array(list(groups), float)
    y = np.array([m for m, _ in groups.values()])
    w = np.array([c for _, c in groups.values()], float)
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    var = float(np.average((x - xm) ** 2, weights=w))
    b = float(np.average((x - xm) * (y - ym), weights=w)) / var if var > 0 else 0.0
    a = ym - b * xm
    if b < 0:   # bigger batches no slower: noise; all of it fixed
        return float(ym), 0.0
    if a < 0:   # superlinear: no fixed part, through the origin
        return 0.0, float(np.sum(w * x * y) / np.sum(w * x * x))
    return float(a), b


class ServerAdmission:
    """Admission, capacity and announcements of one pool server (module docstring)."""

    def __init__(self, server_id: str, input_topic: str, fingerprints: tuple[str, ...],
                 splits: tuple[int, ...] = (), codecs: tuple[str, ...] = (),
                 capacity_fps: float = 0.0, headroom: float = 0.9, max_robots: int = 64,
                 new_robot_fps: float = 30.0, max_announced_fps: float = 120.0,
                 idle_s: float = 2.0, window_s: float = 2.0, overload_s: float = 1.0,
                 refuse_s: float = 5.0, drop_tolerance: float = 0.05,
                 saturation_s: float = 10.0, max_batch: int = 8, per_size_batches: int = 32,
                 min_batches: int = 16, first_sequence: int | None = None) -> None:
        if not (0 <= capacity_fps <= MAX_FPS and 0 < headroom <= 1
                and 1 <= max_robots <= MAX_ROBOTS and 0 <= new_robot_fps <= MAX_FPS
                and 0 < max_announced_fps <= MAX_FPS
                and 0 < idle_s and BIN_S <= window_s and 0 <= overload_s and 0 < refuse_s
                and 0 <= drop_tolerance < 1 and 0 <= saturation_s
                and 1 <= max_batch <= BatchCapacity.MAX_BATCH and per_size_batches >= 1
                and min_batches >= 1):
            raise ValueError("ServerAdmission: parameter out of range (see its signature)")
        self.server_id = check_server_id(server_id)
        self.input_topic = check_input_topic(input_topic)
        self.fingerprints, self.splits, self.codecs = tuple(fingerprints), splits, codecs
        self.configured_fps = float(capacity_fps)
        self.headroom, self.max_robots = float(headroom), int(max_robots)
        self.new_robot_fps, self.idle_s, self.window_s = new_robot_fps, idle_s, window_s
        self.max_announced_fps = float(max_announced_fps)
        self.overload_s, self.refuse_s = overload_s, refuse_s
        self.drop_tolerance, self.saturation_s = drop_tolerance, saturation_s
        self.max_batch = int(max_batch)  # the scheduler's; a node sets it when it changes
        self._lock = threading.Lock()
        self._robots: OrderedDict[str, _Robot] = OrderedDict()   # in admission order
        self._refused: OrderedDict[str, tuple[float, str]] = OrderedDict()  # until, reason
        self._batches = BatchCapacity(per_size_batches, min_batches)
        self._queue_ms: deque[float] = deque(maxlen=512)
        self._latency_ms: deque[float] = deque(maxlen=512)
        self._saturated: tuple[float, float] | None = None  # (last reading, served fps)
        self._dropping_since: float | None = None  # first of the readings over tolerance
        self._joined_t = -math.inf  # when the last new robot was taken
        self._over_since: float | None = None
        self._sequence = time.time_ns() if first_sequence is None else int(first_sequence)
        self.counts: dict[str, int] = {}

    # ------------------------------------------------------------------------- inputs
    def admit(self, robot: str, now: float, announced_fps: float = 0.0) -> Admission:
        """A frame of ``robot`` arrived: take it (counted into the load) or refuse it.
        ``announced_fps``: the frames/s its edge says it sends (0 = unknown)."""
        with self._lock:
            self._expire(now)
            assumed = self._assumed_fps(announced_fps)
            known = self._robots.get(robot)
            if known is None:
                refused = self._refused.get(robot)
                why = refused[1] if refused is not None else self._no_room(now, assumed)
                if why:
                    self._count("refused_frames")
                    if refused is None:
                        self._refuse(robot, now, why)
                    return Admission(False, why)
                known = self._robots[robot] = _Robot(now, self.window_s, assumed)
                self._joined_t = now
                self._count("admitted_robots")
            known.last_t, known.assumed_fps = now, assumed
            known.arrived.add(now)
            return Admission(True)

    def batch_done(self, frames: int, busy_s: float, now: float) -> None:
        """The worker ran ``frames`` frames as one batch in ``busy_s`` seconds."""
        with self._lock:
            self._batches.add(frames, busy_s)

    def served(self, robot: str, queue_ms: float, latency_ms: float, now: float) -> None:
        """A frame of ``robot`` was published: it waited ``queue_ms`` for its batch and took
        ``latency_ms`` from arrival to published."""
        with self._lock:
            for values, v in ((self._queue_ms, queue_ms), (self._latency_ms, latency_ms)):
                if math.isfinite(v) and 0 <= v < 6e4:
                    values.append(float(v))

    def dropped(self, robot: str, now: float) -> None:
        """A frame of ``robot`` was replaced unrun in its newest-frame slot."""
        with self._lock:
            known = self._robots.get(robot)
            if known is not None:
                known.dropped.add(now)

    # ------------------------------------------------------------------------- state
    def _expire(self, now: float) -> None:
        for robot in [r for r, s in self._robots.items() if now - s.last_t >= self.idle_s]:
            del self._robots[robot]
        for robot in [r for r, (until, _) in self._refused.items() if now >= until]:
            del self._refused[robot]

    def _load(self, now: float) -> float:
        return sum(self._demand(r, now) for r in self._robots.values())

    def _assumed_fps(self, announced_fps: float) -> float:
        """A new robot's demand until measured: its announced rate, bounded by
        ``max_announced_fps``; ``new_robot_fps`` when it announces none (0 or not a number)."""
        if math.isfinite(announced_fps) and announced_fps > 0:
            return min(float(announced_fps), self.max_announced_fps)
        return self.new_robot_fps

    def _demand(self, robot: _Robot, now: float) -> float:
        """A robot's frames/s; while younger than the window, at least its assumed rate (its
        first frames do not show its rate yet)."""
        rate = robot.arrived.rate(now)
        return rate if now - robot.since >= self.window_s else max(rate, robot.assumed_fps)

    def compute_fps(self) -> float:
        """The batch timings' frames/s at ``max_batch`` (``BatchCapacity``); NaN when
        unknown."""
        return self._batches.fps(self.max_batch)

    def capacity(self, now: float) -> float:
        """The capacity in force (module docstring); NaN when unknown."""
        base = self.configured_fps if self.configured_fps > 0 else self.compute_fps()
        if self._saturated is not None and now - self._saturated[0] < self.saturation_s:
            return self._saturated[1] if math.isnan(base) else min(base, self._saturated[1])
        return base

    def _check_saturation(self, now: float) -> None:
        if now - self._joined_t < self.window_s:
            # Drops while robots join (a start, a failed server's robots arriving: outputs'
            # publishers made, first frames) say nothing about the process's steady rate; a
            # reading then held a configured 1,200 frames/s at 190 for saturation_s and the
            # survivor of a failover refused its new robots (H100, 2026-12-06).
            self._dropping_since = None
            return
        arrived = sum(r.arrived.rate(now) for r in self._robots.values())
        dropped = sum(r.dropped.rate(now) for r in self._robots.values())
        if not (arrived > 0 and dropped > self.drop_tolerance * arrived):
            self._dropping_since = None
            return
        if self._dropping_since is None:
            self._dropping_since = now
        if now - self._dropping_since >= self.overload_s:
            self._saturated = (now, max(arrived - dropped, 1.0))

    def _no_room(self, now: float, demand: float) -> str:
        """Why a new robot of ``demand`` frames/s cannot be taken now ('' = it can)."""
        if len(self._robots) >= self.max_robots:
            return f"full: {len(self._robots)} robots (max_robots {self.max_robots})"
        capacity = self.capacity(now)
        load = self._load(now)
        if not math.isnan(capacity) and load + demand > self.headroom * capacity:
            return f"full: load {load:.0f} of {capacity:.0f} frames/s"
        return ""

    def _refuse(self, robot: str, now: float, why: str) -> None:
        self._refused[robot] = (now + self.refuse_s, why)
        self._refused.move_to_end(robot)
        while len(self._refused) > MAX_ROBOTS:
            self._refused.popitem(last=False)

    def _shed(self, now: float) -> None:
        """Over capacity for ``overload_s``: refuse the newest robots until the rest fit."""
        capacity, load = self.capacity(now), self._load(now)
        if math.isnan(capacity) or load <= capacity:
            self._over_since = None
            return
        if self._over_since is None:
            self._over_since = now
        if now - self._over_since < self.overload_s:
            return
        why = f"overloaded: load {load:.0f} > capacity {capacity:.0f} frames/s"
        while len(self._robots) > 1 and load > self.headroom * capacity:
            robot, state = self._robots.popitem(last=True)
            load -= self._demand(state, now)
            self._refuse(robot, now, why)
            self._count("shed_robots")
        self._over_since = None

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    # ------------------------------------------------------------------------- output
    def announcement(self, now: float) -> Announcement:
        """The next announcement (sheds robots first when overloaded)."""
        with self._lock:
            self._expire(now)
            self._check_saturation(now)
            self._shed(now)
            self._sequence += 1
            return self._build(now)

    def _build(self, now: float) -> Announcement:
        # `accepting` speaks for a robot of the default demand (the announcement has no
        # per-demand answer; an edge checks its own demand against the capacity too).
        capacity, why = self.capacity(now), self._no_room(now, self.new_robot_fps)
        return Announcement(
            server_id=self.server_id, sequence=self._sequence, input_topic=self.input_topic,
            fingerprints=self.fingerprints, splits=self.splits, codecs=self.codecs,
            capacity_fps=0.0 if math.isnan(capacity) else min(capacity, MAX_FPS),
            load_fps=min(self._load(now), MAX_FPS),
            queue_ms=_p(self._queue_ms, 50), latency_ms_p99=_p(self._latency_ms, 99),
            robots=tuple(self._robots), accepting=not why, refusal=why,
            refused=tuple((r, w) for r, (_, w) in self._refused.items()))

    def values(self, now: float) -> dict[str, object]:
        """The /diagnostics key/values (docs/POOL.md): what the next announcement would say,
        the compute bound and the counts (``admitted_robots``, ``refused_frames``,
        ``shed_robots``)."""
        with self._lock:
            self._expire(now)
            ann = self._build(now)
            counts = dict(sorted(self.counts.items()))
            compute, fit = self.compute_fps(), self._batches.model()
        return {"pool_server_id": self.server_id, "pool_capacity_fps": ann.capacity_fps,
                "pool_compute_fps": compute,
                "pool_batch_fixed_ms": math.nan if fit is None else fit[1] * 1e3,
                "pool_batch_frame_ms": math.nan if fit is None else fit[2] * 1e3,
                "pool_load_fps": ann.load_fps,
                "pool_queue_ms": ann.queue_ms, "pool_latency_ms_p99": ann.latency_ms_p99,
                "pool_robots": len(ann.robots), "pool_refused": len(ann.refused),
                "pool_accepting": ann.accepting, "pool_refusal": ann.refusal,
                **{f"pool_{k}": v for k, v in counts.items()}}


def _p(values: deque[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else math.nan
