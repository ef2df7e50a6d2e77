"""Controller, FallbackSwitch and LinkAdaptation on synthetic links (time passed in, no
sleeps): the choice follows the bandwidth, nothing flaps on noise, silence falls back to local
inference and a probe's answer brings split computing back."""

import dataclasses
import heapq
import math
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from mtl_split_core.plan.profile import load_profile
from mtl_split_core.runtime.adaptive import (
    EDGE_SCALE,
    LOCAL,
    REMOTE,
    Controller,
    EdgeTimes,
    FallbackSwitch,
    LinkAdaptation,
)
from mtl_split_core.runtime.errors import ConfigError
from mtl_split_core.runtime.link import DROPPED, SERVED, LinkStats
from mtl_split_core.runtime.packet import INPUT_SPLIT_INDEX

PROFILES = Path(__file__).resolve().parents[3] / "bench" / "profiles"
F16, Q8, Q4 = "f16-zstd/1", "q8-zstd/1", "q4-zstd/1"
BYTES = {"s8": {F16: 40000, Q8: 20000, Q4: 10000}, "s16": {F16: 8000, Q8: 4000, Q4: 2000}}
SERVER_MS = {"s8": 4.0, "s16": 3.0}
# Profiles from before temporal codecs were streamed: said once, like any missing option.
NO_STREAMS = ("adaptive: temporal is not an option: neither profile has a temporal entry "
              "(temporal codecs streamed over sim sequences: re-measure them with `mtl-split "
              "profile`)")


def profiles():
    """A robot that runs s8 in 10 ms, s16 in 20 ms, everything in 40 ms; a fast server."""
    edge_ms = {"s8": 10.0, "s16": 20.0}
    edge = {"version": 1, "model": "m", "whole_ms": 40.0,
            "jpeg": {"bytes": 15000.0, "encode_ms": 1.0, "decode_ms": 1.0},
            "splits": {s: {"edge_ms": edge_ms[s], "server_ms": 30.0, "codecs": {
                c: {"bytes": float(b), "encode_ms": 0.5, "decode_ms": 0.5}
                for c, b in BYTES[s].items()}} for s in BYTES}}
    server = {"version": 1, "model": "m", "whole_ms": 5.0,
              "jpeg": {"bytes": 15000.0, "encode_ms": 1.0, "decode_ms": 1.0},
              "splits": {s: {"edge_ms": 1.0, "server_ms": SERVER_MS[s] - 0.2, "codecs": {
                  c: {"bytes": float(b), "encode_ms": 0.1, "decode_ms": 0.2}
                  for c, b in BYTES[s].items()}} for s in BYTES}}
    return edge, server


def controller(split="s16", codec=Q4, mode="split_codec", budget=100.0, **kwargs):
    edge, server = profiles()
    return Controller(edge, server, ["s8", "s16"], split, codec, mode=mode,
                      latency_budget_ms=budget, **kwargs)


def stats(bandwidth_bps: float, server_ms: float = 3.0, unanswered_s: float = 0.0) -> LinkStats:
    """Link statistics as a LinkMonitor would report them for a link of ``bandwidth_bps``."""
    return LinkStats(window_s=2.0, goodput_bps=bandwidth_bps / 4, effective_bps=bandwidth_bps,
                     rtt_ms_p50=5.0, server_ms_p50=server_ms, nbytes_p50=2000.0, loss=0.0,
                     server_drop_rate=0.0, fps_sent=30.0, fps_acked=30.0, fps_served=30.0,
                     silent_s=0.01,
                     unanswered_s=unanswered_s, pending=0)


def drive(ctrl: Controller, bandwidth, t0: float, t1: float, hz: float = 10.0):
    """Feed ``bandwidth(t)`` to ``ctrl`` from t0 to t1; the switch events."""
    events = []
    for i in range(int(round((t1 - t0) * hz))):
        t = t0 + i / hz
        events += ctrl.update(t, stats(bandwidth(t)), source_fps=30.0)
    return events


def answer_due(adapt: LinkAdaptation, pending: list[tuple[float, int]], now: float) -> None:
    """The server's answers (SERVED, 3 ms) due by ``now``, in time order; ``pending`` holds
    (answer time, stamp) and loses the ones given."""
    for t_answer, stamp in sorted(pending):
        if t_answer <= now:
            pending.remove((t_answer, stamp))
            adapt.feedback(stamp, SERVED, 3.0, t_answer)


# ------------------------------------------------------------------------------ Controller
def test_ample_bandwidth_brings_the_most_faithful_codec_after_the_hold():
    ctrl = controller(mode="codec", min_hold_s=2.0)
    events = drive(ctrl, lambda t: 50e6, 0.0, 1.9)
    assert events == [] and ctrl.current == ("s16", Q4)  # held: not before min_hold_s
    events = drive(ctrl, lambda t: 50e6, 1.9, 5.0)
    assert ctrl.current == ("s16", F16)
    assert len(events) == 1 and events[0].kind == "switch"
    assert events[0].before == f"s16 {Q4}" and events[0].after == f"s16 {F16}"
    assert "more faithful" in events[0].reason and "50.00 Mbit/s" in events[0].reason


def test_tight_bandwidth_moves_to_a_lighter_codec_at_once():
    ctrl = controller(split="s16", codec=F16, mode="codec")
    drive(ctrl, lambda t: 50e6, 0.0, 3.0)
    assert ctrl.current == ("s16", F16)
    # 0.5 Mbit/s: f16's 8000 bytes need 128 ms (> 100 ms budget); q4 delivers 30 fps.
    events = drive(ctrl, lambda t: 0.5e6, 3.0, 3.1)
    assert ctrl.current == ("s16", Q4) and len(events) == 1
    assert "> budget 100 ms" in events[0].reason  # over budget: no hold
    assert ctrl.remote_fits


def test_split_codec_mode_moves_to_a_deeper_split_when_tight():
    ctrl = controller(split="s8", codec=F16)
    drive(ctrl, lambda t: 50e6, 0.0, 3.0)
    assert ctrl.current == ("s8", F16)  # 40 kB in 6.4 ms: 30 fps at the lowest latency
    drive(ctrl, lambda t: 5e6, 3.0, 8.0)
    # 5 Mbit/s: s8 f16 = 64 ms/frame (15 fps); s16 f16 delivers the camera's 30 fps.
    assert ctrl.current == ("s16", F16)


def test_codec_mode_keeps_the_split_and_no_split_outside_the_model():
    ctrl = controller(split="s8", codec=Q4, mode="codec")
    drive(ctrl, lambda t: 1e6, 0.0, 10.0)
    assert ctrl.current[0] == "s8"
    edge, server = profiles()
    only16 = Controller(edge, server, ["s16"], "s16", Q4, latency_budget_ms=100.0)
    assert {s for s, _ in only16.choices} == {"s16"}
    for bw in (100e6, 10e6, 1e6, 0.3e6):
        drive(only16, lambda t, bw=bw: bw, 0.0, 10.0)
        assert only16.current[0] == "s16"


