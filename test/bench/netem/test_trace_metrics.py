"""Per-phase metrics of the trace benchmark on hand-made arrival lists (times in ns)."""

import math

import numpy as np
import pytest
from trace_metrics import (
    NS,
    Phase,
    arrivals_in,
    blind_time_s,
    detection_map50,
    edge_timeline,
    fps_bins,
    fps_goal,
    outage_goal,
    parse_trace,
    phase_metrics,
    phase_modes,
    phases_from_changes,
)

from mtl_split_core.model.config import ModelConfig

CONFIG = ModelConfig()  # the sim's classes: 0 duck, 1 teddy, ...


def s(seconds: float) -> int:
    return int(round(seconds * NS))


def test_trace_parses_and_rejects_negative_or_garbage_values():
    assert parse_trace("50,10,2,0.5,0,20") == [50, 10, 2, 0.5, 0, 20]
    with pytest.raises(ValueError, match="'-1' must be >= 0"):
        parse_trace("5,-1")
    with pytest.raises(ValueError, match="'fast' is not a number"):
        parse_trace("5,fast")
    with pytest.raises(ValueError, match="nan"):
        parse_trace("nan")


def test_phases_run_from_one_link_change_to_the_next():
    phases = phases_from_changes([(s(100), 50.0), (s(110.2), 0.0), (s(120), 20.0)], s(130.5))
    assert [(p.index, p.bandwidth_mbit) for p in phases] == [(0, 50), (1, 0), (2, 20)]
    assert [p.seconds for p in phases] == pytest.approx([10.2, 9.8, 10.5])
    assert phases[1].label() == "down (0)" and phases[0].label() == "50 Mbit/s"
    with pytest.raises(ValueError, match="time order"):
        phases_from_changes([(s(10), 5.0), (s(5), 1.0)], s(20))


def test_an_arrival_on_a_boundary_belongs_to_the_phase_it_starts():
    a, b = Phase(0, 5, s(0), s(10)), Phase(1, 0, s(10), s(20))
    arrivals = [(s(9.9), s(9.99)), (s(9.95), s(10)), (s(15), s(20))]
    assert arrivals_in(arrivals, a) == [(s(9.9), s(9.99))]
    assert arrivals_in(arrivals, b) == [(s(9.95), s(10))]  # s(20) is the next phase's


def test_blind_time_counts_from_the_phase_start_to_its_end():
    # Outputs every 0.1 s from 0.7 s: the gap at the start (0.7 s) is the longest.
    steady = [s(0.7 + 0.1 * i) for i in range(90)]
    assert blind_time_s(steady, s(0), s(10)) == pytest.approx(0.7)
    # A hole in the middle: outputs at 3.0 s and next at 5.5 s.
    holed = [t for t in steady if not s(3) < t < s(5.5)]
    assert blind_time_s(holed, s(0), s(10)) == pytest.approx(2.5)
    # Outputs stop early: the stretch to the phase end counts.
    assert blind_time_s([s(0.1), s(0.2)], s(0), s(10)) == pytest.approx(9.8)
    # No output inside (those outside do not count): blind for the whole phase.
    assert blind_time_s([s(-1), s(10), s(12)], s(0), s(10)) == pytest.approx(10.0)
    assert blind_time_s([], s(5), s(7.5)) == pytest.approx(2.5)
    # Order of arrivals does not matter.
    assert blind_time_s([s(6), s(1), s(4)], s(0), s(8)) == pytest.approx(3.0)


def test_fps_bins_are_per_second_and_scale_a_partial_last_bin():
    arrivals = [s(0.05 * i) for i in range(20)] + [s(1.5), s(2.1), s(2.2)]  # 20, 1, 2 (0.5 s)
    assert fps_bins(arrivals, s(0), s(2.5)) == pytest.approx([20.0, 1.0, 4.0])
    assert fps_bins([s(-0.1), s(3)], s(0), s(2)) == [0.0, 0.0]
    # A few ms past the last full second join it (no bin of 0 fps at the end).
    tail = [s(0.1 * i) for i in range(20)] + [s(1.999), s(2.01)]
    assert fps_bins(tail, s(0), s(2.02)) == pytest.approx([10.0, 12 / 1.02])
    assert fps_bins([s(0.1)], s(0), s(0.2)) == pytest.approx([5.0])  # shorter than a bin


def test_phase_metrics_fps_latency_and_blind_time():
    phase = Phase(2, 10.0, s(20), s(30))
    # 50 ms latency for 99 outputs, one 1 s late one; 10 fps from 20.0 s on.
    arrivals = [(s(20 + 0.1 * i) - s(0.05), s(20 + 0.1 * i)) for i in range(99)]
    arrivals.append((s(28.95), s(29.95)))
    m = phase_metrics(arrivals, phase)
    assert m["delivered"] == 100 and m["delivered_fps"] == pytest.approx(10.0)
    assert m["latency_ms_p50"] == pytest.approx(50.0)
    assert m["latency_ms_p99"] > 50.0
    assert m["blind_s"] == pytest.approx(29.95 - 29.8)
    empty = phase_metrics([], phase)
    assert empty["delivered_fps"] == 0 and empty["blind_s"] == pytest.approx(10.0)
    assert empty["latency_ms_p50"] is None and empty["latency_ms_p99"] is None


