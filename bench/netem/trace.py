"""Fixed split, JPEG upload, local only and adaptive through a bandwidth trace on the emulated link.

The link of run.py (two network namespaces, tbf both ways; ``link.py``) changes its bandwidth
every ``--phase-seconds`` along ``--trace`` (Mbit/s; 0 = down: every packet dropped both ways,
the server out of reach). Each strategy runs through the whole trace with the same camera
stream (pre-encoded JPEG frames at ``--rate``) and the same model:

  split     robot: camera -> edge (fixed split and codec, never local)  ==>  server: server
  jpeg      robot: camera  ==>  server: edge (f16) -> server  (JPEG upload, REMOTE-ONLY)
  local     robot: camera -> edge, no server: the edge runs the whole network itself
  adaptive  robot: camera -> edge (adaptive: split_codec, local fallback)  ==>  server: server

The probe sits on the ROBOT, subscribed to detections alone: an output counts when it is back
where the robot would use it (so only detections cross back over the link). Per phase and
strategy: delivered fps, latency (camera stamp -> arrival, one host, one clock) p50/p99, blind
time (longest stretch without an arrival, from the phase start; trace_metrics.py), mAP@0.5 of
the delivered detections against their frames' ground truth, and for the edge its link mode and
split/codec from /diagnostics. Writes results.json, results.md and results.png to ``--out``.
Needs root, iproute2 and nftables.

    python bench/netem/trace.py                       # the default trace, ~8 min
    python bench/netem/trace.py --trace 50,0,50 --phase-seconds 5 --strategies adaptive
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from frames import BenchFrames  # noqa: E402
from harness import (  # noqa: E402
    cached_frames,
    camera_command,
    child_env,
    machine,
    model_label,
    probe_command,
    start_sides,
    today,
    wait_ready,
)
from link import EmulatedLink, LinkError, LinkShape  # noqa: E402
from trace_metrics import (  # noqa: E402
    NS,
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

from mtl_split_tools.node_processes import node_command, stop_all  # noqa: E402

STRATEGIES = ("split", "jpeg", "local", "adaptive")
REMOTE_FIXED = ("split", "jpeg")  # fixed strategies that need the server
DEFAULT_TRACE = "50,10,2,0.5,0,20"
JPEG_PIPELINE_CODEC = "f16-zstd/1"  # colocated edge + server: near-lossless (as run.py)
LOCAL_FALLBACK_AFTER = 0.1  # local only: no server answers, so LOCAL after the first frame


class Interrupted(Exception):
    """SIGINT/SIGTERM: unwind (namespaces and processes go), then exit 0 quietly."""


def link_shape(bandwidth_mbit: float, queue_ms: float) -> LinkShape:
    return (LinkShape(down=True, queue_ms=queue_ms) if bandwidth_mbit == 0
            else LinkShape(bandwidth_mbit, queue_ms=queue_ms))


def strategy_processes(strategy: str, frames: Path, args, probe_out: Path, ready: Path,
                       stamps_out: Path) -> dict[str, list]:
    """(name, argv) of the processes on each side of the link for ``strategy``."""
    common = {"model": args.model, "input_transport": "compressed",
              "diagnostics_period": args.diagnostics_period}
    probe = ("probe", probe_command(probe_out, ready, detections_only=True))
    server = ("server", node_command("server_node", {"model": args.model,
                                                     "input_qos": args.link_qos}))

    def camera(qos: str):
        return ("camera", camera_command(frames, args.rate, qos, stamps_out))

    def robot_edge(**params):
        return ("edge", node_command("edge_node", {**common, "input_qos": "reliable",
                                                   "output_qos": args.link_qos, **params}))
    if strategy == "split":  # the split path alone, never the local fallback
        return {"robot": [camera("reliable"), robot_edge(fallback_after=0.0), probe],
                "server": [server]}
    if strategy == "jpeg":
        edge = ("edge", node_command("edge_node", {
            **common, "input_qos": args.link_qos, "output_qos": "reliable",
            "codec": JPEG_PIPELINE_CODEC, "fallback_after": 0.0}))
        server_local = ("server", node_command("server_node", {"model": args.model,
                                                               "input_qos": "reliable"}))
        return {"robot": [camera(args.link_qos), probe], "server": [edge, server_local]}
    if strategy == "local":  # no server; no probes either (they would only lose frames)
        return {"robot": [camera("reliable"), robot_edge(fallback_after=LOCAL_FALLBACK_AFTER,
                                                         probe_period=3600.0), probe],
                "server": []}
    if strategy == "adaptive":
        budget = ({"latency_budget_ms": args.latency_budget_ms}
                  if args.latency_budget_ms is not None else {})
        floor = ({"accuracy_file": args.accuracy_file,
                  "max_accuracy_drop": args.max_accuracy_drop} if args.accuracy_file else {})
        return {"robot": [camera("reliable"),
                          robot_edge(adaptive="split_codec", fallback_after=args.fallback_after,
                                     **budget, **floor), probe],
                "server": [server]}
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")


def run_strategy(link: EmulatedLink, strategy: str, frames: Path, trace: list[float], args,
                 run_dir: Path) -> dict:
    """Start ``strategy``'s processes, wait for its first output (the link at the trace's first
    bandwidth), warm up, play the trace; returns the raw records (times in ns)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    probe_out, ready, stamps = run_dir / "probe.json", run_dir / "ready", run_dir / "stamps.json"
    for f in (probe_out, ready, stamps):
        f.unlink(missing_ok=True)
    link.set_shape(link_shape(trace[0], args.queue_ms))
    sides = strategy_processes(strategy, frames, args, probe_out, ready, stamps)
    procs: list = []
    changes: list[tuple[int, float]] = []
    try:
        start_sides(link, sides, child_env(args.domain_id), run_dir, args.pin, procs)
        if not wait_ready(ready, procs, args.start_timeout, strategy, run_dir):
            print(f"  no output within {args.start_timeout:.0f} s; playing the trace anyway",
                  flush=True)
        time.sleep(args.warmup)
        t0 = time.time_ns()
        for i, bandwidth in enumerate(trace):
            # Deadline-based, so the time set_shape takes does not add up over the phases.
            time.sleep(max(0.0, (t0 + int(i * args.phase_seconds * NS) - time.time_ns()) / NS))
            changes.append((time.time_ns(), bandwidth))  # before: counts the change's own time
            link.set_shape(link_shape(bandwidth, args.queue_ms))
        time.sleep(max(0.0, (t0 + int(len(trace) * args.phase_seconds * NS)
                             - time.time_ns()) / NS))
        end = time.time_ns()
    finally:
        stop_all(procs)
    probe = json.loads(probe_out.read_text())
    return {"changes": changes, "end_ns": end, "probe": probe,
            "stamps": json.loads(stamps.read_text()) if stamps.exists() else []}


