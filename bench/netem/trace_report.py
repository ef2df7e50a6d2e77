"""results.md and results.png of the bandwidth-trace benchmark (trace.py's results dict)."""

from __future__ import annotations

import math
from pathlib import Path

from trace_metrics import bandwidth_label


def _fmt(v, spec: str = ".0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _shares(shares: dict, top: int = 2) -> str:
    items = list(shares.items())[:top]
    return ", ".join(f"{k} {v * 100:.0f}%" for k, v in items)


def _edge(phase: dict) -> str:
    edge = phase.get("edge") or {}
    if not edge.get("reports"):
        return "-"
    estimate = edge.get("estimate_mbps_p50")
    return (f"{_shares(edge['link_mode'])}; {_shares(edge['choice'])}"
            + (f"; estimate {estimate:.2g} Mbit/s" if estimate is not None else ""))


def markdown(results: dict) -> str:
    meta, runs = results["meta"], results["runs"]
    budget = meta["latency_budget_ms"]
    load = (f"before {' / '.join(f'{v:.2f}' for v in meta['loadavg_before'])}, after "
            f"{' / '.join(f'{v:.2f}' for v in meta.get('loadavg_after', []))}")
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; date {meta['date']}; host load (1/5/15 min) {load}  ",
             f"Model: {meta['model']}  ",
             f"Camera: {meta['camera']}; link QoS {meta['link_qos']}; "
             f"{'robot on CPU 0, server on CPU 1' if meta['pinned'] else 'unpinned'}  ",
             f"Trace: {', '.join(bandwidth_label(b) for b in meta['trace_mbit'])}, "
             f"{meta['phase_seconds']:g} s each; tbf queue {meta['queue_ms']:g} ms; adaptive "
             f"fallback_after {meta['fallback_after']:g} s, latency budget "
             f"{f'{budget:g} ms' if budget else 'edge default (100 ms)'}",
             "",
             "| phase | strategy | delivered fps | latency p50 / p99 (ms) | blind (s) | "
             "mAP@0.5 (frames) | edge: link mode; split codec |",
             "|---|---|---:|---:|---:|---:|---|"]
    for i, bandwidth in enumerate(meta["trace_mbit"]):
        for name, run in runs.items():
            p = run["phases"][i]
            acc = p["accuracy"]
            lines.append(
                f"| {i + 1}: {bandwidth_label(bandwidth)} | {name} | {p['delivered_fps']:.1f} | "
                f"{_fmt(p['latency_ms_p50'])} / {_fmt(p['latency_ms_p99'])} | "
                f"{p['blind_s']:.2f} | {_fmt(acc['mAP50'], '.3f')} ({acc['frames']}) | "
                f"{_edge(p) if name != 'jpeg' else '-'} |")
    lines += ["", "Host load (1 min) after each strategy: " + ", ".join(
        f"{name} {run['loadavg_after'][0]:.2f}" for name, run in runs.items()
        if run.get("loadavg_after")) + "  "]
    lines += ["Whole trace: " + "; ".join(
        f"{name} {run['delivered']} outputs, mAP@0.5 {_fmt(run['accuracy']['mAP50'], '.3f')}"
        for name, run in runs.items())]
    if "adaptive" in runs and len(runs) > 1:
        lines += ["", "| phase | best fixed | adaptive / best fixed fps | fps goal (>= 90%) | "
                  "outage goal |", "|---|---|---:|---|---|"]
        for g in results.get("goals", []):
            fps = g["fps"]
            best = fps["best_fixed"]
            best_fps = runs[best]["phases"][g["phase"]]["delivered_fps"] if best else None
            outage = "-"
            if "outage" in g:
                o = g["outage"]
                blind = runs["adaptive"]["phases"][g["phase"]]["blind_s"]
                fixed = ", ".join(f"{k} {'yes' if v else 'no'}"
                                  for k, v in o["fixed_remote_blind_throughout"].items())
                outage = (f"{'met' if o['met'] else 'missed'}: adaptive blind {blind:.2f} s "
                          f"(<= 1 s {'yes' if o['adaptive_met'] else 'no'}); fixed remote "
                          f"blind throughout: {fixed or '-'}")
            met = {True: "met", False: "missed", None: "-"}[fps["met"]]
            lines.append(f"| {g['phase'] + 1}: {bandwidth_label(g['bandwidth_mbit'])} | "
                         f"{best or '-'} ({_fmt(best_fps, '.1f')}) | {_fmt(fps['ratio'], '.2f')}"
                         f" | {met} | {outage} |")
    return "\n".join(lines) + "\n"


