"""LinkMonitor: goodput, RTT, loss, silence and bounded memory on synthetic feedback traces
(time passed in, no sleeps)."""

import math

import pytest

from mtl_split_core.runtime.link import DROPPED, SERVED, LinkMonitor

NS = 1_000_000_000


def stamp(t: float) -> int:
    return int(round(t * NS))


def steady(monitor: LinkMonitor, seconds: float, fps: float, nbytes: int, net_ms: float,
           server_ms: float, t0: float = 0.0, answer=lambda i: SERVED) -> float:
    """Send ``fps`` frames per second for ``seconds``; each one answered ``net_ms +
    server_ms`` later with status ``answer(i)`` (None: never answered). Returns the end time."""
    events = []  # (time, kind, stamp, status)
    n = int(round(seconds * fps))
    for i in range(n):
        t = t0 + i / fps
        events.append((t, 0, stamp(t), None))
        status = answer(i)
        if status is not None:
            events.append((t + (net_ms + server_ms) / 1e3, 1, stamp(t), status))
    for t, kind, s, status in sorted(events):
        if kind == 0:
            monitor.sent(s, nbytes, t)
        else:
            assert monitor.feedback(s, status, server_ms, t) in ("served", "dropped")
    return t0 + n / fps


def test_steady_trace_goodput_rtt_and_rates():
    monitor = LinkMonitor(window_s=2.0, timeout_s=2.0)
    end = steady(monitor, 5.0, fps=30, nbytes=2000, net_ms=10.0, server_ms=5.0)
    s = monitor.stats(end)
    # 30 frames/s of 2000 bytes acknowledged: 480 kbit/s (the window holds 2 s of answers).
    assert s.goodput_bps == pytest.approx(30 * 2000 * 8, rel=0.03)
    assert s.rtt_ms_p50 == pytest.approx(10.0, abs=1e-6)       # minus the server's 5 ms
    assert s.server_ms_p50 == pytest.approx(5.0)
    assert s.effective_bps == pytest.approx(2000 * 8 / 0.010, rel=1e-6)  # one frame per RTT
    assert s.bandwidth_bps() == pytest.approx(s.effective_bps)
    assert s.nbytes_p50 == 2000
    assert s.fps_sent == pytest.approx(30, rel=0.03) and s.fps_served == pytest.approx(30, rel=0.03)
    assert s.loss == 0.0 and s.server_drop_rate == 0.0
    assert s.silent_s == pytest.approx(1 / 30 - 0.015, abs=1e-6)  # last answer 15 ms after send
    assert s.unanswered_s == 0.0 and s.pending == 0 and s.answered
    assert s.counts == {"sent": 150, "served": 150}


def test_the_estimate_follows_a_slower_link_within_a_few_frames():
    monitor = LinkMonitor(window_s=2.0, recent=8)
    t = steady(monitor, 3.0, fps=20, nbytes=1000, net_ms=5.0, server_ms=2.0)
    fast = monitor.stats(t)
    assert fast.effective_bps == pytest.approx(1000 * 8 / 0.005)
    # Ten frames (0.5 s) at 50 ms: the newest eight say so; the 2 s RTT median does not yet.
    t = steady(monitor, 0.5, fps=20, nbytes=1000, net_ms=50.0, server_ms=2.0, t0=t)
    s = monitor.stats(t)
    assert s.effective_bps == pytest.approx(1000 * 8 / 0.050)
    assert s.rtt_ms_p50 == pytest.approx(5.0)
    assert s.goodput_bps == pytest.approx(fast.goodput_bps, rel=0.1)  # the rate did not change
    t = steady(monitor, 3.0, fps=20, nbytes=1000, net_ms=50.0, server_ms=2.0, t0=t)
    assert monitor.stats(t).rtt_ms_p50 == pytest.approx(50.0)


