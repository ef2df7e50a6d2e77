"""From result rows to the comparisons: curves, BD-rates, bytes at equal accuracy.

- A **baseline curve** is one image or video codec's sweep (qualities / CRFs).
- **Our curves** are the operating points of one split point (its codecs), plus all our
  points together ("ours, any split"); a split with one usable point has no BD-rate.
- **Equal accuracy**: for each of our operating points, the bytes a baseline codec needs to
  come within ``TOLERANCE`` of our metric (interpolated on its envelope), per metric and for
  all metrics at once (the largest of those), and the ratio ours / theirs (< 1: ours is
  smaller; > 1: the baseline wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bdrate import BytesAt, Point, bd_rate, bytes_at

TOLERANCE = 0.005
BASELINE_FAMILIES = ("image", "video")
ALL = "all"  # every metric at once


def scored(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if "skipped" not in r and r.get("bytes_per_frame") is not None]


def points(rows: Iterable[dict], metric: str) -> list[Point]:
    return [(r["bytes_per_frame"], r[metric]) for r in rows if metric in r]


def baseline_curves(rows: list[dict]) -> dict[str, list[dict]]:
    curves: dict[str, list[dict]] = {}
    for r in scored(rows):
        if r["family"] in BASELINE_FAMILIES:
            curves.setdefault(r["codec"], []).append(r)
    return curves


def our_curves(rows: list[dict]) -> dict[str, list[dict]]:
    ours = [r for r in scored(rows) if r["family"] == "ours"]
    curves: dict[str, list[dict]] = {}
    for r in ours:
        curves.setdefault(f"split {r['setting']}", []).append(r)
    if len(curves) > 1:
        curves["ours, any split"] = ours
    return curves


def bd_rates(rows: list[dict], metrics: dict[str, str]) -> list[dict[str, Any]]:
    """BD-rate of each of our curves against each baseline curve, per metric."""
    out = []
    for name, ours in our_curves(rows).items():
        for anchor, theirs in baseline_curves(rows).items():
            for task, metric in metrics.items():
                bd = bd_rate(points(ours, metric), points(theirs, metric))
                out.append({"ours": name, "anchor": anchor, "task": task, "metric": metric,
                            "bd_rate_percent": bd.percent, "overlap": bd.overlap,
                            "text": bd.text()})
    return out


def _all_metrics(found: list[BytesAt]) -> BytesAt:
    """Bytes to meet every metric: the largest per-metric need (None if one is not met)."""
    if any(f.bytes is None for f in found):
        return BytesAt(None, ">")
    worst = max(found, key=lambda f: f.bytes or 0.0)
    return worst


def equal_accuracy(rows: list[dict], metrics: dict[str, str]) -> list[dict[str, Any]]:
    """For each of our operating points and each baseline codec: bytes at equal accuracy."""
    out = []
    baselines = baseline_curves(rows)
    for ours in (r for r in scored(rows) if r["family"] == "ours"):
        entry: dict[str, Any] = {"ours": ours["label"], "bytes_per_frame":
                                 ours["bytes_per_frame"], "baselines": {}}
        for anchor, theirs in baselines.items():
            per: dict[str, BytesAt] = {
                metric: bytes_at(points(theirs, metric), ours[metric] - TOLERANCE)
                for metric in metrics.values()}
            per[ALL] = _all_metrics(list(per.values()))
            entry["baselines"][anchor] = {
                metric: {"bytes": b.bytes, "bound": b.bound,
                         "ratio": None if not b.bytes else ours["bytes_per_frame"] / b.bytes}
                for metric, b in per.items()}
        out.append(entry)
    return out


def best_baseline(entry: dict[str, Any], metric: str = ALL) -> tuple[str, dict] | None:
    """The baseline codec that needs the fewest bytes for ``metric`` (None: none reaches)."""
    reached = [(name, per[metric]) for name, per in entry["baselines"].items()
               if per[metric]["bytes"] is not None]
    return min(reached, key=lambda item: item[1]["bytes"]) if reached else None