def summarize(strategy: str, raw: dict, frames: BenchFrames, config,
              bin_s: float = 1.0) -> dict:
    """Per-phase metrics of one strategy's run, its fps per ``bin_s`` and the edge's link
    state over time (seconds from the trace's start)."""
    phases = phases_from_changes(raw["changes"], raw["end_ns"])
    t0 = phases[0].start_ns
    arrivals = [tuple(a) for a in raw["probe"]["arrivals"]]
    detections = raw["probe"].get("detections", [])
    frame_of = {int(s): int(i) for s, i in raw["stamps"]}
    timeline = edge_timeline(raw["probe"].get("diagnostics_log", []))
    rows = []
    for phase in phases:
        row = phase_metrics(arrivals, phase)
        delivered = [(s, d) for (s, a), d in zip(arrivals, detections)
                     if phase.start_ns <= a < phase.end_ns]
        row["accuracy"] = detection_map50(delivered, frame_of, frames.truth, config)
        row["edge"] = phase_modes(timeline, phase)
        rows.append(row)
    whole = [(s, d) for (s, a), d in zip(arrivals, detections) if t0 <= a < raw["end_ns"]]
    return {
        "strategy": strategy, "phases": rows,
        "accuracy": detection_map50(whole, frame_of, frames.truth, config),
        "delivered": sum(1 for _, a in arrivals if t0 <= a < raw["end_ns"]),
        "fps_bins": fps_bins((a for _, a in arrivals), t0, raw["end_ns"], bin_s),
        "phase_starts_s": [round((p.start_ns - t0) / NS, 3) for p in phases],
        "edge_timeline": [{"t_s": round((e["t_ns"] - t0) / NS, 3), "link_mode": e["link_mode"],
                           "split": e["split"], "codec": e["codec"],
                           "estimate_mbps": e["estimate_mbps"]}
                          for e in timeline if t0 <= e["t_ns"] < raw["end_ns"]],
    }