def test_forget_drops_the_measurements_not_the_waiting_frames():
    monitor = LinkMonitor()
    t = steady(monitor, 1.0, fps=10, nbytes=1000, net_ms=5.0, server_ms=1.0)
    monitor.sent(stamp(t), 1000, t)
    monitor.forget()
    s = monitor.stats(t + 0.1)
    assert not s.answered and s.goodput_bps == 0.0 and s.fps_sent == 0.0
    assert s.pending == 1 and s.unanswered_s == pytest.approx(0.1)
    assert s.counts["served"] == 10
    assert monitor.feedback(stamp(t), SERVED, 1.0, t + 0.2) == "served"
    assert monitor.stats(t + 0.2).answered


def test_loss_counts_unanswered_frames_and_server_drops_apart():
    monitor = LinkMonitor(window_s=4.0, timeout_s=0.5)
    # Every 4th frame is never answered (lost on the way), every 5th one dropped by the server.
    pattern = {0: None}
    end = steady(monitor, 10.0, fps=20, nbytes=500, net_ms=20, server_ms=1,
                 answer=lambda i: pattern.get(i % 4, DROPPED if i % 5 == 0 else SERVED))
    s = monitor.stats(end + 1.0)  # every unanswered frame has timed out
    lost = sum(1 for i in range(200) if i % 4 == 0)
    assert s.counts["lost"] == lost and s.pending == 0
    counts = s.counts  # lifetime
    assert counts["dropped"] == sum(1 for i in range(200) if i % 4 and i % 5 == 0)
    # Over the window (the last 4 s of resolutions): a quarter lost; drops are not losses.
    assert s.loss == pytest.approx(0.25, abs=0.03)
    assert s.server_drop_rate == pytest.approx(
        counts["dropped"] / (counts["dropped"] + counts["served"]), abs=0.05)
    # Dropped frames crossed the link: they count for goodput and acknowledged fps, not for
    # served fps.
    assert s.fps_acked == pytest.approx(s.goodput_bps / (500 * 8))
    assert s.fps_served == pytest.approx(s.fps_acked * (1 - s.server_drop_rate))


def test_ignored_feedback_is_counted_and_changes_nothing():
    monitor = LinkMonitor(window_s=2.0, timeout_s=1.0)
    monitor.sent(stamp(0.0), 1000, 0.0)
    monitor.sent(stamp(0.1), 1000, 0.1)
    assert monitor.feedback(stamp(0.0), SERVED, 2.0, 0.012) == "served"
    before = monitor.stats(0.2)
    assert monitor.feedback(stamp(0.0), SERVED, 2.0, 0.02) == "duplicate"
    assert monitor.feedback(stamp(7.0), SERVED, 2.0, 0.02) == "unknown"
    assert monitor.feedback(stamp(0.1), 7, 2.0, 0.12) == "bad_status"
    for bad in (math.nan, -1.0, math.inf, 1e9):
        assert monitor.feedback(stamp(0.1), SERVED, bad, 0.12) == "bad_server_ms"
    after = monitor.stats(0.2)
    assert after.rtt_ms_p50 == before.rtt_ms_p50 and after.goodput_bps == before.goodput_bps
    assert after.pending == 1  # the frame with bad feedback still waits for a real answer
    assert monitor.feedback(stamp(0.1), SERVED, 2.0, 0.13) == "served"
    # After the timeout the frame is given up; its answer then is "late", not a success.
    monitor.sent(stamp(0.5), 1000, 0.5)
    assert monitor.stats(1.6).counts["lost"] == 1
    assert monitor.feedback(stamp(0.5), SERVED, 2.0, 1.7) == "late"
    counts = monitor.stats(1.7).counts
    assert counts == {"sent": 3, "served": 2, "lost": 1, "duplicate": 1, "unknown": 1,
                      "bad_status": 1, "bad_server_ms": 4, "late": 1}


def test_silence_clocks():
    monitor = LinkMonitor()
    assert monitor.stats(0.0).silent_s == math.inf and monitor.stats(0.0).unanswered_s == 0.0
    monitor.sent(stamp(1.0), 100, 1.0)
    assert monitor.stats(1.3).unanswered_s == pytest.approx(0.3)
    monitor.sent(stamp(1.1), 100, 1.1)
    monitor.sent(stamp(1.2), 100, 1.2)
    # The answer for the frame of 1.1 s: the silence clock restarts at the next one still
    # waiting (1.2 s); the one of 1.0 s is older than an answered frame.
    monitor.feedback(stamp(1.1), SERVED, 1.0, 1.25)
    s = monitor.stats(1.4)
    assert s.silent_s == pytest.approx(0.15) and s.unanswered_s == pytest.approx(0.2)
    monitor.feedback(stamp(1.2), SERVED, 1.0, 1.45)
    assert monitor.stats(1.5).unanswered_s == 0.0