def test_edge_link_state_per_phase_from_diagnostics():
    log = [(s(0.5), "mtl_split_edge: edge", {"link_mode": "remote", "split": "s16",
                                            "codec": "q4-zstd/1",
                                            "bandwidth_estimate_mbps": "nan"}),
           (s(0.6), "mtl_split_server: /robot1/mtl_split/features", {"fps": "10"}),
           (s(1.5), "mtl_split_edge: edge", {"link_mode": "local", "split": "s16",
                                            "codec": "q4-zstd/1", "link_mode_reason": "silent",
                                            "bandwidth_estimate_mbps": "2.0"}),
           (s(2.5), "mtl_split_edge: edge", {"link_mode": "local", "split": "s32",
                                            "codec": "q8-zstd/1", "link_mode_reason": "budget",
                                            "bandwidth_estimate_mbps": "0.5"}),
           (s(3.5), "mtl_split_edge: edge", {"link_mode": "local", "split": "s32",
                                            "codec": "q8-zstd/1", "link_mode_reason": "budget",
                                            "bandwidth_estimate_mbps": "garbage"})]
    timeline = edge_timeline(log)
    assert [e["link_mode"] for e in timeline] == ["remote", "local", "local", "local"]
    assert [e["estimate_mbps"] for e in timeline] == [None, 2.0, 0.5, None]
    modes = phase_modes(timeline, Phase(0, 0, s(1), s(4)))
    assert modes["reports"] == 3
    assert modes["link_mode"] == {"local": 1.0}
    assert modes["choice"] == {"s32 q8-zstd/1": pytest.approx(0.667, abs=1e-3),
                               "s16 q4-zstd/1": pytest.approx(0.333, abs=1e-3)}
    assert modes["estimate_mbps_p50"] == pytest.approx(1.25)
    assert modes["local_reasons"] == ["budget", "silent"]
    assert phase_modes(timeline, Phase(1, 5, s(10), s(20))) == {"reports": 0, "link_mode": {},
                                                               "choice": {}}


def test_fps_goal_compares_adaptive_with_the_best_fixed_strategy():
    met = fps_goal({"split": 18.0, "jpeg": 12.0, "local": 11.0, "adaptive": 16.3})
    assert met == {"met": True, "best_fixed": "split", "ratio": pytest.approx(0.906, abs=1e-3)}
    missed = fps_goal({"split": 18.0, "jpeg": 12.0, "adaptive": 16.1})
    assert missed["met"] is False
    # Nothing fixed delivers (an outage without local): any adaptive fps meets it.
    assert fps_goal({"split": 0.0, "adaptive": 0.0})["met"] is True
    assert fps_goal({"split": 5.0})["met"] is None


def test_outage_goal_needs_adaptive_outputs_and_blind_fixed_remote_strategies():
    ok = outage_goal({"adaptive": 0.7, "split": 10.0, "jpeg": 9.96, "local": 0.1}, 10.0,
                     ("split", "jpeg"))
    assert ok["met"] is True
    assert ok["fixed_remote_blind_throughout"] == {"split": True, "jpeg": True}
    assert outage_goal({"adaptive": 1.2, "split": 10.0}, 10.0, ("split", "jpeg"))["met"] is False
    # A fixed remote strategy that delivered mid-outage: the link was not down for it.
    leaked = outage_goal({"adaptive": 0.5, "split": 6.0}, 10.0, ("split",))
    assert leaked["met"] is False and leaked["adaptive_met"] is True


def test_delivered_detections_are_scored_against_their_own_frames():
    truth = {0: {"boxes": np.array([[10, 10, 50, 50]], np.float32), "labels": np.array([0])},
             1: {"boxes": np.array([[100, 100, 160, 140]], np.float32),
                 "labels": np.array([1])}}
    frame_of = {1000: 0, 2000: 1, 3000: 0}
    right = [(1000, {"boxes": [[10, 10, 50, 50]], "class_ids": [0], "scores": [0.9]}),
             (2000, {"boxes": [[100, 100, 160, 140]], "class_ids": [1], "scores": [0.8]}),
             (9999, {"boxes": [], "class_ids": [], "scores": []})]  # stamp never sent
    r = detection_map50(right, frame_of, truth.__getitem__, CONFIG)
    assert r == {"mAP50": pytest.approx(1.0), "frames": 2, "unmatched": 1}
    # Frame 1's boxes delivered with frame 0's stamp: scored against frame 0, so wrong.
    swapped = [(3000, {"boxes": [[100, 100, 160, 140]], "class_ids": [1], "scores": [0.8]})]
    assert detection_map50(swapped, frame_of, truth.__getitem__, CONFIG)["mAP50"] < 0.5
    none = detection_map50([], frame_of, truth.__getitem__, CONFIG)
    assert math.isnan(none["mAP50"]) and none["frames"] == 0