def goals(runs: dict[str, dict], trace: list[float]) -> list[dict]:
    """The issue's goals per phase (only where adaptive ran; fixed strategies that ran)."""
    out = []
    for i, bandwidth in enumerate(trace):
        fps = {k: r["phases"][i]["delivered_fps"] for k, r in runs.items()}
        row = {"phase": i, "bandwidth_mbit": bandwidth, "fps": fps_goal(fps)}
        if bandwidth == 0:
            blind = {k: r["phases"][i]["blind_s"] for k, r in runs.items()}
            seconds = min(r["phases"][i]["seconds"] for r in runs.values())
            row["outage"] = outage_goal(blind, seconds, REMOTE_FIXED)
        out.append(row)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (not argparse's usage block)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv=None) -> argparse.Namespace:
    ap = _Parser(prog="trace.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/netem_trace"))
    ap.add_argument("--trace", default=DEFAULT_TRACE,
                    help="comma-separated Mbit/s per phase; 0 = link down")
    ap.add_argument("--phase-seconds", type=float, default=10.0)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=960)
    ap.add_argument("--noise", type=float, default=0.0,
                    help="sensor noise std (8-bit levels) before JPEG; 0 = clean renders")
    ap.add_argument("--frames", type=int, default=48, help="distinct frames (looped)")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds after the first output before the trace starts")
    ap.add_argument("--start-timeout", type=float, default=90.0,
                    help="seconds to wait for the first output (model loading)")
    ap.add_argument("--queue-ms", type=float, default=100.0, help="tbf queue (ms of traffic)")
    ap.add_argument("--link-qos", default="reliable", choices=("reliable", "best_effort"),
                    help="QoS of the topic that crosses the link")
    ap.add_argument("--model", default="every_split",
                    help="the same model for every strategy (default: one with s8/s16/s32)")
    ap.add_argument("--fallback-after", type=float, default=0.5,
                    help="adaptive: seconds without feedback before running locally")
    ap.add_argument("--latency-budget-ms", type=float, default=None,
                    help="adaptive: the edge's latency budget (default: the edge's own)")
    ap.add_argument("--accuracy-file", default="",
                    help="adaptive: the edge's accuracy_file (e.g. every_split_test_eval.json)")
    ap.add_argument("--max-accuracy-drop", type=float, default=1.0,
                    help="adaptive: the edge's accuracy floor (with --accuracy-file)")
    ap.add_argument("--diagnostics-period", type=float, default=0.25,
                    help="seconds between the edge's /diagnostics (the link-mode timeline)")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--no-plot", dest="plot", action="store_false")
    ap.add_argument("--domain-id", type=int, default=77)
    args = ap.parse_args(argv)
    try:
        args.trace_mbit = parse_trace(args.trace)
    except ValueError as err:
        ap.error(f"--trace: {err}")
    args.strategy_list = [s for s in args.strategies.split(",") if s]
    unknown = [s for s in args.strategy_list if s not in STRATEGIES]
    if unknown or not args.strategy_list:
        ap.error(f"--strategies: unknown {', '.join(unknown) or '(none given)'}; expected "
                 f"some of {', '.join(STRATEGIES)}")
    for name in ("phase_seconds", "rate", "warmup", "start_timeout", "queue_ms",
                 "diagnostics_period"):
        value = getattr(args, name)
        if not (value > 0 or (name == "warmup" and value == 0)) or value != value:
            ap.error(f"--{name.replace('_', '-')}: must be > 0, got {value:g}")
    for name in ("width", "height", "frames"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: must be >= 1")
    if not 0 <= args.fallback_after <= 3600:
        ap.error(f"--fallback-after: must be in [0, 3600] s, got {args.fallback_after:g}")
    if args.latency_budget_ms is not None and not 1 <= args.latency_budget_ms <= 60000:
        ap.error(f"--latency-budget-ms: must be in [1, 60000], got {args.latency_budget_ms:g}")
    if not 0 <= args.max_accuracy_drop <= 1:
        ap.error(f"--max-accuracy-drop: must be in [0, 1], got {args.max_accuracy_drop:g}")
    if not 0 <= args.domain_id <= 232:
        ap.error(f"--domain-id: must be in [0, 232], got {args.domain_id}")
    try:
        args.model_label = model_label(args.model)
    except Exception as err:  # noqa: BLE001 - any unreadable model: one line
        ap.error(f"--model: {err}")
    return args


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text)
    tmp.replace(path)  # never half-written


