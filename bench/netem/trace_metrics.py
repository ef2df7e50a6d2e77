"""Per-phase metrics of the bandwidth-trace benchmark (trace.py), from what the robot received.

Pure functions of recorded times (ns, one wall clock: camera, link changes and the probe run on
one host): a phase is the window between two link changes; an output counts in the phase in
which it *arrived*. Blind time is the longest stretch of the phase without an arrival,
counted from the phase start to the phase end (a phase without outputs is blind throughout).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000


@dataclass(frozen=True)
class Phase:
    """One step of the trace: the link at ``bandwidth_mbit`` (0 = down) from ``start_ns``
    (just before the change was applied) to ``end_ns`` (the next change)."""

    index: int
    bandwidth_mbit: float
    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / NS

    def label(self) -> str:
        return bandwidth_label(self.bandwidth_mbit)


def bandwidth_label(bandwidth_mbit: float) -> str:
    """'20 Mbit/s', or 'down (0)' for a link that is down."""
    return "down (0)" if bandwidth_mbit == 0 else f"{bandwidth_mbit:g} Mbit/s"


def parse_trace(text: str) -> list[float]:
    """'50,10,0,20' -> [50.0, 10.0, 0.0, 20.0] (Mbit/s, 0 = down). ValueError with the reason."""
    values = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"trace value {part.strip()!r} is not a number") from None
        if not (v >= 0 and np.isfinite(v)):
            raise ValueError(f"trace value {part.strip()!r} must be >= 0 Mbit/s (0 = down)")
        values.append(v)
    return values


def phases_from_changes(changes: Sequence[tuple[int, float]], end_ns: int) -> list[Phase]:
    """Phases from the link changes ``[(time_ns, bandwidth), ...]`` (in order) and the trace's
    end: each phase lasts until the next change."""
    bounds = [t for t, _ in changes] + [end_ns]
    if any(b < a for a, b in zip(bounds, bounds[1:])):
        raise ValueError("link changes must be in time order and before the end")
    return [Phase(i, bw, t, bounds[i + 1]) for i, (t, bw) in enumerate(changes)]


def arrivals_in(arrivals: Iterable[tuple[int, int]], phase: Phase) -> list[tuple[int, int]]:
    """The (stamp, arrival) pairs that arrived within ``phase`` (start inclusive)."""
    return [(s, a) for s, a in arrivals if phase.start_ns <= a < phase.end_ns]


def blind_time_s(arrival_ns: Iterable[int], start_ns: int, end_ns: int) -> float:
    """Longest gap (s) without an arrival in [start, end): phase start to the first arrival,
    between arrivals, last arrival to the phase end. No arrival: the whole window."""
    inside = sorted(a for a in arrival_ns if start_ns <= a < end_ns)
    edges = [start_ns, *inside, end_ns]
    return max(b - a for a, b in zip(edges, edges[1:])) / NS


def fps_bins(arrival_ns: Iterable[int], start_ns: int, end_ns: int,
             bin_s: float = 1.0) -> list[float]:
    """Arrivals per second in consecutive ``bin_s`` bins from start. A remainder of at least
    half a bin is a bin of its own, a shorter one joins the last bin (each bin's rate is over
    its own length), so a few ms past the end never show as a bin of 0 fps."""
    width = int(bin_s * NS)
    full, rest = divmod(end_ns - start_ns, width)
    edges = [start_ns + i * width for i in range(full + 1)]
    if rest >= width / 2 or full == 0:
        edges.append(end_ns)
    else:
        edges[-1] = end_ns
    counts = [0] * (len(edges) - 1)
    for a in arrival_ns:
        if start_ns <= a < end_ns:
            counts[min((a - start_ns) // width, len(counts) - 1)] += 1
    return [c / ((b - a) / NS) if b > a else 0.0
            for c, a, b in zip(counts, edges, edges[1:])]


def latency_ms(pairs: Sequence[tuple[int, int]]) -> dict:
    """p50 / p99 of arrival - stamp (ms); None without arrivals."""
    if not pairs:
        return {"latency_ms_p50": None, "latency_ms_p99": None}
    lat = np.array([(a - s) / 1e6 for s, a in pairs])
    return {"latency_ms_p50": float(np.percentile(lat, 50)),
            "latency_ms_p99": float(np.percentile(lat, 99))}


def phase_metrics(arrivals: Sequence[tuple[int, int]], phase: Phase) -> dict:
    """Delivered fps, latency p50/p99 and blind time of one phase."""
    inside = arrivals_in(arrivals, phase)
    return {"phase": phase.index, "bandwidth_mbit": phase.bandwidth_mbit,
            "seconds": round(phase.seconds, 3), "delivered": len(inside),
            "delivered_fps": len(inside) / phase.seconds if phase.seconds > 0 else 0.0,
            **latency_ms(inside),
            "blind_s": blind_time_s((a for _, a in inside), phase.start_ns, phase.end_ns)}


def edge_timeline(diagnostics_log: Iterable[tuple[int, str, dict]]) -> list[dict]:
    """The edge's link state over time from the probe's /diagnostics log: arrival time,
    link mode (remote/local) and why, the split/codec in use and the bandwidth estimate its
    controller used (Mbit/s; None when it has none)."""
    return [{"t_ns": t, "link_mode": v.get("link_mode", "?"),
             "reason": v.get("link_mode_reason", ""),
             "split": v.get("split", "?"), "codec": v.get("codec", "?"),
             "estimate_mbps": _finite(v.get("bandwidth_estimate_mbps"))}
            for t, name, v in diagnostics_log if name.endswith(": edge")]


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def phase_modes(timeline: Sequence[dict], phase: Phase) -> dict:
    """Share of the edge's /diagnostics reports within ``phase`` per link mode and per
    (split codec) choice, the median bandwidth estimate and the most frequent reasons for
    running locally; empty when no report arrived."""
    inside = [e for e in timeline if phase.start_ns <= e["t_ns"] < phase.end_ns]
    if not inside:
        return {"reports": 0, "link_mode": {}, "choice": {}}
    modes = Counter(e["link_mode"] for e in inside)
    choices = Counter(f"{e['split']} {e['codec']}" for e in inside)
    estimates = [e["estimate_mbps"] for e in inside if e.get("estimate_mbps") is not None]
    local = Counter(e.get("reason", "") for e in inside if e["link_mode"] == "local")
    n = len(inside)
    return {"reports": n,
            "link_mode": {k: round(v / n, 3) for k, v in modes.most_common()},
            "choice": {k: round(v / n, 3) for k, v in choices.most_common()},
            "estimate_mbps_p50": float(np.median(estimates)) if estimates else None,
            "local_reasons": [r for r, _ in local.most_common(3)]}


def fps_goal(fps: dict[str, float], adaptive: str = "adaptive",
             tolerance: float = 0.10) -> dict:
    """The issue's fps goal for one phase: ``adaptive`` delivers at least (1 - tolerance) of
    the best fixed strategy's fps. ``fps``: strategy -> delivered fps."""
    fixed = {k: v for k, v in fps.items() if k != adaptive}
    if adaptive not in fps or not fixed:
        return {"met": None, "best_fixed": None, "ratio": None}
    best = max(fixed, key=lambda k: fixed[k])
    ratio = fps[adaptive] / fixed[best] if fixed[best] > 0 else float("inf")
    return {"met": bool(fps[adaptive] >= (1 - tolerance) * fixed[best]), "best_fixed": best,
            "ratio": round(ratio, 3) if np.isfinite(ratio) else None}


