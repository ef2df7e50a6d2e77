"""ServerAdmission on synthetic time: capacity from configuration, batch timings and
saturation; robots taken while they fit, refused (with a reason the edge reads) beyond, the
newest shed on overload; the announcement it builds passes the edge's checks."""

import math

import numpy as np
import pytest

from mtl_split_core.runtime.pool_admission import BatchCapacity, ServerAdmission
from mtl_split_core.runtime.pool_announcement import check_announcement, default_input_topic
from mtl_split_core.runtime.pool_view import PoolView


def admission(**kw):
    return ServerAdmission("gpu0_0", default_input_topic("gpu0_0"), ("fp",), **kw)


def stream(adm, robots, t0, t1, fps=30.0, announced=0.0):
    """Each robot sends ``fps`` frames per second from t0 to t1, its edge announcing
    ``announced`` frames/s; returns the refusals."""
    refused = {}
    steps = int(round((t1 - t0) * fps))
    for i in range(steps):
        t = t0 + i / fps
        for r in robots:
            verdict = adm.admit(r, t, announced)
            if not verdict.accepted:
                refused[r] = verdict.reason
    return refused


def test_takes_robots_while_they_fit_the_configured_capacity_and_names_the_refusal():
    adm = admission(capacity_fps=100.0, headroom=0.8, new_robot_fps=30.0)
    refused = stream(adm, ["r1", "r2", "r3", "r4"], 0.0, 3.0)
    ann = check_announcement(adm.announcement(3.0))
    assert set(ann.robots) == {"r1", "r2"}  # 60 + 30 > 80 for a third
    assert set(refused) == {"r3", "r4"} and "full: load" in refused["r3"]
    assert dict(ann.refused)["r3"].startswith("full")
    assert ann.load_fps == pytest.approx(60.0, rel=0.05) and ann.capacity_fps == 100.0
    assert not ann.accepting and ann.refusal.startswith("full")


def test_capacity_is_measured_from_batch_timings_until_saturation_lowers_it():
    adm = admission(min_batches=4, max_batch=4)
    assert math.isnan(adm.capacity(0.0))
    for _ in range(8):
        adm.batch_done(4, 0.01, 0.0)  # full batches, 4 frames in 10 ms: 400 frames/s
    assert adm.capacity(0.0) == pytest.approx(400.0)
    # Robots' frames get dropped unrun (the process, not the network, is the limit): after
    # overload_s of such readings the capacity becomes what was served then.
    # No reading while the robots are new (window_s after the last one joined).
    for i in range(90):
        t = i / 30
        for r in ("r1", "r2", "r3", "r4"):
            adm.admit(r, t)
            if r in ("r3", "r4"):
                adm.dropped(r, t)
        if i in (30, 45):
            assert adm.announcement(t).capacity_fps == pytest.approx(400.0)  # joining
    assert adm.announcement(2.0).capacity_fps == pytest.approx(400.0)  # one reading: not yet
    ann = adm.announcement(3.0)
    assert ann.capacity_fps == pytest.approx(60.0, rel=0.1)
    assert adm.capacity(3.0 + 11.0) == pytest.approx(400.0)  # saturation_s later: forgotten


# A batching worker like the H100's (docs/BENCHMARKS.md "Failover"): 3.1 ms per batch plus
# 0.52 ms per frame, so ~1,100 frames/s at its full batch of 8 and ~280 at batches of one.
FIXED_S, PER_FRAME_S = 3.1e-3, 0.52e-3
FULL_BATCH_FPS = 8 / (FIXED_S + 8 * PER_FRAME_S)


def low_load_batches(adm, count=400, seed=0):
    """The batches a worker forms at low load (a few robots): mostly single frames, some 2-3,
    each timed with 10% noise and an occasional stall. Returns frames / busy seconds over
    them: what the capacity was before it was taken at the full batch."""
    rng = np.random.default_rng(seed)
    frames = busy = 0.0
    for _ in range(count):
        n = int(rng.choice([1, 2, 3], p=[0.7, 0.22, 0.08]))
        s = (FIXED_S + PER_FRAME_S * n) * rng.normal(1.0, 0.1) * (5 if rng.random() < 0.02
                                                                   else 1)
        adm.batch_done(n, s, 0.0)
        frames, busy = frames + n, busy + s
    return frames / busy


