"""Soak test: the live pipeline under a steady load plus a hostile sender, for a long time.

    python bench/soak/run.py --minutes 30            # the full run (results in
                                                     # bench/results/soak/)
    python bench/soak/run.py --minutes 3 --out DIR   # a short smoke run

What runs (real node processes over DDS, on CPU, the packaged default model):
- sim_camera_node at ``--rate`` Hz (10) -> edge_node -> server_node, as in `make demo`;
- in this process, a hostile sender publishing ``--hostile-rate`` (10) SplitFeatures a second
  on the edge's output topic: copies of a captured valid message with one field broken
  (out-of-range transform, wrong fingerprint, bad shape, garbage payload, unknown codec,
  split index out of range), each with a stamp far in the past (< 1000 s) to tell them apart;
- a monitor (this process) that records camera_info stamps (frames sent), valid features
  (frames the edge processed), detections (arrival time vs stamp = end-to-end latency), the
  edge's and server's /diagnostics, and the RSS of both node processes every few seconds.

The clock starts when the first detection arrives (model loading is not soak time). At the
end the camera stops first, the pipeline drains, then edge and server get SIGINT.

Writes ``results.json`` and ``results.md`` to ``--out``: command, machine, date, model
fingerprint; RSS first/last/max and growth per node; latency p50/p99 per ``--slice-minutes``
slice; frames sent / processed by the edge / with detections; valid frames lost (features
the edge published that got no detections); edge and server drops and rejections by reason;
outputs published for hostile messages (must be 0). Exit status 0 when the run completed
(the goals are reported, not enforced: the numbers are for the reader).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo
from vision_msgs.msg import Detection2DArray

from mtl_split.msg import SplitFeatures
from mtl_split_ros.qos import qos_from_name
from mtl_split_ros.shutdown import StopSignals, init_without_signal_handlers, shutdown_quietly
from mtl_split_tools.node_processes import node_command, start, stop_all

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "soak"
HOSTILE_MAX_SEC = 1000     # hostile stamps are below this; camera stamps are wall-clock time
RSS_PERIOD_S = 5.0
DRAIN_S = 8.0              # after the camera stops: time for the last frames to come out
STARTUP_TIMEOUT_S = 300.0


def _ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def hostile_variants(valid: SplitFeatures, rng: random.Random) -> list[tuple[str, object]]:
    """(kind, function valid -> hostile copy): each keeps the message well-formed (it
    serialises) but breaks one field's meaning."""
    def transform(m):
        m.transform = [1.0, 1.0, 1.0e6, 1.0e6]

    def fingerprint(m):
        m.model_fingerprint = "0" * len(m.model_fingerprint or "0")

    def shape(m):
        m.shape = [int(m.shape[0]) + 1, int(m.shape[1]), int(m.shape[2])]

    def payload(m):
        m.data = rng.randbytes(len(m.data))

    def codec(m):
        m.codec = "nope-zstd/9"

    def split(m):
        m.split_index = 200
    return [("transform", transform), ("fingerprint", fingerprint), ("shape", shape),
            ("payload", payload), ("codec", codec), ("split_index", split)]


class Monitor(Node):
    """Records what the pipeline does and sends the hostile messages."""

    def __init__(self, hostile_rate: float, seed: int = 0) -> None:
        super().__init__("mtl_split_soak_monitor")
        rel = qos_from_name("reliable", depth=50)
        self.sent: dict[int, float] = {}       # camera_info stamp -> arrival (wall clock, s)
        self.features: dict[int, float] = {}   # valid features (from the edge), likewise
        self.detections: dict[int, float] = {}  # stamp -> arrival (wall clock, s)
        self.hostile_outputs = 0
        self.hostile_sent: dict[str, int] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.valid: SplitFeatures | None = None
        self.rng = random.Random(seed)
        self.variants: list = []
        self.hostile_count = 0
        self.hostile_on = False
        self.create_subscription(CameraInfo, "camera_info",
                                 lambda m: self.sent.setdefault(_ns(m.header), time.time()),
                                 rel)
        self.create_subscription(SplitFeatures, "mtl_split/features", self._on_features, rel)
        self.create_subscription(Detection2DArray, "mtl_split/detections",
                                 self._on_detections, rel)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                 qos_profile_sensor_data)
        self.hostile_pub = self.create_publisher(SplitFeatures, "mtl_split/features", rel)
        self.create_timer(1.0 / hostile_rate, self._send_hostile)

    def _on_features(self, msg: SplitFeatures) -> None:
        if msg.header.stamp.sec < HOSTILE_MAX_SEC:
            return  # our own hostile message
        self.features.setdefault(_ns(msg.header), time.time())
        if self.valid is None:
            self.valid = copy.deepcopy(msg)
            self.variants = hostile_variants(self.valid, self.rng)

    def _on_detections(self, msg: Detection2DArray) -> None:
        if msg.header.stamp.sec < HOSTILE_MAX_SEC:
            self.hostile_outputs += 1
        else:
            self.detections.setdefault(_ns(msg.header), time.time())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def _send_hostile(self) -> None:
        if not self.hostile_on or self.valid is None:
            return
        kind, breaks = self.variants[self.hostile_count % len(self.variants)]
        msg = copy.deepcopy(self.valid)
        breaks(msg)
        self.hostile_count += 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1 + self.hostile_count // 1000, \
            (self.hostile_count % 1000) * 1000
        self.hostile_pub.publish(msg)
        self.hostile_sent[kind] = self.hostile_sent.get(kind, 0) + 1


