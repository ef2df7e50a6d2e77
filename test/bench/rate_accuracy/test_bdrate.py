"""bench/rate_accuracy/bdrate.py: envelope, bytes at a metric, BD-rate against known answers."""

import math

import pytest
from bdrate import bd_rate, bytes_at, envelope

ANCHOR = [(1000, 0.50), (2000, 0.60), (4000, 0.70), (8000, 0.80)]


def test_identical_curves_have_zero_bd_rate():
    bd = bd_rate(ANCHOR, ANCHOR)
    assert bd.percent == pytest.approx(0.0, abs=1e-9)
    assert bd.overlap == (0.5, 0.8)


@pytest.mark.parametrize("factor, expected", [(0.5, -50.0), (2.0, 100.0), (0.1, -90.0)])
def test_same_metric_at_a_fraction_of_the_bytes(factor, expected):
    test = [(r * factor, m) for r, m in ANCHOR]
    assert bd_rate(test, ANCHOR).percent == pytest.approx(expected, rel=1e-9)


def test_bd_rate_covers_only_the_overlapping_metric_range():
    # Half the bytes where both curves exist (log-rate linear in the metric on both, so PCHIP is
    # exact); the test curve's extra point above 0.8 does not count.
    test = [(r / 2, m) for r, m in ANCHOR[1:]] + [(500 * 2 ** 4.5, 0.95)]
    bd = bd_rate(test, ANCHOR)
    assert bd.overlap == (0.6, 0.8)
    assert bd.percent == pytest.approx(-50.0, rel=1e-6)


def test_curves_that_do_not_overlap_have_no_bd_rate():
    high = [(r, m + 0.5) for r, m in ANCHOR]
    bd = bd_rate(high, ANCHOR)
    assert bd.percent is None and bd.overlap is None
    assert bd.text() == "no overlap"


def test_a_single_point_has_no_bd_rate():
    bd = bd_rate([(1500, 0.65)], ANCHOR)
    assert bd.percent is None and "< 2 points" in bd.text()
    # Two points that the envelope reduces to one (more bytes, no better) are one point too.
    assert bd_rate([(1500, 0.65), (3000, 0.64)], ANCHOR).percent is None


def test_envelope_keeps_points_that_improve_on_every_cheaper_one():
    pts = [(3000, 0.70), (1000, 0.50), (2000, 0.72), (4000, 0.71), (0, 0.9),
           (5000, math.nan), (6000, 0.80)]
    assert envelope(pts) == [(1000, 0.50), (2000, 0.72), (6000, 0.80)]


def test_bytes_at_interpolates_log_rate_on_the_envelope():
    # Halfway in metric between two points that double in bytes: the geometric mean
    # (PCHIP through equally spaced doubling points is the straight line in log-rate).
    b = bytes_at(ANCHOR, 0.65)
    assert b.bound == "=" and b.bytes == pytest.approx(2000 * math.sqrt(2), rel=1e-6)
    assert bytes_at(ANCHOR, 0.70).bytes == pytest.approx(4000)


def test_bytes_at_outside_the_tested_range():
    below = bytes_at(ANCHOR, 0.3)  # the cheapest point already reaches it: an upper bound
    assert below.bytes == 1000 and below.bound == "<=" and below.text() == "≤ 1,000"
    above = bytes_at(ANCHOR, 0.81)  # never reached
    assert above.bytes is None and above.bound == ">" and above.text() == "not reached"
    assert bytes_at([], 0.5).bytes is None