def test_small_batches_at_low_load_give_the_capacity_at_the_full_batch():
    adm = admission(max_batch=8)
    small_batch_fps = low_load_batches(adm)
    assert small_batch_fps < 0.35 * FULL_BATCH_FPS  # the old figure: a third
    assert adm.capacity(0.0) == pytest.approx(FULL_BATCH_FPS, rel=0.15)
    values = adm.values(0.0)
    assert values["pool_batch_fixed_ms"] == pytest.approx(FIXED_S * 1e3, rel=0.15)
    assert values["pool_batch_frame_ms"] == pytest.approx(PER_FRAME_S * 1e3, rel=0.3)
    # 13 robots of a dead server (390 frames/s) next to 3 (90): room, where 355 had none.
    stream(adm, ["s1", "s2", "s3"], 0.0, 3.0)
    refused = stream(adm, [f"m{i}" for i in range(13)], 3.0, 3.5, announced=30.0)
    assert not refused and len(adm.announcement(3.5).robots) == 16
    adm.max_batch = 4  # a smaller full batch: a smaller capacity
    assert adm.capacity(4.0) == pytest.approx(4 / (FIXED_S + 4 * PER_FRAME_S), rel=0.15)


def test_full_batches_seen_are_taken_as_seen_and_one_size_is_bounded_not_fitted():
    adm = admission(max_batch=8)
    low_load_batches(adm)
    for _ in range(5):  # full batches slower than the line says (e.g. the GIL): as seen
        adm.batch_done(8, 0.012, 0.0)
    assert adm.capacity(0.0) == pytest.approx(8 / 0.012)
    one = admission(max_batch=8, min_batches=4)
    for _ in range(20):
        one.batch_done(1, 0.004, 0.0)
    # One robot's batches of 1 (H100: 83 frames/s announced where a process serves 981):
    # no line through one point, so all of a batch's time counts as fixed, the upper bound
    # that step 3 (saturation) corrects, never that size's own rate.
    assert one.capacity(0.0) == pytest.approx(8 * 250.0)
    full = admission(max_batch=8, min_batches=4)
    for _ in range(20):
        full.batch_done(8, 0.004, 0.0)
    assert full.capacity(0.0) == pytest.approx(2000.0)  # max_batch seen: as seen