def test_nothing_within_the_budget_says_so_and_recovers_with_margin_after_the_hold():
    ctrl = controller(min_hold_s=2.0)
    drive(ctrl, lambda t: 5e6, 0.0, 3.0)
    assert ctrl.remote_fits
    # 0.1 Mbit/s: the lightest option (s16 q4, 2000 B) needs 160 ms of link alone.
    drive(ctrl, lambda t: 0.1e6, 3.0, 3.1)
    assert not ctrl.remote_fits
    assert "no option within 100 ms" in ctrl.verdict and "s16 q4-zstd/1" in ctrl.verdict
    # Back to 0.25 Mbit/s: q4 fits (84 ms) but not with a 20% margin: stay local.
    drive(ctrl, lambda t: 0.25e6, 3.1, 10.0)
    assert not ctrl.remote_fits
    # 2 Mbit/s from 10 s on: remote again once the 0.25 Mbit/s samples have left the
    # min_hold_s window (the estimate is the lowest bandwidth of the last 2 s).
    back = None
    for i in range(40):
        t = 10.0 + i / 10
        ctrl.update(t, stats(2e6), source_fps=30.0)
        if ctrl.remote_fits and back is None:
            back = t
            assert "fits the budget again" in ctrl.verdict
    assert back == pytest.approx(12.0)


@pytest.mark.parametrize("level", [0.6e6, 1.2e6, 2.5e6, 4e6, 8e6, 50e6])
def test_no_flapping_under_30_percent_bandwidth_noise(level):
    rng = random.Random(int(level))
    ctrl = controller(split="s16", codec=Q8)
    noisy = {}

    def bandwidth(t):
        return noisy.setdefault(t, level * rng.uniform(0.7, 1.3))

    drive(ctrl, bandwidth, 0.0, 10.0)  # settle
    settled = ctrl.current
    events = drive(ctrl, bandwidth, 10.0, 130.0)
    assert events == [], f"flapped at {level / 1e6} Mbit/s: {[str(e) for e in events]}"
    assert ctrl.current == settled and ctrl.remote_fits


def test_the_server_overhead_is_measured_not_assumed():
    # The server reports 90 ms per frame (a loaded server): every remote option then breaks a
    # 100 ms budget that the profile alone would meet.
    ctrl = controller()
    ctrl.update(0.0, stats(50e6, server_ms=90.0), source_fps=30.0)
    assert not ctrl.remote_fits


def test_the_edge_time_is_measured_not_assumed():
    """A robot three times slower than its profile (measured: 61.5 ms for s16 q4, profiled
    20.5): s16 breaks a 60 ms budget that the profile alone would meet, s8 (31.5 ms) fits."""
    ctrl = controller(budget=60.0)
    ctrl.update(0.0, stats(50e6), source_fps=30.0)
    assert ctrl.current == ("s16", Q4) and ctrl.remote_fits and ctrl.edge_scale == 1.0
    (event,) = ctrl.update(0.1, stats(50e6), 30.0, EdgeTimes(input_ms=0.0, network_ms=61.5))
    assert ctrl.edge_scale == pytest.approx(3.0) and ctrl.current[0] == "s8", event
    assert "needs" in event.reason and ctrl.remote_fits
    # Turning each camera message into an image takes 50 ms on this robot: every option.
    ctrl.update(0.2, stats(50e6), 30.0, EdgeTimes(input_ms=50.0, network_ms=10.5))
    assert not ctrl.remote_fits and "no option within 60 ms" in ctrl.verdict
    # A measurement gone wrong is bounded: at most EDGE_SCALE times the profile.
    ctrl.update(0.3, stats(50e6), 30.0, EdgeTimes(input_ms=0.0, network_ms=1e9))
    assert ctrl.edge_scale == EDGE_SCALE[1]


def test_an_accuracy_floor_keeps_the_less_accurate_split_out():
    """The slow robot of the test above picks s8 for its fps; with s8 10% less accurate than
    the model's best and a 5% floor it keeps s16, and never falls back to s8 either."""
    drops = {f"s8 {c}": 0.10 for c in (F16, Q8, Q4)} | {f"s16 {c}": 0.0 for c in (F16, Q8)}
    drops[f"s16 {Q4}"] = 0.01
    slow = EdgeTimes(input_ms=0.0, network_ms=61.5)
    free, floored = controller(accuracy=drops), controller(accuracy=drops,
                                                           max_accuracy_drop=0.05)
    for ctrl in (free, floored):
        for i in range(30):
            ctrl.update(i / 10, stats(50e6), 30.0, slow)
    assert free.current[0] == "s8"
    assert floored.current[0] == "s16" and floored.remote_fits
    assert {s for s, _ in floored.choices} == {"s16"}
    floored.forget(5.0)  # the lightest option after a silence: of the allowed ones
    assert floored.current == ("s16", Q4)
    with pytest.raises(ConfigError, match="s16 q4-zstd/1 loses more than 0.005"):
        controller(accuracy=drops, max_accuracy_drop=0.005)
    with pytest.raises(ConfigError, match="needs the accuracy"):
        controller(max_accuracy_drop=0.05)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\]"):
        controller(accuracy=drops, max_accuracy_drop=math.nan)
    # An option with no measured drop is left out under a floor.
    del drops[f"s16 {Q4}"]
    assert ("s16", Q4) not in controller(split="s16", codec=Q8, accuracy=drops,
                                         max_accuracy_drop=0.05).choices


def test_edge_times_follow_the_current_option_and_ignore_garbage():
    adapt = LinkAdaptation("s16", Q4, controller(), fallback_after=0.0)
    for _ in range(3):
        adapt.edge_time(1.0, 30.0)
    assert adapt.edge_clock.median() is None  # fewer than min_count frames: the profile's
    for bad in (math.nan, -1.0, math.inf, 1e9):
        adapt.edge_time(bad, 30.0)
        adapt.edge_time(1.0, bad)
    adapt.edge_time(1.0, 40.0)
    assert adapt.edge_clock.median() == EdgeTimes(1.0, 30.0)
    adapt.configure("s8", Q4, 1.0)  # another option: its own times
    assert adapt.edge_clock.median() is None
    assert adapt.values(1.0)["edge_time_scale"] == 1.0


def test_a_budget_verdict_that_breaks_again_after_each_return_waits_longer_each_time():
    """A server on a loaded machine: the light probes measure 3 ms, the full stream 120 ms.
    Without the growing hold the edge went local and back every ~2 s (the trace, run 2)."""
    ctrl = controller(min_hold_s=2.0, ceiling_s=10.0, max_hold_s=16.0)
    returns = []
    for i in range(1200):  # 120 s at 10 Hz
        t = i / 10
        was = ctrl.remote_fits
        ctrl.update(t, stats(50e6, server_ms=120.0 if ctrl.remote_fits else 3.0), 30.0)
        if ctrl.remote_fits and not was:
            returns.append(t)
    gaps = [b - a for a, b in zip(returns, returns[1:])]
    # Each return breaks the budget 0.1 s later; the hold before the next one doubles.
    assert gaps == pytest.approx([4.1, 8.1] + [16.1] * (len(gaps) - 2), abs=0.15), gaps
    assert len(gaps) == 8, gaps
    # A return that lasts longer than ceiling_s resets the hold.
    start = returns[-1] + 20.0
    ctrl.update(start, stats(50e6), 30.0)
    assert ctrl.remote_fits
    ctrl.update(start + 11.0, stats(50e6, server_ms=120.0), 30.0)
    assert not ctrl.remote_fits and ctrl.return_hold_s == 2.0


def test_no_return_from_a_budget_verdict_without_a_measurement():
    """LOCAL for the budget with a ceiling in force, then nothing answered (an outage): the
    ceiling alone must not bring REMOTE back (it did in a trace run, into a dead link)."""
    ctrl = controller(min_hold_s=2.0, ceiling_s=10.0)
    saturated = dataclasses.replace(stats(0.05e6), late_fraction=0.9, offered_bps=20e6)
    ctrl.update(0.0, saturated, 30.0)  # ceiling 16 Mbit/s; 0.05 Mbit/s: nothing fits
    assert not ctrl.remote_fits and ctrl.ceiling_bps(0.0) == pytest.approx(16e6)
    silent = dataclasses.replace(stats(math.nan), effective_bps=math.nan)
    for i in range(1, 80):  # 8 s without an answer, the ceiling still in force
        ctrl.update(i / 10, silent, 30.0)
        assert not ctrl.remote_fits, (i, ctrl.verdict)
    ctrl.update(8.0, stats(20e6), 30.0)  # a measurement: back
    assert ctrl.remote_fits


