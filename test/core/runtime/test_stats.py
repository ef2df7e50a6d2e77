"""Run-time statistics: rolling percentiles, frame rate with a fake clock, named counters,
recent events."""

import json
import math
import threading

import numpy as np
import pytest

from mtl_split_core.runtime.stats import Counters, RateMeter, RecentEvents, RollingStats


class FakeClock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rolling_percentiles_match_numpy_over_the_window():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 10.0, size=500)
    stats = RollingStats(window=300)
    for v in values:
        stats.add(v)
    window = values[-300:]
    assert stats.p50 == pytest.approx(np.percentile(window, 50), rel=1e-12)
    assert stats.p95 == pytest.approx(np.percentile(window, 95), rel=1e-12)
    assert stats.percentile(99) == pytest.approx(np.percentile(window, 99), rel=1e-12)
    assert stats.mean == pytest.approx(window.mean(), rel=1e-12)
    assert stats.max == window.max()
    assert stats.count == 500 and len(stats) == 300  # count = frames ever, not the window


def test_rolling_empty_and_non_finite():
    stats = RollingStats()
    assert math.isnan(stats.p50) and math.isnan(stats.mean) and stats.count == 0
    assert json.loads(json.dumps(stats.as_dict("edge_ms_")))["edge_ms_p95"] is None
    stats.add(float("nan"))
    stats.add(float("inf"))
    stats.add(4.0)
    assert stats.count == 1 and stats.p95 == 4.0
    assert stats.as_dict()["p50"] == 4.0
    with pytest.raises(ValueError):
        RollingStats(window=0)


def test_rate_meter_steady_stream_then_stall():
    clock = FakeClock()
    meter = RateMeter(window_s=5.0, clock=clock)
    assert meter.fps() == 0.0
    meter.tick()
    assert meter.fps() == 0.0  # one tick is no rate yet
    for _ in range(99):        # 10 Hz for ~10 s: only the last 5 s count
        clock.t += 0.1
        meter.tick()
    assert meter.fps() == pytest.approx(10.0)
    assert meter.count == 100
    clock.t += 0.05            # between two frames: still exactly 10 Hz
    assert meter.fps() == pytest.approx(10.0)
    clock.t += 1.0             # stalled: the rate decays instead of freezing
    stalled = meter.fps()
    assert 0.0 < stalled < 10.0
    clock.t += 2.0
    assert meter.fps() < stalled
    clock.t += 5.0             # nothing left in the window
    assert meter.fps() == 0.0


def test_rate_meter_explicit_timestamps_and_rate_change():
    clock = FakeClock(0.0)
    meter = RateMeter(window_s=2.0, clock=clock)
    for i in range(41):        # 20 Hz for 2 s
        meter.tick(i * 0.05)
    clock.t = 2.0
    assert meter.fps() == pytest.approx(20.0)
    for i in range(1, 11):     # then 5 Hz: after the window has passed only 5 Hz remains
        meter.tick(2.0 + i * 0.2)
    clock.t = 4.0
    assert meter.fps() == pytest.approx(5.0)
    with pytest.raises(ValueError):
        RateMeter(window_s=0)


def test_counters():
    counts = Counters()
    assert counts.get("drops") == 0 and counts["drops"] == 0
    counts.inc("drops")
    counts.inc("drops")
    assert counts.inc("bad_image", 3) == 3
    assert counts.as_dict() == {"bad_image": 3, "drops": 2}
    assert list(counts.as_dict()) == ["bad_image", "drops"]  # sorted: stable diagnostics
    assert counts.total == 5
    snapshot = counts.as_dict()
    counts.inc("drops")
    assert snapshot["drops"] == 2  # a copy


def test_stats_tolerate_a_reader_thread():
    # Nodes add from the worker thread while the diagnostics timer reads.
    stats, counts = RollingStats(window=50), Counters()
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            stats.add(i % 7)
            counts.inc("frames")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            assert stats.p95 >= 0 or math.isnan(stats.p95)
            counts.as_dict()
    finally:
        stop.set()
        thread.join()
    assert counts["frames"] == stats.count


def test_recent_events_forget_the_past_but_keep_the_totals():
    clock = FakeClock()
    events = RecentEvents(window_s=10.0, clock=clock)
    for _ in range(3):
        events.add("bad_image")
    assert events.add("internal_ValueError") == 1
    assert events.recent() == {"bad_image": 3, "internal_ValueError": 1}
    clock.t += 6.0
    events.add("bad_image")
    clock.t += 5.0  # the first four are now 11 s old
    assert events.recent() == {"bad_image": 1}
    clock.t += 5.1
    assert events.recent() == {}
    assert events.totals() == {"bad_image": 4, "internal_ValueError": 1}
    assert events.total() == 5 and events.total("bad_image") == 4 and events.total("x") == 0


def test_recent_events_need_a_positive_window():
    with pytest.raises(ValueError, match="window_s"):
        RecentEvents(window_s=0)