def outage_goal(blind: dict[str, float], seconds: float, remote_fixed: Sequence[str],
                adaptive: str = "adaptive", limit_s: float = 1.0,
                whole_share: float = 0.95) -> dict:
    """The issue's outage goal for a phase with the link down: ``adaptive`` blind for at most
    ``limit_s``, every fixed remote strategy blind for the whole outage (at least
    ``whole_share`` of it: outputs already across the link when it fell may still land)."""
    adaptive_met = adaptive in blind and blind[adaptive] <= limit_s
    fixed_blind = {k: blind[k] >= whole_share * seconds for k in remote_fixed if k in blind}
    return {"adaptive_met": bool(adaptive_met) if adaptive in blind else None,
            "fixed_remote_blind_throughout": fixed_blind,
            "met": (bool(adaptive_met) and all(fixed_blind.values())) if adaptive in blind
            else None}


def detection_map50(delivered: Sequence[tuple[int, dict]], frame_of_stamp: dict[int, int],
                    truth, config) -> dict:
    """mAP@0.5 of the delivered detections against their frames' ground truth.

    ``delivered``: (header stamp, {"boxes", "class_ids", "scores"}) per detections message;
    ``frame_of_stamp``: the camera's stamp -> frame index; ``truth(i)``: frame i's ground
    truth (``boxes``, ``labels``); ``config``: the model's ModelConfig (its detection classes;
    scored by mtl_split_core.evaluate.score, as every evaluation). A message whose stamp the
    camera never sent is counted in ``unmatched`` and left out; NaN without a scored frame."""
    from mtl_split_core.evaluate import score

    pairs, unmatched = [], 0
    for stamp, det in delivered:
        index = frame_of_stamp.get(stamp)
        if index is None:
            unmatched += 1
            continue
        pairs.append(({"boxes": np.asarray(det["boxes"], np.float32).reshape(-1, 4),
                       "class_ids": np.asarray(det["class_ids"], np.int64),
                       "scores": np.asarray(det["scores"], np.float32)}, truth(index)))
    if not pairs:
        return {"mAP50": float("nan"), "frames": 0, "unmatched": unmatched}
    result = score(pairs, config, tasks=["detection"])["detection"]
    return {"mAP50": float(result["mAP50"]), "frames": len(pairs), "unmatched": unmatched}