def test_bad_settings_are_rejected_with_the_reason():
    edge, server = profiles()
    with pytest.raises(ConfigError, match="adaptive"):
        Controller(edge, server, ["s16"], "s16", Q4, mode="sometimes")
    with pytest.raises(ConfigError, match="latency_budget_ms"):
        Controller(edge, server, ["s16"], "s16", Q4, latency_budget_ms=-5)
    with pytest.raises(ConfigError, match="s4 q4-zstd/1 is not among"):
        Controller(edge, server, ["s4", "s16"], "s4", Q4)
    del server["splits"]["s8"]
    with pytest.raises(ConfigError, match="profiles"):
        Controller(edge, server, ["s16"], "s16", Q4)
    with pytest.raises(ConfigError, match="fallback_after"):
        FallbackSwitch(fallback_after=-1)
    with pytest.raises(ConfigError, match="probe_period"):
        FallbackSwitch(probe_period=0)


def test_committed_profiles_follow_the_issue_trace():
    """The robot and server profiles in bench/: the choice per phase of 50 -> 10 -> 2 -> 0.5
    -> 0.05 Mbit/s, with the default model's one trained split (s16)."""
    edge = load_profile(PROFILES / "cpu2_robot.json")
    server = load_profile(PROFILES / "h100_server.json")
    ctrl = Controller(edge, server, ["s16"], "s16", Q4, mode="codec", latency_budget_ms=100.0)
    chosen = {}
    t = 0.0
    for mbit in (50, 10, 2, 0.5, 0.05):
        drive(ctrl, lambda _t, mbit=mbit: mbit * 1e6, t, t + 10.0)
        t += 10.0
        chosen[mbit] = ctrl.current[1] if ctrl.remote_fits else LOCAL
    assert chosen == {50: F16, 10: F16, 2: F16, 0.5: Q4, 0.05: LOCAL}


# ------------------------------------------------------------------------------ FallbackSwitch
def test_fallback_after_silence_and_probes_until_answered():
    switch = FallbackSwitch(fallback_after=0.5, probe_period=0.5, start_local=False)
    assert switch.update(1.0, 0.49) == []
    events = switch.update(1.01, 0.5)
    assert switch.mode == LOCAL and events[0].kind == "fallback"
    assert "no feedback for 0.50 s" in events[0].reason
    # The silence just showed the server does not answer: the first probe (a frame without
    # local outputs) waits one probe_period.
    assert not switch.probe_due(1.01) and not switch.probe_due(1.5)
    assert switch.probe_due(1.51)
    switch.sent(111, 1.51)
    assert not switch.probe_due(1.8) and switch.probe_due(2.02)
    assert switch.answered(999, 2.1) == []  # not a probe (an old frame's late answer)
    assert switch.mode == LOCAL
    events = switch.answered(111, 2.2)
    assert switch.mode == REMOTE and events[0].kind == "recover"
    assert not switch.probe_due(2.3)


def test_fallback_after_zero_never_falls_back_on_silence():
    switch = FallbackSwitch(fallback_after=0.0)  # and so starts REMOTE: no server, no outputs
    assert switch.update(5.0, 100.0) == [] and switch.mode == REMOTE


def test_the_edge_serves_locally_until_a_server_has_answered():
    switch = FallbackSwitch(fallback_after=0.5, probe_period=0.5)
    assert switch.mode == LOCAL and switch.reason == "no server has answered yet"
    assert switch.probe_due(0.0)  # the first frame probes at once (no outage to wait out)
    switch.sent(1, 0.0)
    assert not switch.probe_due(0.4) and switch.probe_due(0.5)
    # No answer: LOCAL stays (the update has no silence to act on), probing once a period.
    assert switch.update(3.0, 3.0) == [] and switch.mode == LOCAL
    switch.sent(2, 3.0)
    events = switch.answered(2, 3.01)
    assert switch.mode == REMOTE and [e.kind for e in events] == ["connect"]
    assert "LOCAL -> REMOTE" in str(events[0])
    assert switch.counts == {"fallback": 0, "recover": 0}  # a start is not a recovery


def test_no_pool_server_with_room_means_local_without_probes_and_back_at_once():
    """A pool edge whose pool has no server with room runs locally and probes nobody; when
    the pool offers a server again it sends to it at once (it is announced, matched)."""
    adapt = LinkAdaptation("s16", Q8, None, fallback_after=0.5, probe_period=0.5)
    for i in range(20):  # 2 s without a server: never a probe
        plan = adapt.frame(i * 0.1, 10.0, no_server="no pool server has room")
        assert plan.local and not plan.send and not plan.probe
    assert adapt.switch.cause == "no_server" and "no pool server has room" in adapt.problem()
    plan = adapt.frame(2.0, 10.0)
    assert plan.send and not plan.local and adapt.mode == REMOTE
    assert [e.kind for e in plan.events] == ["recover"]
    # Served remotely, then the pool loses its last server: LOCAL at once, still no probe.
    adapt.sent(1, 100, 2.0)
    plan = adapt.frame(2.1, 10.0, no_server="no pool server has room")
    assert plan.local and not plan.send and [e.kind for e in plan.events] == ["fallback"]


def test_a_move_to_another_server_rebinds_the_link_state():
    """After a move the old server's waiting frames are not waited for (no silence fallback
    from them), the new one gets a whole silence limit, and a late answer of the old server
    is no measurement."""
    adapt = LinkAdaptation("s16", Q8, None, fallback_after=0.5, probe_period=0.5,
                           start_local=False)
    adapt.sent(1, 1000, 0.0)
    adapt.feedback(1, SERVED, 3.0, 0.01)
    for i in range(2, 6):  # the old server dies: these four wait
        adapt.sent(i, 1000, 0.1 * i)
    assert adapt.monitor.stats(0.55).unanswered_s > 0.3
    assert adapt.rebind(0.55) == []  # REMOTE stays REMOTE: no transition to log
    stats = adapt.monitor.stats(0.56)
    assert stats.unanswered_s == 0.0 and stats.pending == 0
    plan = adapt.frame(0.9, 10.0)  # 0.7 s after the first unanswered send: no fallback
    assert plan.send and not plan.local and plan.events == ()
    adapt.sent(6, 1000, 0.9)
    assert adapt.feedback(3, SERVED, 3.0, 0.95) == "late"  # the old server, after all
    assert adapt.feedback(6, SERVED, 3.0, 0.96) == "served"
    # A move while LOCAL after a silence: REMOTE at once with the new server.
    adapt.sent(7, 1000, 1.0)
    plan = adapt.frame(1.6, 10.0)
    assert plan.local and [e.kind for e in plan.events] == ["fallback"]
    events = adapt.rebind(1.7)
    assert adapt.mode == REMOTE and [e.kind for e in events] == ["recover"]
    assert "moved to another pool server" in events[0].reason