def _pct(values, q):
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def _spin(node, seconds: float, stop: StopSignals, until=None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
        if until is not None and until():
            return True
    return False


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2 ** 30, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def _rss_summary(samples: list[tuple[float, int]]) -> dict:
    """First / last / max RSS (MB) and the growth from the first to the last minute."""
    if not samples:
        return {}
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples]) / 2 ** 20
    first = float(np.median(mb[t <= t[0] + 60]))
    last = float(np.median(mb[t >= t[-1] - 60]))
    return {"first_mb": round(first, 1), "last_mb": round(last, 1),
            "max_mb": round(float(mb.max()), 1), "growth_pct": round(100 * (last / first - 1), 2),
            "samples": len(samples)}


def run(args: argparse.Namespace) -> dict:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cpu = {"device": "cpu"}
    model = {"model": args.model} if args.model else {}
    procs: list = []
    with StopSignals() as stop:
        init_without_signal_handlers()
        mon = Monitor(args.hostile_rate)
        rss: dict[str, list[tuple[float, int]]] = {"edge": [], "server": []}
        load: list[tuple[float, float]] = []  # (soak s, 1-minute load average): the shared host
        try:
            # The split pipeline is what is soaked: no local fallback when the server is late.
            edge = start(node_command("edge_node", {**cpu, **model, "fallback_after": 0.0}),
                         logs / "edge.log")
            server = start(node_command("server_node", {**cpu, **model}), logs / "server.log")
            procs += [edge, server]
            camera = start(node_command("sim_camera_node", {
                "rate": args.rate, "publish_ground_truth": False, "min_subscribers": 1}),
                logs / "sim_camera.log")
            procs.append(camera)
            t_launch = time.monotonic()
            if not _spin(mon, STARTUP_TIMEOUT_S, stop, lambda: bool(mon.detections) or
                         any(p.poll() is not None for p in procs)):
                raise SystemExit(f"soak: no detections within {STARTUP_TIMEOUT_S:.0f} s; "
                                 f"see {logs}")
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"soak: a node exited during start-up; see {logs}")
            startup_s = time.monotonic() - t_launch
            t0_wall = time.time()
            first_frame = max(mon.detections)  # frames from here on are soak frames
            mon.hostile_on = True
            end = time.monotonic() + args.minutes * 60
            next_rss = 0.0
            while time.monotonic() < end and not stop.is_set():
                if time.monotonic() >= next_rss:
                    for name, proc in (("edge", edge), ("server", server)):
                        if proc.poll() is None:
                            rss[name].append((time.time() - t0_wall,
                                              psutil.Process(proc.pid).memory_info().rss))
                    load.append((time.time() - t0_wall, os.getloadavg()[0]))
                    next_rss = time.monotonic() + RSS_PERIOD_S
                _spin(mon, 0.5, stop)
                if any(p.poll() is not None for p in procs):
                    break
            alive = {name: p.poll() is None for name, p in
                     (("edge", edge), ("server", server), ("sim_camera", camera))}
            soak_s = time.time() - t0_wall
            stop_all([camera])
            mon.hostile_on = False
            _spin(mon, DRAIN_S, stop)
        finally:
            stop_all(procs)
            mon.destroy_node()
            shutdown_quietly()
        interrupted = stop.is_set()
    return _results(args, mon, rss, load, alive, startup_s, soak_s, t0_wall, first_frame,
                    interrupted)


