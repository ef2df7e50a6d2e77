"""Rate–accuracy curve arithmetic: the envelope, bytes at a given accuracy, Bjøntegaard delta.

A curve is a set of operating points ``(bytes per frame, metric)`` with a higher-is-better
metric. Quality sweeps are not always monotone on a finite test set (q85 may score a hair
below q80), and the standard interpolation needs the metric to rise with the rate, so every
function here works on the curve's **envelope**: the points sorted by rate that each beat every
cheaper point's metric (the best accuracy reachable within a byte budget).

Interpolation is the Bjøntegaard method with piecewise cubic Hermite interpolation (PCHIP, as
in the current VCEG/JVET BD-rate tools): log10(bytes) as a function of the metric.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

Point = tuple[float, float]  # (bytes per frame, metric)


def envelope(points: Sequence[Point]) -> list[Point]:
    """The points that raise the best metric reachable at their rate, by increasing rate."""
    best = -math.inf
    out: list[Point] = []
    for rate, metric in sorted(points, key=lambda p: (p[0], -p[1])):
        if rate > 0 and math.isfinite(metric) and metric > best:
            out.append((float(rate), float(metric)))
            best = metric
    return out


def _log_rate_of_metric(env: Sequence[Point]) -> PchipInterpolator:
    metric = np.array([m for _, m in env])
    return PchipInterpolator(metric, np.log10([r for r, _ in env]))


@dataclass(frozen=True)
class BytesAt:
    """Bytes a curve needs to reach a metric: ``bytes`` is interpolated on the envelope,
    ``bound`` says whether it is exact ("="), an upper bound because the cheapest point
    tested already reaches the metric ("<="), or absent because no point reaches it (">")."""

    bytes: float | None
    bound: str

    def text(self) -> str:
        if self.bytes is None:
            return "not reached"
        return f"{'≤ ' if self.bound == '<=' else ''}{self.bytes:,.0f}"


def bytes_at(points: Sequence[Point], metric: float) -> BytesAt:
    """Interpolated bytes per frame at which the curve's envelope reaches ``metric``."""
    env = envelope(points)
    if not env or metric > env[-1][1]:
        return BytesAt(None, ">")
    if metric <= env[0][1]:
        return BytesAt(env[0][0], "<=" if metric < env[0][1] else "=")
    return BytesAt(float(10 ** _log_rate_of_metric(env)(metric)), "=")


@dataclass(frozen=True)
class BDRate:
    """Bjøntegaard delta rate of a test curve against an anchor, in percent (negative: the
    test curve needs fewer bytes for the same metric), over the metric range both cover;
    ``percent`` is None with a ``reason`` when it cannot be computed."""

    percent: float | None
    overlap: tuple[float, float] | None
    reason: str = ""

    def text(self) -> str:
        return f"{self.percent:+.1f}%" if self.percent is not None else self.reason


def bd_rate(test: Sequence[Point], anchor: Sequence[Point]) -> BDRate:
    """BD-rate of ``test`` against ``anchor``: the mean log-rate difference over the overlap
    of their metric ranges, as a percentage of the anchor's bytes."""
    a, t = envelope(anchor), envelope(test)
    if len(a) < 2 or len(t) < 2:
        return BDRate(None, None, "n/a (< 2 points)")
    lo, hi = max(a[0][1], t[0][1]), min(a[-1][1], t[-1][1])
    if not hi > lo:
        return BDRate(None, None, "no overlap")
    fa, ft = _log_rate_of_metric(a), _log_rate_of_metric(t)
    mean_diff = (ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)
    return BDRate(float((10 ** mean_diff - 1) * 100), (float(lo), float(hi)))