def test_the_silence_limit_follows_the_answer_delays():
    switch = FallbackSwitch(fallback_after=0.5, start_local=False)
    assert switch.silence_limit() == 0.5  # nothing measured yet
    for i in range(20):  # answers that take 0.60-0.67 s (a 4K frame on a small CPU)
        switch.sent(i, i * 0.1)
        switch.answer_delay(i, i * 0.1 + 0.6 + 0.07 * (i % 2))
    assert switch.silence_limit() == pytest.approx(3 * 0.67, rel=1e-6)
    assert switch.update(9.0, 1.9) == [] and switch.mode == REMOTE
    events = switch.update(9.1, 2.02)
    assert switch.mode == LOCAL and "limit 2.01 s" in events[0].reason
    # Fast answers: fallback_after is the floor; an answer for an unknown stamp is no delay.
    fast = FallbackSwitch(fallback_after=0.5, start_local=False)
    for i in range(20):
        fast.sent(i, float(i))
        fast.answer_delay(i, i + 0.01)
    fast.answer_delay(999, 50.0)
    assert fast.silence_limit() == 0.5 and fast.answer_delays.count == 20
    # However slow the answers were, a long silence is an outage.
    slow = FallbackSwitch(fallback_after=0.5, start_local=False)
    slow.sent(1, 0.0)
    slow.answer_delay(1, 100.0)
    assert slow.silence_limit() == 30.0


def test_a_slow_healthy_server_never_triggers_the_fallback():
    """Answers after 0.65 s (over fallback_after 0.5 s) on every frame: the edge starts
    locally, connects on the first answer and then stays REMOTE (before #24: a fallback
    whenever a frame waited 0.5 s)."""
    link = SimLink(lambda t: 50e6, server_ms=650.0)
    adapt = LinkAdaptation("s16", Q8, None, fallback_after=0.5, probe_period=0.5)
    local, events = run(adapt, link, 0.0, 10.0)
    assert [e.kind for e in events] == ["connect"], [str(e) for e in events]
    assert local and local[-1] < 0.7  # served locally only until the first answer
    assert adapt.mode == REMOTE and adapt.values(10.0)["fallback_silence_s"] > 1.9


# ------------------------------------------------------------------------------ closed loop
class SimLink:
    """A link of ``bandwidth(t)`` bit/s (0 = down) with 2 ms propagation, carrying one frame at
    a time and holding at most one more (the newest: a KEEP_LAST 1 writer), and a server that
    answers every frame after ``server_ms``."""

    def __init__(self, bandwidth, server_ms=3.0):
        self.bandwidth, self.server_ms = bandwidth, server_ms
        self.busy_until = 0.0
        self.waiting = None
        self.answers = []  # heap of (time, stamp)
        self.delivered = []  # (arrival time, stamp)

    def send(self, t, stamp, nbytes):
        self.waiting = (t, stamp, nbytes)  # replaces an unsent older frame
        self._pump(t)

    def _pump(self, now):
        while self.waiting is not None:
            start = max(self.waiting[0], self.busy_until)
            if start > now:
                return
            bw = self.bandwidth(start)
            if bw <= 0:
                return  # the link is down: the newest frame waits
            _, stamp, nbytes = self.waiting
            self.waiting = None
            self.busy_until = start + nbytes * 8 / bw
            self.delivered.append((self.busy_until + 0.001, stamp))
            heapq.heappush(self.answers, (self.busy_until + 0.002 + self.server_ms / 1e3,
                                          stamp))

    def due(self, now):
        self._pump(now)
        while self.answers and self.answers[0][0] <= now:
            yield heapq.heappop(self.answers)


def run(adapt: LinkAdaptation, link: SimLink, t0: float, t1: float, fps: float = 30.0,
        nbytes=lambda split, codec: BYTES[split][codec]):
    """The edge's loop: a camera at ``fps``; the frames run locally and the events."""
    local, events = [], []
    for i in range(int(round((t1 - t0) * fps))):
        now = t0 + i / fps
        for t, stamp in link.due(now):
            adapt.feedback(stamp, SERVED, link.server_ms, t)
        plan = adapt.frame(now, source_fps=fps)
        events += plan.events
        if plan.local:
            local.append(now)
        if plan.send:
            stamp = int(now * 1e9)
            link.send(now, stamp, nbytes(plan.split, plan.codec))
            adapt.sent(stamp, nbytes(plan.split, plan.codec), now)
    return local, events


def test_outage_falls_back_within_fallback_after_and_recovers_on_a_probe():
    down = (10.0, 20.0)
    link = SimLink(lambda t: 0.0 if down[0] <= t < down[1] else 20e6)
    adapt = LinkAdaptation("s16", Q4, controller(), fallback_after=0.5, probe_period=0.5)
    local, events = run(adapt, link, 0.0, 10.0)
    # The first frame, before any answer, is the robot's own (and the probe that connects).
    assert local == [0.0] and adapt.mode == REMOTE and adapt.choice == ("s16", F16)
    local, events = run(adapt, link, 10.0, 20.0)
    fallback = [e for e in events if e.kind == "fallback"]
    assert len(fallback) == 1 and 10.5 <= fallback[0].t <= 10.6  # 0.5 s after the last answer
    assert local and local[0] == fallback[0].t and local[-1] > 19.9  # every frame from then on
    # During the outage the edge sent one probe per probe_period, no more.
    sent_in_outage = adapt.monitor.stats(20.0).counts["sent"]
    local, events = run(adapt, link, 20.0, 30.0)
    recover = [e for e in events if e.kind == "recover"]
    assert len(recover) == 1 and recover[0].t - 20.0 <= 0.5 + 0.1
    assert "answered a probe" in recover[0].reason and adapt.mode == REMOTE
    assert all(t < recover[0].t + 0.04 for t in local)
    # The server never got a burst: between the first delivery after the outage and full rate
    # there are exactly the one waiting probe and the probe sent on its answer (which measures
    # the link: the waiting one measured the outage).
    after = [t for t, _ in link.delivered if t >= 20.0]
    assert after and after[0] < 20.01 and len([t for t in after if t < recover[0].t]) == 2
    assert sent_in_outage > 0
    assert adapt.switch.counts == {"fallback": 1, "recover": 1}


def test_a_link_too_narrow_for_the_budget_runs_locally_and_probes():
    bandwidth = {"bps": 5e6}
    link = SimLink(lambda t: bandwidth["bps"])
    adapt = LinkAdaptation("s16", Q4, controller(), fallback_after=0.5, probe_period=0.5)
    run(adapt, link, 0.0, 5.0)
    assert adapt.mode == REMOTE
    bandwidth["bps"] = 0.08e6  # s16 q4 = 200 ms per frame: over the 100 ms budget
    local, events = run(adapt, link, 5.0, 15.0)
    assert adapt.mode == LOCAL and any(e.kind == "fallback" for e in events)
    assert adapt.problem() is not None and "no option within 100 ms" in adapt.problem()
    probes = [e for e in events if e.kind == "fallback"]
    assert len(probes) == 1  # no flapping while the link stays narrow
    bandwidth["bps"] = 5e6
    local, events = run(adapt, link, 15.0, 25.0)
    assert adapt.mode == REMOTE and [e.kind for e in events if e.kind != "switch"] == ["recover"]
    values = adapt.values(25.0)
    assert values["link_mode"] == REMOTE and values["fallbacks"] == 1
    assert values["recoveries"] == 1 and values["adaptive"] == "split_codec"
    assert values["bandwidth_estimate_mbps"] == pytest.approx(5.0, rel=0.5)


def test_adaptive_off_keeps_split_and_codec_and_still_falls_back():
    link = SimLink(lambda t: 0.0 if t >= 3.0 else 50e6)
    adapt = LinkAdaptation("s16", Q8, None, fallback_after=0.5)
    run(adapt, link, 0.0, 3.0)
    assert adapt.choice == ("s16", Q8) and adapt.mode == REMOTE
    run(adapt, link, 3.0, 4.0)
    assert adapt.mode == LOCAL and adapt.choice == ("s16", Q8)
    adapt.configure("s8", Q4, 4.0)
    assert adapt.choice == ("s8", Q4)