def test_the_extrapolation_is_bounded_by_the_batch_ratio_times_the_best_rate_seen():
    """Whatever the timings, the capacity at max_batch is at most max_batch / largest size
    seen x the best rate seen (all of a batch's time fixed); never NaN or negative."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        cap = BatchCapacity(per_size=8, min_batches=4)
        sizes = rng.choice(np.arange(1, 7), size=int(rng.integers(2, 5)), replace=False)
        medians = {}
        for n in sizes:
            times = rng.uniform(1e-4, 2e-2, 5)
            for t in times:
                cap.add(int(n), float(t))
            medians[int(n)] = float(np.median(times))
        best = max(n / m for n, m in medians.items())
        fps = cap.fps(8)
        assert 0 < fps <= max(1.0, 8 / max(medians)) * best * (1 + 1e-9)
    flat = BatchCapacity(min_batches=4)  # bigger batches no slower: all of it fixed
    for n, t in ((1, 0.005), (2, 0.004)) * 4:
        flat.add(n, t)
    assert flat.fps(8) == pytest.approx(8 / 0.0045) and flat.fps(8) <= 4 * (2 / 0.004)


def test_a_saturated_server_still_sheds_with_the_full_batch_capacity():
    """The full-batch estimate says ~1,100 frames/s; the process serves 300 (its Python, not
    the worker, is the limit): frames dropped unrun for overload_s make the capacity what it
    served and the newest robots are shed."""
    adm = admission(max_batch=8, overload_s=1.0, drop_tolerance=0.05)
    low_load_batches(adm)
    robots = [f"r{i}" for i in range(16)]  # 480 frames/s arrive, 300 served
    for i in range(105):
        t = i / 30
        for k, r in enumerate(robots):
            adm.admit(r, t, 30.0)
            if k % 8 >= 5:  # 6 of 16 dropped unrun
                adm.dropped(r, t)
    assert adm.capacity(3.5) > 1000
    adm.announcement(2.5)
    ann = adm.announcement(3.5)
    assert ann.capacity_fps == pytest.approx(300.0, rel=0.1)
    for i in range(105, 165):  # still arriving; the overload sheds after overload_s
        for r in robots:
            adm.admit(r, i / 30, 30.0)
    ann = adm.announcement(5.5)
    assert len(ann.robots) == 9 and all(w.startswith("overloaded") for _, w in ann.refused)


def test_batch_timings_memory_is_bounded():
    cap = BatchCapacity(per_size=32)
    for i in range(20000):
        cap.add(1 + i % 100, 1e-3 * (1 + i % 7))  # sizes above MAX_BATCH ignored
    assert len(cap._busy) == BatchCapacity.MAX_BATCH
    assert all(len(v) == 32 for v in cap._busy.values())


def test_a_burst_of_drops_shorter_than_overload_s_leaves_the_capacity():
    adm = admission(min_batches=4, max_batch=4)
    for _ in range(8):
        adm.batch_done(4, 0.01, 0.0)
    for i in range(15):  # half a second of drops (a start-up burst), then every frame served
        for r in ("r1", "r2", "r3", "r4"):
            adm.admit(r, i / 30)
            if r in ("r3", "r4"):
                adm.dropped(r, i / 30)
    assert adm.announcement(0.5).capacity_fps == pytest.approx(400.0)
    for i in range(15, 120):
        for r in ("r1", "r2", "r3", "r4"):
            adm.admit(r, i / 30)
    assert adm.announcement(4.0).capacity_fps == pytest.approx(400.0)


def test_overload_sheds_the_newest_robots_after_overload_s_never_the_last():
    adm = admission(capacity_fps=100.0, headroom=0.9, new_robot_fps=0.0, overload_s=1.0)
    stream(adm, ["r1", "r2", "r3", "r4", "r5"], 0.0, 2.0)  # 150 frames/s, taken (no estimate)
    assert len(adm.announcement(1.9).robots) == 5  # over capacity since 1.9 s only
    stream(adm, ["r1", "r2", "r3", "r4", "r5"], 2.0, 3.0)
    ann = adm.announcement(3.0)
    assert ann.robots == ("r1", "r2", "r3") and {r for r, _ in ann.refused} == {"r4", "r5"}
    assert dict(ann.refused)["r5"].startswith("overloaded: load 150 > capacity 100")
    assert not adm.admit("r5", 3.01).accepted  # refused for refuse_s
    one = admission(capacity_fps=10.0, overload_s=0.0, new_robot_fps=0.0)
    stream(one, ["solo"], 0.0, 2.0)
    assert one.announcement(2.0).robots == ("solo",)  # alone over capacity: kept


def test_a_silent_robot_frees_its_place_and_a_refusal_expires():
    adm = admission(capacity_fps=60.0, headroom=1.0, idle_s=2.0, refuse_s=5.0)
    stream(adm, ["r1", "r2"], 0.0, 2.0)
    assert not adm.admit("r3", 2.0).accepted
    assert adm.announcement(4.5).robots == ()       # both silent for 2 s
    assert adm.admit("r3", 6.0).accepted is False    # still refused (until 7.0)
    assert adm.admit("r3", 7.1).accepted


def test_the_edge_hears_the_refusal_and_moves():
    adm = admission(capacity_fps=60.0, headroom=1.0, new_robot_fps=30.0)
    stream(adm, ["r1", "r2"], 0.0, 1.0)
    view = PoolView("r3", "fp")
    for k in range(2):
        view.announce(adm.announcement(1.0 + 0.25 * k), 1.0 + 0.25 * k)
    assert view.choose(1.3).server is None  # no room for r3: local
    adm.admit("r3", 1.31)                    # a robot that sends anyway is refused by name
    view.announce(adm.announcement(1.5), 1.5)
    assert view.choose(1.51).server is None
    assert dict(adm.announcement(1.75).refused)["r3"].startswith("full")


def test_slow_robots_moving_at_once_are_all_taken_with_their_announced_rate():
    """The failover of docs/BENCHMARKS.md: 7 robots at 5 fps served, 9 more at 5 fps arrive
    in the same instant (their server died). Announcing 5 fps, all 16 fit capacity 120
    (80 <= 108); without an announcement each counts 30 fps until measured and only 2 fit
    (35 + 2 x 30 = 95; a third: 125 > 108)."""
    survivors, movers = [f"s{i}" for i in range(7)], [f"m{i}" for i in range(9)]
    for announced, taken in ((5.0, 9), (0.0, 2)):
        adm = admission(capacity_fps=120.0, headroom=0.9, new_robot_fps=30.0)
        stream(adm, survivors, 0.0, 3.0, fps=5.0, announced=5.0)  # measured by 3 s
        refused = stream(adm, movers, 3.0, 3.2, fps=5.0, announced=announced)
        assert len(movers) - len(refused) == taken, (announced, refused)
        ann = adm.announcement(3.2)
        assert len(ann.robots) == 7 + taken
        if announced:
            assert ann.load_fps <= 0.9 * 120.0  # the announced rates, not 30 each


def test_an_announced_rate_counts_at_most_max_announced_fps_and_zero_is_the_default():
    adm = admission(capacity_fps=200.0, headroom=1.0, new_robot_fps=30.0,
                    max_announced_fps=60.0)
    assert adm.admit("forged", 0.0, 1000.0).accepted   # counts 60, not 1000
    assert adm.admit("nan", 0.0, math.nan).accepted     # not a number: the default, 30
    assert adm.admit("zero", 0.0, 0.0).accepted         # unknown: the default, 30
    assert adm.announcement(0.01).load_fps == pytest.approx(60.0 + 30.0 + 30.0)
    assert adm.admit("honest", 0.02, 50.0).accepted      # 120 + 50 <= 200: room left
    assert not adm.admit("late", 0.03, 40.0).accepted    # 170 + 40 > 200


def test_a_robot_announcing_less_than_it_sends_is_caught_by_its_measured_rate():
    """Liars announcing 1 fps but sending 30 are taken while their first frames look small;
    their arrivals show the real rate within a bin, a new robot then finds no room, and the
    overload sheds the newest liar."""
    adm = admission(capacity_fps=100.0, headroom=0.9, overload_s=1.0)
    refused = stream(adm, ["l1", "l2", "l3", "l4"], 0.0, 0.5, announced=1.0)
    assert not refused                                    # 4 x 1 fps fit at first
    assert adm.announcement(0.5).load_fps == pytest.approx(120.0, rel=0.1)  # measured
    assert not adm.admit("new", 0.5, 1.0).accepted        # 120 + 1 > 90
    stream(adm, ["l1", "l2", "l3", "l4"], 0.5, 2.0, announced=1.0)
    ann = adm.announcement(2.0)
    assert ann.robots == ("l1", "l2", "l3") and {r for r, _ in ann.refused} == {"l4", "new"}


def test_latency_and_queue_statistics_and_bounds_of_inputs():
    adm = admission()
    for i in range(100):
        adm.served("r1", 2.0, 10.0 + i, i / 30)
    adm.served("r1", math.nan, -5.0, 4.0)  # ignored
    adm.batch_done(0, 1.0, 4.0)            # ignored
    adm.batch_done(3, math.inf, 4.0)       # ignored
    ann = adm.announcement(4.0)
    assert ann.queue_ms == 2.0 and ann.latency_ms_p99 == pytest.approx(108.01)
    assert adm.values(4.0)["pool_server_id"] == "gpu0_0"
    a2 = adm.announcement(4.1)
    assert a2.sequence == ann.sequence + 1


def test_memory_is_bounded_with_many_robots_and_rates():
    adm = admission(max_robots=8)
    for i in range(2000):
        adm.admit(f"r{i}", i * 1e-3)
    ann = adm.announcement(1.5)
    assert len(ann.robots) == 8 and len(ann.refused) <= 256
    check_announcement(ann)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        admission(headroom=0.0)
    with pytest.raises(ValueError):
        admission(max_announced_fps=0.0)
    with pytest.raises(ValueError):
        admission(max_batch=0)
    with pytest.raises(ValueError):
        ServerAdmission("gpu 0", "/x", ("fp",))


def test_drops_while_a_failed_servers_robots_join_do_not_lower_a_configured_capacity():
    """Failover on the H100: 8 robots arrive at once at a survivor configured for 1,200
    frames/s, half of their first frames dropped while their outputs' publishers are made.
    That is not the process's limit: every one is taken and the capacity stays."""
    adm = admission(capacity_fps=1200.0, overload_s=1.0, drop_tolerance=0.05)
    steady = [f"s{i}" for i in range(4)]
    stream(adm, steady, 0.0, 4.0, announced=30.0)
    adm.announcement(4.0)
    new = [f"n{i}" for i in range(8)]
    for i in range(120, 180):  # two seconds of joining, half the new robots' frames dropped
        t = i / 30
        for k, r in enumerate(steady + new):
            assert adm.admit(r, t, 30.0).accepted, r
            if r in new and k % 2:
                adm.dropped(r, t)
        if i % 8 == 0:
            assert adm.announcement(t).capacity_fps == 1200.0
    stream(adm, steady + new, 6.0, 9.0, announced=30.0)
    ann = adm.announcement(9.0)
    assert ann.capacity_fps == 1200.0 and len(ann.robots) == 12 and not ann.refused
