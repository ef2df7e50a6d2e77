"""camera_gaps: frames a camera sent that the edge never saw, from synthetic header stamps
(no ROS, no clock): the period is inferred robustly, gaps are counted, jitter, restarts,
pauses, repeats and unstamped frames are not losses."""

import math

import numpy as np
import pytest

from mtl_split_core.runtime.camera_gaps import CameraGaps, StampGaps

NS = 1_000_000_000
PERIOD_NS = NS // 30  # a 30 Hz camera


def feed(gaps, frames, period_ns=PERIOD_NS, jitter=0.0, seed=0, t0_ns=NS):
    """Stamps of camera frames ``frames`` (indices the edge saw); returns the missed counts."""
    rng = np.random.default_rng(seed)
    out = []
    for i in frames:
        stamp = t0_ns + i * period_ns + int(rng.uniform(-jitter, jitter) * period_ns)
        out.append(gaps.add(stamp, stamp / NS))
    return out


def test_every_frame_seen_is_no_loss_and_the_period_is_found():
    gaps = StampGaps()
    assert sum(feed(gaps, range(100))) == 0
    assert gaps.period_s == pytest.approx(1 / 30, rel=1e-6)
    values = gaps.values(100 / 30 + 1)
    assert values["missed"] == 0 and values["seen_fraction_recent"] == 1.0
    assert values["period_ms"] == pytest.approx(1000 / 30, rel=1e-6)


def test_missed_frames_are_counted_exactly():
    seen = [i for i in range(300) if i % 10 not in (3, 4, 7)]  # 30% of the frames lost
    gaps = StampGaps()
    feed(gaps, seen)
    # Gaps are judged once 8 differences are known: the first 10 frames lost 3, uncounted.
    assert gaps.missed == 90 - 3
    assert gaps.period_s == pytest.approx(1 / 30, rel=1e-6)


def test_the_period_survives_most_frames_missing():
    """Two of every three frames replaced (a slow edge behind a depth-1 reader): still the
    camera's period, not the edge's."""
    seen = [i for i in range(600) if i % 3 == 0 or i % 12 == 1]
    gaps = StampGaps()
    feed(gaps, seen)
    assert gaps.period_s == pytest.approx(1 / 30, rel=1e-6)
    assert gaps.missed >= 600 - len(seen) - 20


def test_stamp_jitter_is_not_a_loss():
    gaps = StampGaps()
    assert sum(feed(gaps, range(500), jitter=0.2, seed=1)) == 0
    assert gaps.period_s == pytest.approx(1 / 30, rel=0.05)


def test_resets_pauses_repeats_and_unstamped_frames():
    gaps = StampGaps()
    feed(gaps, range(20))
    assert gaps.add(NS + 5 * PERIOD_NS, 10.0) == 0  # backwards: a restarted driver
    assert gaps.resets == 1 and gaps.period_s is None
    feed(gaps, range(100, 120))
    before = gaps.missed
    # A pause far over max_gap_periods (the camera stopped): a reset, not 3000 missed frames.
    assert gaps.add(NS + 3120 * PERIOD_NS, 20.0) == 0 and gaps.resets == 2
    assert gaps.missed == before
    gaps.add(NS + 3120 * PERIOD_NS, 20.1)  # the same stamp again
    gaps.add(0, 20.2)  # a driver that does not stamp
    assert gaps.repeats == 1 and gaps.unstamped == 1 and gaps.missed == before


def test_recent_counts_leave_the_window():
    gaps = StampGaps(recent_s=10.0)
    feed(gaps, [i for i in range(60) if i % 2 == 0 or i < 20])  # lose every other from 20
    values = gaps.values(60 / 30 + 1)
    assert values["missed_recent"] == values["missed"] > 0
    assert values["seen_fraction_recent"] == pytest.approx(40 / 60, abs=0.05)
    later = gaps.values(100.0)
    assert later["missed_recent"] == 0 and later["missed"] == values["missed"]
    assert math.isnan(later["seen_fraction_recent"])  # nothing seen recently


def test_per_camera_and_bounded():
    cameras = CameraGaps(max_cameras=2)
    feed_two = [(f"cam{c}", i) for i in range(40) for c in (0, 1) if not (c == 1 and i % 4 == 2)]
    for frame_id, i in feed_two:
        cameras.add(frame_id, NS + i * PERIOD_NS, i / 30)
    cameras.add("cam2", NS, 2.0)  # a third camera is not tracked
    values = cameras.values(2.0)
    assert values["camera_missed[cam0]"] == 0 and values["camera_missed[cam1]"] > 0
    assert values["camera_untracked_frames"] == 1
    one = CameraGaps()
    one.add("camera", NS, 0.0)
    assert "camera_missed" in one.values(0.0)  # one camera: plain keys


def test_bad_construction():
    with pytest.raises(ValueError):
        StampGaps(window=4, min_deltas=8)


@pytest.mark.parametrize("seed", range(20))
def test_the_period_is_numpys_percentile_and_medians(seed):
    """The sorted-list estimate (no numpy call per image) equals the numpy formulation it
    replaced, on jittery stamp differences with gaps of 2-4 periods, odd and even counts."""
    from collections import deque

    from mtl_split_core.runtime.camera_gaps import GAP_FACTOR, PERIOD_PERCENTILE, _period
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 65))
    deltas = (PERIOD_NS * rng.choice([1, 1, 1, 2, 3, 4], n)
              * rng.uniform(0.8, 1.2, n)).astype(np.int64)
    expected = float(np.percentile(deltas, PERIOD_PERCENTILE))
    for _ in range(3):
        expected = float(np.median(deltas[deltas <= GAP_FACTOR * expected]))
    assert _period(deque(int(d) for d in deltas)) == pytest.approx(expected, rel=1e-12)