def test_feedback_from_garbage_is_ignored_and_counted():
    adapt = LinkAdaptation("s16", Q4, controller())
    adapt.sent(5, 2000, 0.0)
    assert adapt.feedback(6, SERVED, 1.0, 0.01) == "unknown"
    assert adapt.feedback(5, 9, 1.0, 0.01) == "bad_status"
    assert adapt.feedback(5, DROPPED, math.nan, 0.01) == "bad_server_ms"
    assert adapt.feedback(5, DROPPED, 1.0, 0.01) == "dropped"
    values = adapt.values(0.02)
    assert values["feedback_unknown"] == 1 and values["feedback_bad_status"] == 1
    assert values["feedback_bad_server_ms"] == 1 and values["frames_dropped"] == 1
    assert values["frames_sent"] == 1 and "frames_lost" not in values
    assert values["server_drop_rate"] == 1.0


def test_pin_adopts_the_users_choice_and_rejects_what_the_model_lacks():
    ctrl = controller()
    ctrl.pin("s8", Q8, 0.0)
    assert ctrl.current == ("s8", Q8)
    with pytest.raises(ConfigError):
        ctrl.pin("s32", Q8, 0.0)
    # Held: the controller does not undo the user's choice before min_hold_s.
    assert drive(ctrl, lambda t: 50e6, 0.0, 1.9) == []