def _local_spans(timeline: list[dict], period: float) -> list[tuple[float, float]]:
    """Time spans (s) in which the edge reported link mode local, each report standing for
    the ``period`` around it; touching spans merged."""
    spans: list[list[float]] = []
    for e in timeline:
        if e["link_mode"] != "local":
            continue
        start, stop = e["t_s"] - period / 2, e["t_s"] + period / 2
        if spans and start <= spans[-1][1] + 1e-6:
            spans[-1][1] = stop
        else:
            spans.append([start, stop])
    return [(a, b) for a, b in spans]


def plot(results: dict, path: Path) -> None:
    """Delivered fps per second of each strategy through the trace (phases and bandwidth
    marked); below it the adaptive edge's split (colour: codec) and its local periods."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, runs = results["meta"], results["runs"]
    trace, phase_s = meta["trace_mbit"], meta["phase_seconds"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    for name, run in runs.items():
        bins = run["fps_bins"]
        top.step([i for i in range(len(bins) + 1)], bins + bins[-1:], where="post",
                 label=name, linewidth=1.6)
    end = len(trace) * phase_s
    for ax in (top, bottom):
        for i in range(1, len(trace)):
            ax.axvline(i * phase_s, color="grey", linestyle="--", linewidth=0.8)
    for i, bandwidth in enumerate(trace):
        if bandwidth == 0:
            top.axvspan(i * phase_s, (i + 1) * phase_s, color="red", alpha=0.08)
        top.text((i + 0.5) * phase_s, 1.01, bandwidth_label(bandwidth),
                 transform=top.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)
    top.set_ylabel("delivered fps (1 s bins)")
    top.set_xlim(0, end)
    top.set_ylim(0, max([max(r["fps_bins"] or [0]) for r in runs.values()] + [1]) * 1.25)
    top.legend(loc="upper left", fontsize=8, ncol=len(runs))
    top.grid(alpha=0.3)

    timeline = runs.get("adaptive", {}).get("edge_timeline", [])
    splits = sorted({e["split"] for e in timeline}, key=lambda s: (len(s), s))
    codecs = sorted({e["codec"] for e in timeline})
    colours = dict(zip(codecs, ["tab:blue", "tab:orange", "tab:green", "tab:purple"]))
    for codec in codecs:
        pts = [(e["t_s"], splits.index(e["split"])) for e in timeline if e["codec"] == codec]
        bottom.scatter([t for t, _ in pts], [y for _, y in pts], s=10, color=colours[codec],
                       label=codec)
    period = meta.get("diagnostics_period", 0.25)
    for start, stop in _local_spans(timeline, period):
        bottom.axvspan(start, stop, color="red", alpha=0.2, linewidth=0)
    estimates = [(e["t_s"], e["estimate_mbps"]) for e in timeline
                 if e.get("estimate_mbps") is not None]
    if estimates:
        twin = bottom.twinx()
        twin.plot([t for t, _ in estimates], [v for _, v in estimates], color="black",
                  linewidth=0.8, alpha=0.6)
        twin.set_yscale("log")
        twin.set_ylabel("bandwidth estimate\n(Mbit/s, black)", fontsize=8)
    bottom.set_yticks(range(len(splits)), splits)
    bottom.set_ylim(-0.5, max(len(splits) - 0.5, 0.5))
    bottom.set_ylabel("adaptive split")
    bottom.set_xlabel("seconds since the trace started (red band: the edge runs locally)")
    if codecs:
        bottom.legend(loc="lower right", fontsize=8, ncol=len(codecs))
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