def _results(args, mon: Monitor, rss, load, alive, startup_s, soak_s, t0_wall, first_frame,
             interrupted) -> dict:
    sent = {s for s in mon.sent if s > first_frame}
    features = {s for s in mon.features if s > first_frame}

    def in_slice(t: float, i: int) -> bool:
        return i * slice_s <= t - t0_wall < (i + 1) * slice_s

    detected = {s: t for s, t in mon.detections.items() if s > first_frame}
    lost = sorted(features - set(detected))
    slice_s = args.slice_minutes * 60
    slices = []
    for i in range(max(1, int(np.ceil(soak_s / slice_s)))):
        lat = [1e3 * (t - s / 1e9) for s, t in detected.items() if in_slice(t, i)]
        loads = [v for t, v in load if i * slice_s <= t < (i + 1) * slice_s]
        slices.append({"from_min": round(i * slice_s / 60, 2),
                       "to_min": round(min((i + 1) * slice_s, soak_s) / 60, 2),
                       "camera_frames": sum(in_slice(t, i) for s, t in mon.sent.items()
                                            if s > first_frame),
                       "edge_frames": sum(in_slice(t, i) for s, t in mon.features.items()
                                          if s > first_frame),
                       "frames": len(lat), "latency_ms_p50": _pct(lat, 50),
                       "latency_ms_p99": _pct(lat, 99),
                       "load_1min": round(float(np.mean(loads)), 2) if loads else None})
    valid = mon.valid
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date_utc": datetime.fromtimestamp(t0_wall, UTC).isoformat(timespec="seconds"),
        "machine": _machine(), "device": "cpu",
        "model": {"id": valid.model_id if valid else None,
                  "fingerprint": valid.model_fingerprint if valid else None,
                  "codec": valid.codec if valid else None},
        "minutes_requested": args.minutes, "soak_seconds": round(soak_s, 1),
        "interrupted": interrupted, "startup_seconds": round(startup_s, 1),
        "camera_rate_hz": args.rate, "hostile_rate_hz": args.hostile_rate,
        "processes_alive_at_end": alive,
        "frames": {"sent": len(sent), "processed_by_edge": len(features),
                   "with_detections": len(set(features) & set(detected)),
                   "valid_lost": len(lost), "valid_lost_stamps_ns": lost[:50]},
        "hostile": {"sent": mon.hostile_count, "by_kind": mon.hostile_sent,
                    "outputs_published_for_hostile": mon.hostile_outputs},
        "latency_slices": slices, "rss": {k: _rss_summary(v) for k, v in rss.items()},
        "diagnostics_at_end": mon.diagnostics,
    }


def _markdown(r: dict) -> str:
    f, h = r["frames"], r["hostile"]
    lines = [
        f"# Soak run: {r['soak_seconds'] / 60:.1f} minutes",
        "",
        f"- command: `{r['command']}`",
        f"- date (UTC): {r['date_utc']}; machine: {r['machine']['cpu']}, "
        f"{r['machine']['cores']} cores, {r['machine']['memory_gb']} GB (host "
        f"{r['machine']['host']}); device: {r['device']}",
        f"- model: {r['model']['id']} (fingerprint {r['model']['fingerprint']}, codec "
        f"{r['model']['codec']})",
        f"- sim camera {r['camera_rate_hz']} Hz -> edge -> server; hostile sender "
        f"{r['hostile_rate_hz']} msg/s on the features topic; start-up "
        f"{r['startup_seconds']} s (not soak time); interrupted: {r['interrupted']}",
        f"- processes alive at the end: {r['processes_alive_at_end']}",
        "",
        "| frames sent | processed by edge | with detections | valid lost | hostile sent | "
        "outputs for hostile |",
        "|---|---|---|---|---|---|",
        f"| {f['sent']} | {f['processed_by_edge']} | {f['with_detections']} | "
        f"{f['valid_lost']} | {h['sent']} | {h['outputs_published_for_hostile']} |",
        "",
        "| slice (min) | camera frames | edge frames | outputs | latency p50 ms | "
        "latency p99 ms | host load (1 min) |",
        "|---|---|---|---|---|---|---|",
        *[f"| {s['from_min']}-{s['to_min']} | {s.get('camera_frames')} | "
          f"{s.get('edge_frames')} | {s['frames']} | {s['latency_ms_p50']} | "
          f"{s['latency_ms_p99']} | {s.get('load_1min')} |" for s in r["latency_slices"]],
        "",
        "| node | RSS first MB | last MB | max MB | growth % |",
        "|---|---|---|---|---|",
        *[f"| {k} | {v.get('first_mb')} | {v.get('last_mb')} | {v.get('max_mb')} | "
          f"{v.get('growth_pct')} |" for k, v in r["rss"].items()],
        "",
        "Diagnostics at the end (drops, rejections by reason):",
        "",
        *[f"- {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()
                                    if k.startswith(("drops", "rejected", "frames", "lost")))
          for name, values in sorted(r["diagnostics_at_end"].items())],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="soak time (after start-up)")
    ap.add_argument("--rate", type=float, default=10.0, help="sim camera frames per second")
    ap.add_argument("--hostile-rate", type=float, default=10.0, help="hostile messages/s")
    ap.add_argument("--slice-minutes", type=float, default=5.0, help="latency slice length")
    ap.add_argument("--model", default="", help="model (default: the packaged one)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="folder for results.json/.md")
    ap.add_argument("--label", default="", help="a note for results.md (e.g. 'smoke run')")
    args = ap.parse_args(argv)
    for name in ("minutes", "rate", "hostile_rate", "slice_minutes"):
        if not 0 < getattr(args, name) < float("inf"):
            ap.error(f"--{name.replace('_', '-')} must be > 0")
    results = run(args)
    results["label"] = args.label
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    md = _markdown(results)
    if args.label:
        md = md.replace("\n", f"\n\n**{args.label}**\n", 1)
    (out / "results.md").write_text(md)
    f = results["frames"]
    print(f"soak {results['soak_seconds']:.0f} s: {f['with_detections']}/"
          f"{f['processed_by_edge']} edge frames with detections, {f['valid_lost']} lost, "
          f"{results['hostile']['sent']} hostile sent; wrote {out}/results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