def test_unanswered_s_alone_is_the_statistics_one():
    """``unanswered_s(now)`` (the fallback asks it per frame) equals ``stats(now)``'s at
    every step of the silence clock's story."""
    monitor = LinkMonitor()
    steps = [("stats", 0.0), ("sent", 1.0), ("stats", 1.3), ("sent", 1.1), ("sent", 1.2),
             ("feedback", 1.1, 1.25), ("stats", 1.4), ("feedback", 1.2, 1.45), ("stats", 1.5),
             ("sent", 2.0), ("stats", 5.0), ("feedback", 2.0, 5.1), ("stats", 5.2)]
    for step in steps:
        if step[0] == "sent":
            monitor.sent(stamp(step[1]), 100, step[1])
        elif step[0] == "feedback":
            monitor.feedback(stamp(step[1]), SERVED, 1.0, step[2])
        else:
            assert monitor.unanswered_s(step[1]) == monitor.stats(step[1]).unanswered_s


def test_a_reused_stamp_counts_the_newest_send():
    monitor = LinkMonitor()
    monitor.sent(123, 1000, 0.0)
    monitor.sent(123, 1000, 0.5)
    assert monitor.feedback(123, SERVED, 0.0, 0.52) == "served"
    s = monitor.stats(0.6)
    assert s.rtt_ms_p50 == pytest.approx(20.0) and s.counts["stamp_reused"] == 1


@pytest.mark.parametrize("fps", [30.0, 1e6])  # a camera rate, and all at (nearly) one instant
def test_memory_is_bounded_under_100k_frames_without_feedback(fps):
    monitor = LinkMonitor(window_s=2.0, timeout_s=2.0, max_pending=1024, max_events=4096)
    peak = 0
    for i in range(100_000):
        t = i / fps
        monitor.sent(i, 1000, t)
        if i % 997 == 0:
            peak = max(peak, monitor.memory())
    s = monitor.stats(100_000 / fps)
    assert peak <= 1024 + 3 * 4096
    assert s.pending <= 1024 and s.counts["lost"] + s.pending == 100_000
    assert s.loss == 1.0 and not s.answered and math.isnan(s.bandwidth_bps())
    if fps == 30.0:  # at a camera's rate only the last timeout's frames wait
        assert s.pending == pytest.approx(2.0 * fps, abs=2)


def test_constructor_rejects_bad_settings():
    with pytest.raises(ValueError, match="window_s"):
        LinkMonitor(window_s=0)
    with pytest.raises(ValueError):
        LinkMonitor(timeout_s=-1)


def test_late_fraction_sees_a_stream_the_link_does_not_carry():
    """The bench's 0.5 Mbit/s tbf link with 9 KB frames at 15 fps: the frames that find the
    token bucket full cross at line rate (a few ms: the per-frame estimate reads tens of
    Mbit/s), the others are lost. late_fraction says so; offered_bps is the stream's rate."""
    monitor = LinkMonitor(window_s=2.0, late_ms=100.0, min_decided=8)
    for i in range(45):  # 3 s
        t = i / 15
        monitor.sent(stamp(t), 9000, t)
        if i % 3 == 0:  # one frame in three gets through, at line rate
            assert monitor.feedback(stamp(t), SERVED, 20.0, t + 0.022) == "served"
    s = monitor.stats(3.0)
    assert s.effective_bps > 20e6  # what the per-frame estimate alone believes
    assert s.late_fraction == pytest.approx(2 / 3, abs=0.05)
    assert s.offered_bps == pytest.approx(9000 * 8 * 15, rel=0.05)
    # Answers that come back later than late_ms count as late too (a queue building up).
    slow = LinkMonitor(late_ms=100.0)
    for i in range(30):
        t = i / 15
        slow.sent(stamp(t), 9000, t)
        slow.feedback(stamp(t), SERVED, 20.0, t + 0.020 + (0.25 if i >= 10 else 0.005))
    # In the window (sent from 0.5 s on): frames 8-29, of which 10-29 late.
    assert slow.stats(2.5).late_fraction == pytest.approx(20 / 22)
    # A healthy link: nothing late.
    healthy = LinkMonitor()
    end = steady(healthy, 3.0, fps=15, nbytes=9000, net_ms=8.0, server_ms=20.0)
    assert healthy.stats(end).late_fraction == 0.0