def main(argv=None) -> int:
    try:
        return run_trace(parse_args(argv), argv)
    except LinkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted:
        print("interrupted: link and processes removed, no results written", file=sys.stderr)
        return 0


def run_trace(args: argparse.Namespace, argv) -> int:
    from trace_report import markdown, plot

    from mtl_split_core.model.card import config_from_card, read_card
    from mtl_split_core.runtime.model_files import resolve_model_path

    config = config_from_card(read_card(resolve_model_path(args.model)))
    args.out.mkdir(parents=True, exist_ok=True)
    frames_path = cached_frames(args.out, args.frames, args.width, args.height, args.noise)
    frames = BenchFrames(frames_path)
    results = {"meta": {
        "command": " ".join(["python bench/netem/trace.py", *(argv or sys.argv[1:])]),
        "machine": machine(), "date": today(), "model": args.model_label,
        "camera": f"{frames.width}x{frames.height} JPEG q90 at {args.rate:g} fps, "
                  f"{frames.jpeg_bytes_mean() / 1e3:.1f} KB/frame (sensor noise "
                  f"{frames.noise:g})",
        "trace_mbit": args.trace_mbit, "phase_seconds": args.phase_seconds,
        "queue_ms": args.queue_ms, "link_qos": args.link_qos, "pinned": args.pin,
        "fallback_after": args.fallback_after, "latency_budget_ms": args.latency_budget_ms,
        "accuracy_file": args.accuracy_file, "max_accuracy_drop": args.max_accuracy_drop,
        "diagnostics_period": args.diagnostics_period,
        "loadavg_before": [round(v, 2) for v in os.getloadavg()]}, "runs": {}}
    with EmulatedLink() as link:
        for strategy in args.strategy_list:
            print(f"{strategy}: trace {args.trace} Mbit/s, {args.phase_seconds:g} s each",
                  flush=True)
            raw = run_strategy(link, strategy, frames_path, args.trace_mbit, args,
                               args.out / "logs" / strategy)
            run = summarize(strategy, raw, frames, config)
            run["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
            results["runs"][strategy] = run
            print("  " + ", ".join(f"{p['bandwidth_mbit']:g}: {p['delivered_fps']:.1f} fps"
                                   f" blind {p['blind_s']:.1f} s" for p in run["phases"]),
                  flush=True)
    results["goals"] = goals(results["runs"], args.trace_mbit)
    results["meta"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    _write(args.out / "results.json", json.dumps(results, indent=1))
    _write(args.out / "results.md", markdown(results))
    if args.plot:
        plot(results, args.out / "results.png")
    print("\n" + markdown(results))
    return 0


def _interrupt(signum, frame):
    raise Interrupted()


if __name__ == "__main__":
    # SIGTERM (a CI timeout) and Ctrl-C unwind through the `with`: the namespaces go.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    sys.exit(main())