def test_the_issue_trace_closed_loop_with_the_committed_profiles():
    """50 -> 10 -> 2 -> 0.5 -> 0 (server unreachable) -> 20 Mbit/s, 10 s each, on the bench
    profiles with every split: the robot is never blind for more than fallback_after plus a
    frame, and the choice changes a few times per phase at most."""
    edge = load_profile(PROFILES / "cpu2_robot.json")
    server = load_profile(PROFILES / "h100_server.json")
    trace = [50e6, 10e6, 2e6, 0.5e6, 0.0, 20e6]
    link = SimLink(lambda t: trace[min(int(t // 10), 5)], server_ms=5.0)
    ctrl = Controller(edge, server, ["s4", "s8", "s16", "s32"], "s16", Q4,
                      latency_budget_ms=100.0)
    adapt = LinkAdaptation("s16", Q4, ctrl, fallback_after=0.5, probe_period=0.5)

    def nbytes(split, codec):
        return int(edge["splits"][split]["codecs"][codec]["bytes"])

    outputs, events, chosen = [], [], []
    for phase in range(6):
        local, ev = run(adapt, link, 10.0 * phase, 10.0 * phase + 10.0, nbytes=nbytes)
        outputs += local
        events += ev
        chosen.append(LOCAL if adapt.mode == LOCAL else " ".join(adapt.choice))
    outputs += [t for t, _ in link.delivered]
    outputs.sort()
    blind = max(b - a for a, b in zip(outputs, outputs[1:]))
    assert blind <= 0.5 + 2 / 30, [str(e) for e in events]
    switches = [e for e in events if e.kind == "switch"]
    assert len(switches) <= 2 * len(trace), [str(e) for e in switches]
    assert chosen[4] == LOCAL and chosen[5] != LOCAL
    assert [e.kind for e in events if e.kind != "switch"] == ["connect", "fallback", "recover"]
    # Wide link: a faithful codec; narrow one: the lightest codec.
    assert chosen[0].endswith(F16) and chosen[3].endswith(Q4)


def test_feedback_diagnostics_and_frames_from_three_threads():
    """The node's threads: the worker (frame + sent), the feedback callback, the diagnostics
    timer. Nothing raises and every frame sent is accounted for."""
    adapt = LinkAdaptation("s16", Q4, controller())
    errors, n = [], 3000

    def guarded(fn):
        def body():
            try:
                fn()
            except Exception as err:  # noqa: BLE001 - the test reports any failure
                errors.append(err)
        return threading.Thread(target=body)

    def worker():
        for i in range(n):
            adapt.frame(i / 1000, 30.0)
            adapt.sent(i, 2000, i / 1000)

    def feedback():
        for i in range(n):
            adapt.feedback(i, SERVED, 1.0, i / 1000 + 0.004)

    def diagnostics():
        for i in range(n // 10):
            adapt.values(i / 100)

    threads = [guarded(f) for f in (worker, feedback, diagnostics)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    counts = adapt.monitor.stats(n / 1000 + 5).counts
    assert counts["sent"] == n
    # Every frame sent met one fate, every feedback got one verdict (whatever the interleaving:
    # an answer can overtake its frame's ``sent`` and is then unknown).
    fates = counts.get("served", 0) + counts.get("lost", 0)
    verdicts = sum(counts.get(k, 0) for k in ("served", "unknown", "late", "duplicate"))
    assert fates == n and verdicts == n


# ------------------------------------------------------------------ the trace benchmark's findings
class BurstLink(SimLink):
    """A token bucket of ``bucket`` bytes refilled at ``bandwidth(t)`` bit/s and almost no
    queue (the bench's tbf at 0.5 Mbit/s, seen by DDS with KEEP_LAST 1): a frame that finds
    enough tokens crosses at line rate (1 ms), one that does not is lost."""

    def __init__(self, bandwidth, bucket=16000, server_ms=20.0):
        super().__init__(bandwidth, server_ms)
        self.bucket, self.tokens, self.t = bucket, float(bucket), 0.0

    def send(self, t, stamp, nbytes):
        self.tokens = min(self.bucket, self.tokens + (t - self.t) * self.bandwidth(t) / 8)
        self.t = t
        if self.tokens >= nbytes:
            self.tokens -= nbytes
            self.delivered.append((t + 0.001, stamp))
            heapq.heappush(self.answers, (t + 0.002 + self.server_ms / 1e3, stamp))

    def _pump(self, now):
        pass


def test_a_bursty_narrow_link_moves_to_the_light_codec_and_stays_there():
    """Finding 1 of the bandwidth-trace benchmark (docs/BENCHMARKS.md): at 0.5 Mbit/s the frames
    that cross do so at line rate, so the per-frame estimate read 1.7-29 Mbit/s and the edge
    kept f16 (8 KB here, 1 Mbit/s at 15 fps), which the link cannot carry. The late/lost frames
    must move it to a codec the link carries (q8: 0.48 Mbit/s at 15 fps), and the ceiling must
    keep it from trying f16 again every min_hold_s."""
    link = BurstLink(lambda t: 50e6 if t < 5.0 else 0.5e6)
    adapt = LinkAdaptation("s16", F16, controller(mode="codec"), fallback_after=0.5)
    run(adapt, link, 0.0, 5.0, fps=15.0)
    assert adapt.choice == ("s16", F16) and adapt.mode == REMOTE
    _, events = run(adapt, link, 5.0, 25.0, fps=15.0)
    switches = [e for e in events if e.kind == "switch"]
    assert switches and switches[0].after in (f"s16 {Q8}", f"s16 {Q4}") and switches[0].t < 6.5, \
        [str(e) for e in events]
    assert "late or lost" in switches[0].reason
    # At most one retry of f16 per ceiling_s (10 s), each undone at once.
    assert len(switches) <= 3, [str(e) for e in switches]
    assert not [e for e in events if e.kind == "fallback"], [str(e) for e in events]
    assert adapt.mode == REMOTE
    # What the robot got: nearly every frame from 6.5 s on came back from the server.
    sent = [t for t, _ in link.delivered if t >= 6.5]
    assert len(sent) >= 0.85 * 15 * (25.0 - 6.5), len(sent)


def test_the_stale_probe_after_an_outage_does_not_keep_the_edge_local():
    """Finding 3: the first probe answered after the outage had waited ~1 s in the writer;
    its round trip (0.06 Mbit/s for 8 KB) made the controller find no option within the
    budget, and the edge stayed local ~5 s on a 20 Mbit/s link. Now its answer only says the
    server is back: the next frame probes the link as it is, and REMOTE follows at once."""
    adapt = LinkAdaptation("s16", F16, controller(), fallback_after=0.5, probe_period=0.5)
    fps, up = 30.0, lambda t: t < 5.0 or t >= 15.0
    pending, probes, recovered, modes = [], [], None, []
    stale_answer = 0.0  # frames sent after the link came back arrive behind the stale probe
    for i in range(int(25.0 * fps)):
        now = i / fps
        answer_due(adapt, pending, now)
        plan = adapt.frame(now, fps)
        for event in plan.events:
            if event.kind == "recover":
                recovered = event.t
            assert not (event.kind == "fallback" and now > 15.0), str(event)
        modes.append((now, adapt.mode))
        if plan.send:
            stamp = int(now * 1e9)
            adapt.sent(stamp, BYTES[plan.split][plan.codec], now)
            if up(now) and not (now >= 15.0 and probes):
                pending.append((max(now, stale_answer) + 0.006, stamp))
            elif plan.local:
                probes.append((now, stamp))
        if now >= 15.0 and probes:  # the link is back: the newest probe arrives 1 s old
            sent_t, stamp = probes.pop()
            probes.clear()
            stale_answer = sent_t + 1.0
            pending.append((stale_answer, stamp))
    assert recovered is not None and recovered < 15.0 + 1.0 + 0.2, recovered
    assert all(mode == REMOTE for t, mode in modes if t > recovered)
    assert adapt.controller is not None and adapt.controller.remote_fits
    assert adapt.controller.bandwidth_bps > 5e6  # measured on the fresh probe and frames
    # The outage was silence, not a narrow link: no ceiling from the frames it swallowed.
    assert math.isnan(adapt.controller.ceiling_bps(recovered))


def test_a_link_that_answers_too_slowly_after_an_outage_still_runs_locally():
    """The other side of the stale-probe rule: when the fresh probe is slow too, the link is
    narrow, not just back from an outage: LOCAL continues for the budget, no REMOTE flapping."""
    bandwidth = {"bps": 5e6}
    link = SimLink(lambda t: bandwidth["bps"])
    adapt = LinkAdaptation("s16", F16, controller(), fallback_after=0.5, probe_period=0.5)
    run(adapt, link, 0.0, 5.0)
    bandwidth["bps"] = 0.05e6  # 8 KB f16 frames take 1.3 s: silence, then slow probes
    _, events = run(adapt, link, 5.0, 20.0)
    assert adapt.mode == LOCAL and adapt.switch.cause == "budget", [str(e) for e in events]
    assert len([e for e in events if e.kind == "recover"]) <= 1, [str(e) for e in events]


def test_the_frame_at_a_silence_fallback_is_served_locally_not_probed():
    """Finding 2: each probe is a frame without outputs while the server is out of reach. The
    silence has just shown that the server does not answer, so the first LOCAL frame is served
    locally and the first probe follows one probe_period later."""
    link = SimLink(lambda t: 0.0 if t >= 3.0 else 20e6)
    adapt = LinkAdaptation("s16", Q4, controller(), fallback_after=0.5, probe_period=0.5)
    run(adapt, link, 0.0, 3.0)
    plans = []
    for i in range(int(2.0 * 30)):
        now = 3.0 + i / 30
        plan = adapt.frame(now, 30.0)
        plans.append((now, plan))
        if plan.send:
            adapt.sent(int(now * 1e9), 2000, now)
    local = [(t, p) for t, p in plans if p.local]
    assert local and not local[0][1].send  # the fallback frame: outputs at once
    probes = [t for t, p in local if p.send]
    assert probes and probes[0] - local[0][0] == pytest.approx(0.5, abs=1 / 30 + 1e-9)
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(probes, probes[1:]))


def test_after_a_silence_the_edge_resumes_with_the_lightest_option():
    """The bench's 0.5 Mbit/s phase (second run): f16's queue silenced the feedback for 0.5 s
    before its late answers could show, and the edge came back with f16 after each probe —
    twice, then a budget verdict kept it local. A silence leaves the link unknown: resume with
    the lightest option and move up only once measured."""
    link = SimLink(lambda t: 20e6)
    adapt = LinkAdaptation("s16", Q4, controller(), fallback_after=0.5, probe_period=0.5)
    run(adapt, link, 0.0, 5.0)
    assert adapt.choice == ("s16", F16)
    plan = None
    for i in range(20):  # 0.67 s with no answer at all
        now = 5.0 + i / 30
        plan = adapt.frame(now, 30.0)
        if plan.send:
            adapt.sent(int(now * 1e9), BYTES[plan.split][plan.codec], now)
    assert adapt.mode == LOCAL and adapt.choice == ("s16", Q4)
    assert plan is not None and (plan.split, plan.codec) == ("s16", Q4)
    assert "lightest option" in str(adapt.last_event) or any(
        "lightest option" in str(e) for e in plan.events)
    # Back on the 20 Mbit/s link: REMOTE with q4, then the most faithful codec once measured.
    _, events = run(adapt, link, 6.0, 12.0)
    assert adapt.mode == REMOTE and adapt.choice == ("s16", F16), [str(e) for e in events]


def test_a_stream_that_silences_the_link_is_not_retried_every_hold():
    """The bench's 0.5 Mbit/s phase (fourth run): the per-frame estimate of q4 frames that
    cross at line rate let the controller move up to f16 after each hold; f16's queue made a
    few late answers and then silence, the edge fell back, resumed with q4 and moved up again:
    a fallback every ~2.5 s (7 in 25 s here). The late answers before the silence mark it a
    queue, not an outage: a ceiling holds the lighter codecs for ceiling_s — one try per
    heavier codec (f16, then q8, which this link cannot carry either) per 10 s."""
    adapt = LinkAdaptation("s16", Q4, controller(mode="codec"), fallback_after=0.5,
                           probe_period=0.5)
    fps, pending, heavy_frames, fallbacks = 15.0, [], 0, []
    for i in range(int(25.0 * fps)):
        now = i / fps
        answer_due(adapt, pending, now)
        plan = adapt.frame(now, fps)
        fallbacks += [e for e in plan.events if e.kind == "fallback"]
        if not plan.send:
            continue
        stamp = int(now * 1e9)
        adapt.sent(stamp, BYTES[plan.split][plan.codec], now)
        if plan.codec == Q4:  # fits: back at line rate
            pending.append((now + 0.005, stamp))
            heavy_frames = 0
        else:  # queues: three late answers, then nothing (drops, repairs)
            heavy_frames += 1
            if heavy_frames <= 3:
                pending.append((now + 0.15 * heavy_frames, stamp))
    assert 1 <= len(fallbacks) <= 4, [str(e) for e in fallbacks]
    assert adapt.mode == REMOTE


# ------------------------------------------------------------------ image upload (split input)
WEBP = "webp-q80/1"


def upload_profiles(nbytes: float = 6000.0):
    """``profiles()`` with split input measured: the robot letterboxes and encodes in 2.2 ms,
    the server decodes and runs the whole network in 6 ms; ``nbytes`` per image."""
    edge, server = profiles()
    edge["input"] = {"edge_ms": 0.2, "server_ms": 40.0, "shape": [3, 240, 320], "codecs": {
        WEBP: {"bytes": nbytes, "encode_ms": 2.0, "decode_ms": 2.0}}}
    server["input"] = {"edge_ms": 0.1, "server_ms": 5.0, "shape": [3, 240, 320], "codecs": {
        WEBP: {"bytes": nbytes, "encode_ms": 1.0, "decode_ms": 1.0}}}
    return edge, server


def drive_fast_camera(ctrl: Controller, bandwidth_bps: float, t0: float, t1: float):
    """A 200 fps camera (delivered fps decides) on a steady link; the switch events."""
    events = []
    for i in range(int(round((t1 - t0) * 10))):
        events += ctrl.update(t0 + i / 10, stats(bandwidth_bps), source_fps=200.0)
    return events


@pytest.fixture(scope="module")
def tiny_edge():
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
    from mtl_split_core.runtime.edge import EdgeRunner
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(64, 48), bottlenecks={"s16": 8}))
    card = {"name": "tiny", "fingerprint": "f" * 16, "default_split": "s16",
            "codec": Q4, "input_size": [64, 48]}
    return EdgeRunner(net.eval(), card, split="s16", device="cpu")


def _drops(edge) -> dict:
    """A measured accuracy drop of 0.4% for every option ``edge`` profiled (all equal: fps
    decides)."""
    drops = {f"{s} {c}": 0.004 for s, e in edge["splits"].items() for c in e["codecs"]}
    return drops | {f"input {c}": 0.004 for c in edge.get("input", {}).get("codecs", {})}


def test_the_controller_uploads_images_when_that_is_better_and_the_runner_follows(tiny_edge):
    """A slow robot on a fast link: the image (2.2 ms on the robot) beats every split (the
    prefix costs 10-20 ms); on a thin link the 6 KB image loses to s16's 2 KB features. The
    EdgeRunner takes every choice as the edge node applies it (``configure``)."""
    edge, server = upload_profiles()
    ctrl = Controller(edge, server, ["s8", "s16"], "s16", Q4, latency_budget_ms=100.0,
                      accuracy=_drops(edge))
    assert ("input", WEBP) in ctrl.choices
    frame = np.zeros((48, 64, 3), np.uint8)
    seen = []
    for bandwidth in (100e6, 0.5e6, 100e6):
        start = len(seen) * 20.0
        for event in drive_fast_camera(ctrl, bandwidth, start, start + 20.0):
            split, codec = event.after.split(" ")
            tiny_edge.configure(split=split, codec=codec)
            packet = tiny_edge(frame)
            assert (packet.tensor.codec, packet.split_index == INPUT_SPLIT_INDEX) == \
                (codec, split == "input")
        seen.append(ctrl.current)
    assert seen[0] == ("input", WEBP) and seen[2] == ("input", WEBP)
    assert seen[1][0] != "input"


def test_image_upload_is_offered_only_where_both_profiles_measured_it():
    edge, server = upload_profiles()
    drops = _drops(edge)
    assert ("input", WEBP) not in Controller(edge, server, ["s16"], "s16", Q4, accuracy=drops,
                                             image_upload=False).choices
    _, old_server = profiles()  # a profile from before split input: stated, no option
    lines = []
    ctrl = Controller(edge, old_server, ["s16"], "s16", Q4, accuracy=drops, log=lines.append)
    assert [c for c in ctrl.choices if c[0] == "input"] == []
    assert lines == [f"adaptive: input {WEBP} is not an option: the server profile has no "
                     "image upload (input) entry", NO_STREAMS]
    old_edge, _ = profiles()  # both from before it: stated all the same
    assert "neither profile has an image upload" in Controller(
        old_edge, old_server, ["s16"], "s16", Q4).left_out["input"]
    ctrl = Controller(edge, server, ["s16"], "input", WEBP, mode="codec", accuracy=drops)
    assert ctrl.current == ("input", WEBP) and set(ctrl.rate(1e6)) == {("input", WEBP)}


EB = ("eb-0/1", "eb-1/1", "eb-2/1")
EB_BYTES = {"eb-0/1": 300.0, "eb-1/1": 1200.0, "eb-2/1": 1800.0}


def eb_profiles(server_has_eb: bool = True):
    """``upload_profiles(1000 B)`` with a model's entropy-coded codecs measured at s16 (on the
    server too unless ``server_has_eb`` is False: a profile from before the model had them)."""
    edge, server = upload_profiles(nbytes=1000.0)
    for profile in (edge, server) if server_has_eb else (edge,):
        profile["splits"]["s16"]["codecs"].update(
            {c: {"bytes": b, "encode_ms": 0.3, "decode_ms": 0.3} for c, b in EB_BYTES.items()})
    return edge, server


def test_without_measured_accuracy_eb_and_image_codecs_are_not_chosen_and_said_once():
    """No accuracy: no formula gives an entropy-coded or image codec's fidelity (the bits per
    value only fit f16/q8/q4), so they are left out, one line each, once; the rest still
    adapts, and nothing raises (``codec_bits`` did for eb codecs)."""
    edge, server = eb_profiles()
    lines = []
    ctrl = Controller(edge, server, ["s16"], "s16", Q4, codecs=(F16, Q8, Q4, *EB),
                      log=lines.append)
    assert set(ctrl.choices) == {("s16", F16), ("s16", Q8), ("s16", Q4)}
    assert sorted(ctrl.left_out) == sorted([f"s16 {c}" for c in EB] + [f"input {WEBP}",
                                                                        "temporal"])
    assert lines[4:] == [NO_STREAMS]  # profiles without streamed temporal codecs
    assert len(lines) == 5 and all("no measured accuracy" in line for line in lines[:4])
    # 0.3 Mbit/s: q4's 2,000 B cannot carry 30 fps, eb-0's 300 B could; it stays unchosen.
    drive(ctrl, lambda t: 0.3e6, 0.0, 10.0)
    drive(ctrl, lambda t: 50e6, 10.0, 20.0)
    assert ctrl.current == ("s16", F16) and len(lines) == 5
    with pytest.raises(ConfigError, match="s16 eb-0/1: no measured accuracy"):
        ctrl.pin("s16", "eb-0/1", 20.0)  # `ros2 param set`: refused with the reason
    # The user's configured eb codec is kept: no known fidelity says another is better.
    lines.clear()
    pinned = Controller(edge, server, ["s16"], "s16", "eb-1/1", codecs=(F16, Q8, Q4, *EB),
                        log=lines.append)
    assert ("s16", "eb-1/1") in pinned.choices and "s16 eb-1/1" not in pinned.left_out
    assert "adaptive: s16 eb-1/1, the configured option, is kept though no measured" in lines[-1]
    drive(pinned, lambda t: 50e6, 0.0, 10.0)
    assert pinned.current == ("s16", "eb-1/1") and pinned.remote_fits


def test_measured_accuracy_weighs_eb_codecs_and_image_upload_beside_every_codec():
    """With the card's metrics every option is weighed by its measured drop: on a thin link
    the entropy-coded eb-1 (q4's accuracy at 0.6x its bytes) beats q4; an option without a
    row (eb-2) is never chosen; on a wide link the most faithful wins."""
    edge, server = eb_profiles()
    drops = {f"s16 {F16}": 0.0, f"s16 {Q8}": 0.0, f"s16 {Q4}": 0.004, "s16 eb-0/1": 0.05,
             "s16 eb-1/1": 0.004, f"input {WEBP}": 0.006}
    lines = []
    ctrl = Controller(edge, server, ["s16"], "s16", Q4, codecs=(F16, Q8, Q4, *EB),
                      accuracy=drops, log=lines.append)
    assert ("s16", "eb-1/1") in ctrl.choices and ("input", WEBP) in ctrl.choices
    assert ctrl.left_out == {"s16 eb-2/1": "no measured accuracy for it",
                             "temporal": NO_STREAMS.split(": ", 2)[2]}
    assert lines == ["adaptive: s16 eb-2/1 is not an option: no measured accuracy for it",
                     NO_STREAMS]
    # 0.33 Mbit/s, 30 fps camera: q4 needs 48 ms of link a frame (21 fps); eb-1's 1,200 B
    # carry 30 fps at q4's accuracy, eb-0 too but 5% worse, the 1,000 B image 0.6% worse.
    drive(ctrl, lambda t: 0.33e6, 0.0, 10.0)
    assert ctrl.current == ("s16", "eb-1/1")
    drive(ctrl, lambda t: 50e6, 10.0, 20.0)
    assert ctrl.current[1] in (F16, Q8)
    # Measured on the robot only (a server profile from before the tables): stated, left out.
    old_edge, old_server = eb_profiles(server_has_eb=False)
    ctrl = Controller(old_edge, old_server, ["s16"], "s16", Q4, codecs=(F16, Q8, Q4, *EB),
                      accuracy=drops)
    assert ctrl.left_out["s16 eb-1/1"] == "the server profile lacks it"
    assert not any(c[1] in EB for c in ctrl.choices)


# ------------------------------------------------------------------------------ temporal codecs
T30 = "t30-s20-q4-zstd/1"


def stream_profiles(mean: float = 700.0, keyframe: float = 2015.0, vs_base: float = 0.0):
    """``profiles()`` with ``T30`` streamed at s16 on both sides: ``mean`` bytes per frame over
    the stream, its keyframes ``keyframe`` bytes (q4's 2,000 and the 15-byte header), and its
    worst relative loss against q4 on the sequences ``vs_base``."""
    edge, server = profiles()
    for profile, enc, dec in ((edge, 0.5, 0.5), (server, 0.1, 0.2)):
        profile["temporal"] = {"sequences": 2, "splits": {"s16": {"codecs": {T30: {
            "base": Q4, "keyframe_interval": 30, "bytes": mean, "encode_ms": enc,
            "decode_ms": dec, "accuracy_vs_base": vs_base,
            "keyframe": {"bytes": keyframe, "encode_ms": enc, "decode_ms": dec}}}}}}
    return edge, server


def stream_controller(budget: float = 100.0, vs_base: float = 0.0, **kwargs) -> Controller:
    """Measured drops: q4 0.4%, f16 and q8 none."""
    edge, server = stream_profiles(vs_base=vs_base)
    drops = _drops(edge) | {f"{s} {c}": 0.0 for s in ("s8", "s16") for c in (F16, Q8)}
    return Controller(edge, server, ["s8", "s16"], "s16", Q4, latency_budget_ms=budget,
                      accuracy=drops, **kwargs)


def test_a_thin_link_streams_a_temporal_codec_at_its_bases_accuracy(tiny_edge):
    """0.35 Mbit/s, 30 fps camera: per-frame q4 (2,000 B) needs 46 ms of link a frame (22
    fps); the stream's 700 B mean carries 30 fps at q4's accuracy (measured: nothing lost
    against q4 on the sequences). The switch restarts the stream with a keyframe: the
    EdgeRunner's first frame of it is one."""
    from mtl_split_core.temporal_codec import is_keyframe

    ctrl = stream_controller()
    assert ("s16", T30) in ctrl.choices and ctrl.accuracy[f"s16 {T30}"] == pytest.approx(0.004)
    events = drive(ctrl, lambda t: 0.35e6, 0.0, 10.0)
    assert ctrl.current == ("s16", T30)
    assert events[-1].after == f"s16 {T30}" and "30.0 fps instead of 21.9" in events[-1].reason
    frame = np.zeros((48, 64, 3), np.uint8)
    tiny_edge.configure(split="s16", codec=T30)
    assert [is_keyframe(tiny_edge(frame).tensor) for _ in range(3)] == [True, False, False]
    # A wide link: more faithful per-frame codecs (0 drop) win over the stream's 0.4%.
    drive(ctrl, lambda t: 50e6, 10.0, 20.0)
    assert ctrl.current in (("s16", F16), ("s16", Q8), ("s8", F16), ("s8", Q8))


def test_the_budget_holds_for_a_streams_keyframes():
    """60 ms budget at 0.35 Mbit/s: the stream's mean frame (700 B) takes 40 ms, but every
    30th frame, and the first after a switch, is a 2,015 B keyframe: 70 ms. It does not fit
    (nor does q4's every frame): nothing within the budget."""
    ctrl = stream_controller(budget=60.0)
    stream = ctrl.rate(0.35e6, source_fps=30.0)[("s16", T30)]
    assert stream.option.latency_ms < 60.0 < stream.option.worst_latency_ms
    assert not stream.fits
    drive(ctrl, lambda t: 0.35e6, 0.0, 5.0)
    assert not ctrl.remote_fits and ctrl.current != ("s16", T30)
    assert "needs" in ctrl.verdict


def test_switching_into_a_stream_costs_one_keyframe_over_the_hold():
    """Rated from another option, the stream carries one keyframe more over the first hold
    (2 s at 30 fps = 60 frames): 700 + (2,015 - 700) / 60 bytes a frame; once it streams,
    its mean. Its keyframe's own latency is the same either way."""
    ctrl = stream_controller(min_hold_s=2.0)
    before = ctrl.rate(1e6, source_fps=30.0)[("s16", T30)].option
    assert before.bytes == pytest.approx(700.0 + 1315.0 / 60)
    ctrl.pin("s16", T30, 0.0)
    after = ctrl.rate(1e6, source_fps=30.0)[("s16", T30)].option
    assert after.bytes == 700.0
    assert before.worst_latency_ms == pytest.approx(after.worst_latency_ms)


def test_a_stream_that_lost_accuracy_against_its_base_is_weighed_so():
    """1% lost against q4 on the sequences: 1 - 0.996 * 0.99 = 1.4% in all, over a 1% floor;
    and after a silence the lightest first frame is q4's (a stream starts with its
    2,015 B keyframe), not the stream's 700 B mean."""
    ctrl = stream_controller(vs_base=0.01, max_accuracy_drop=0.01)
    assert ctrl.accuracy[f"s16 {T30}"] == pytest.approx(1 - 0.996 * 0.99)
    assert ("s16", T30) not in ctrl.choices
    ctrl = stream_controller()
    ctrl.pin("s16", T30, 0.0)
    ctrl.forget(1.0)
    assert ctrl.current == ("s16", Q4)


def test_profiles_without_streams_or_without_its_base_accuracy_leave_it_out():
    edge, server = stream_profiles()
    _, old_server = profiles()
    lines = []
    ctrl = Controller(edge, old_server, ["s16"], "s16", Q4, accuracy=_drops(edge),
                      log=lines.append)
    assert ("s16", T30) not in ctrl.choices
    assert ctrl.left_out[f"s16 {T30}"].startswith("the server profile has no temporal entry")
    assert sum(T30 in line for line in lines) == 1
    drops = {k: v for k, v in _drops(edge).items() if k != f"s16 {Q4}"}
    ctrl = Controller(edge, server, ["s16"], "s16", Q8, accuracy=drops)
    assert "no measured accuracy for its base" in ctrl.left_out[f"s16 {T30}"]
    assert ("s16", T30) not in Controller(edge, server, ["s16"], "s16", Q4,
                                          accuracy=_drops(edge), temporal=False).choices