def test_late_fraction_judges_the_stream_since_the_epoch_and_needs_enough_frames():
    monitor = LinkMonitor(late_ms=100.0, min_decided=8)
    for i in range(30):  # 2 s of frames: one in three lost
        monitor.sent(stamp(i / 15), 9000, i / 15)
        if i % 3:
            monitor.feedback(stamp(i / 15), SERVED, 20.0, i / 15 + 0.03)
    assert monitor.stats(2.0).late_fraction == pytest.approx(1 / 3, abs=0.05)
    monitor.new_epoch(2.0)  # e.g. a lighter codec from here on
    assert math.isnan(monitor.stats(2.0).late_fraction)  # nothing sent since: unknown
    for i in range(5):  # five frames: too few to judge
        t = 2.0 + i / 15
        monitor.sent(stamp(t), 2000, t)
        monitor.feedback(stamp(t), SERVED, 20.0, t + 0.025)
    assert math.isnan(monitor.stats(2.4).late_fraction)
    for i in range(5, 15):
        t = 2.0 + i / 15
        monitor.sent(stamp(t), 2000, t)
        monitor.feedback(stamp(t), SERVED, 20.0, t + 0.025)
    s = monitor.stats(3.0)
    assert s.late_fraction == 0.0
    assert s.offered_bps == pytest.approx(15 * 2000 * 8, rel=0.1)
    # A frame not answered is lost once a later one was answered (answers keep the order).
    monitor.sent(stamp(3.0), 2000, 3.0)
    assert monitor.stats(3.5).late_fraction == 0.0  # not judged yet: it may still come
    monitor.sent(stamp(3.5), 2000, 3.5)
    monitor.feedback(stamp(3.5), SERVED, 20.0, 3.525)
    assert monitor.stats(3.6).late_fraction == pytest.approx(1 / 17)


def test_silence_is_not_a_narrow_link():
    """An outage: the frames after the last answered one are not judged (the fallback handles
    silence). Counted as late they made a ceiling of a quarter of the stream, which after the
    outage kept the edge local for the budget until it expired (bench trace, 2.2 s)."""
    monitor = LinkMonitor(late_ms=100.0)
    end = steady(monitor, 2.0, fps=17, nbytes=2300, net_ms=5.0, server_ms=25.0)
    monitor.new_epoch(end)
    end = steady(monitor, 1.0, fps=17, nbytes=2300, net_ms=5.0, server_ms=25.0, t0=end)
    for i in range(12):  # the link goes down: 0.7 s of frames without an answer
        t = end + i / 17
        monitor.sent(stamp(t), 2300, t)
    s = monitor.stats(end + 0.75)
    assert s.late_fraction == 0.0 and s.unanswered_s == pytest.approx(0.75)


def test_forget_with_stale_before_ignores_answers_that_waited_out_an_outage():
    monitor = LinkMonitor()
    monitor.sent(stamp(1.0), 9000, 1.0)   # a probe that waits in the writer through an outage
    monitor.forget(stale_before=1.9)
    # Answered 1 s after it was sent: 0.07 Mbit/s, a measurement of the outage.
    assert monitor.feedback(stamp(1.0), SERVED, 2.0, 2.0) == "served"
    assert not monitor.stats(2.0).answered
    monitor.sent(stamp(2.0), 9000, 2.0)  # sent after the link came back
    assert monitor.feedback(stamp(2.0), SERVED, 2.0, 2.006) == "served"
    assert monitor.stats(2.01).effective_bps == pytest.approx(9000 * 8 / 0.004)
