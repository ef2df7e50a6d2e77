"""One server, N simulated robots: delivered fps, latency and CPU per process over real DDS.

1. Record: the edge (``EdgeRunner``) runs on the bench frames (bench/frames.npz, 640x480 sim
   renders) once; its SplitFeatures messages (with a camera_info) are the robots' streams.
2. For each N: one server node process (``device``, ``max_batch``, ``batch_wait_ms``) with N
   feature topics (``--devices cuda:0,cuda:1``: one server per device, robots dealt in turn),
   and the robots in replay processes (``--per-process`` robots each, bench/fleet/replay.py)
   publishing at ``--rate`` fps each, robot i in namespace ``ri``.
   After every robot got outputs and ``--warmup`` seconds, measure ``--seconds``: delivered fps
   per robot (detections messages; segmentation and depth are subscribed too), end-to-end
   latency (publish stamp -> detections arrival, one host, one clock), the server's receive ->
   publish p50/p99 (its /diagnostics, last 300 frames per robot), CPU% per process and, on
   CUDA with nvidia-smi, GPU utilisation.
Writes ``results.json``, ``results.md`` and ``results.png`` to ``--out`` (logs: ``--out``/logs/).

    python bench/fleet/run.py --robots 1,2,4,8 --extend          # this CPU
    python bench/fleet/run.py --device cuda --precision fp16 --robots 1,4,8,16,32
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HOLD_FPS = 10.0  # "holds" = every robot gets at least this many outputs per second


def record_streams(path: Path, frames: Path, model: str, device: str, count: int,
                   codec: str = "") -> dict:
    """Run the edge on the bench frames; save the SplitFeatures messages as CDR bytes.
    ``codec``: the robots' codec ('' = the model's default)."""
    import torch
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CameraInfo

    from mtl_split_core.plan.profile import load_jpeg_frames
    from mtl_split_core.runtime.edge import EdgeRunner
    from mtl_split_ros.features_msg import packet_to_msg

    torch.set_num_threads(2)
    edge = EdgeRunner.from_path(model or None, device=device, codec=codec or None)
    rgbs = load_jpeg_frames(frames)[:count]
    h, w = rgbs[0].shape[:2]
    fy = (h / 2) / math.tan(math.radians(60.0) / 2)  # the sim camera: 60 degrees vertical
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob",
                      k=[fy, 0.0, w / 2, 0.0, fy, h / 2, 0.0, 0.0, 1.0])
    blobs, edge_ms = [], []
    for rgb in rgbs:
        packet = edge(rgb)
        edge_ms.append(packet.edge_ms)
        blobs.append(np.frombuffer(serialize_message(packet_to_msg(packet, camera_info=info)),
                                   np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, cdr=np.concatenate(blobs), offsets=np.cumsum([0] + [len(b) for b in blobs]))
    return {"frames": len(blobs), "source": f"{w}x{h}", "split": edge.split,
            "codec": edge.codec, "bytes_mean": float(np.mean([len(b) for b in blobs])),
            "edge_device": str(edge.device), "edge_ms_p50": float(np.median(edge_ms))}


def measure_window(procs: dict, gpu: GpuSampler, warmup: float, seconds: float,
                   profile: Callable[[float], list[subprocess.Popen]] | None = None,
                   main_threads: dict[str, float] | None = None
                   ) -> tuple[int, int, dict[str, float], dict | None]:
    """After ``warmup`` s, a window of ``seconds`` s: (start ns, end ns, CPU % per process, GPU
    utilisation per GPU or None). ``profile(seconds)`` starts profilers for the window;
    ``main_threads`` gets the CPU % of each server's main thread (its executor: receiving)."""
    time.sleep(warmup)
    gpu.start()
    profilers = profile(seconds) if profile else []
    t0, c0 = time.time_ns(), _cpu_seconds(procs)
    time.sleep(seconds)
    t1, c1 = time.time_ns(), _cpu_seconds(procs)
    for profiler in profilers:
        profiler.wait(timeout=60)
    span = (t1 - t0) / 1e9
    pct = {k: round(100 * (c1[k] - c0[k]) / span, 1) for k in c0}
    if main_threads is not None:
        main_threads.update({k.split(":", 1)[1]: v for k, v in pct.items()
                             if k.startswith("main_thread:")})
    return t0, t1, {k: v for k, v in pct.items() if k in procs}, gpu.stop()


def _cpu_seconds(procs: dict) -> dict[str, float]:
    """CPU seconds so far of each process and of each server's main thread (/proc)."""
    def cpu(path: str) -> float:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    out = {k: cpu(f"/proc/{p.pid}/stat") for k, p in procs.items()}
    out.update({f"main_thread:{k}": cpu(f"/proc/{p.pid}/task/{p.pid}/stat")
                for k, p in procs.items() if k.startswith("server")})
    return out


def py_spy_profilers(py_spy: str, servers: dict[str, subprocess.Popen], run_dir: Path
                     ) -> Callable[[float], list[subprocess.Popen]]:
    """py-spy on every server process over the window, without pausing it: all threads'
    stacks, and the stacks of the thread holding the GIL (raw collapsed stacks, for
    flame graphs or grep), to ``run_dir``/pyspy_<server>_{threads,gil}.txt."""
    def start(seconds: float) -> list[subprocess.Popen]:
        return [subprocess.Popen(
            [py_spy, "record", "--pid", str(proc.pid), "--duration", str(max(1, int(seconds))),
             "--rate", "200", "--nonblocking", "--format", "raw", *extra,
             "--output", str(run_dir / f"pyspy_{name}_{kind}.txt")],
            stdout=subprocess.DEVNULL, stderr=open(run_dir / f"pyspy_{name}_{kind}.log", "w"))
            for name, proc in servers.items()
            for kind, extra in (("threads", ["--threads"]), ("gil", ["--gil", "--threads"]))]
    return start


class GpuSampler:
    """nvidia-smi utilisation samples every 200 ms while running (None without nvidia-smi)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=index,utilization.gpu", "--format=csv,noheader,"
                 "nounits", "-lms", "200"], stdout=open(self.log, "w"),
                stderr=subprocess.DEVNULL)

    def stop(self) -> dict | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        self.proc.wait(10)
        per_gpu: dict[str, list[float]] = {}
        for line in self.log.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[1].isdigit():
                per_gpu.setdefault(parts[0], []).append(float(parts[1]))
        return {gpu: round(float(np.mean(v)), 1) for gpu, v in per_gpu.items() if v}


def measure(n: int, streams: Path, args, run_dir: Path, env: dict) -> dict:
    from mtl_split_tools.node_processes import node_command, start, stop_all

    run_dir.mkdir(parents=True, exist_ok=True)
    robots = [f"r{i + 1}" for i in range(n)]
    server_params = {"precision": args.precision, "max_batch": args.max_batch,
                     "batch_wait_ms": args.batch_wait_ms, "diagnostics_period": 1.0,
                     # Only the three maps the robots subscribe: no optional outputs.
                     "publish_detections_markers": False, "publish_points": False,
                     "publish_annotated": False, "publish_segmentation_color": False}
    if args.model:
        server_params["model"] = args.model
    server_params.update(args.server_param)
    groups = [robots[i:i + args.per_process] for i in range(0, n, args.per_process)]
    procs: dict[str, subprocess.Popen] = {}
    outs, readies = [], []
    gpu = GpuSampler(run_dir / "gpu.csv")
    try:
        # One server per device, robots dealt to them in turn (as launch/fleet.launch.py).
        for i, device in enumerate(args.devices):
            mine = robots[i::len(args.devices)]
            if not mine:
                continue
            topics = "[" + ",".join(f"'/{r}/mtl_split/features'" for r in mine) + "]"
            params = {**server_params, "feature_topics": topics, "device": device}
            name = "server" if len(args.devices) == 1 else f"server_{i}"
            ros_args = [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]
            if len(args.devices) > 1:
                ros_args += ["-r", f"__node:=mtl_split_{name}"]
            procs[name] = start(node_command("server_node", ros_args), run_dir / f"{name}.log",
                                env)
        for k, group in enumerate(groups):
            out, ready = run_dir / f"robots_{k}.json", run_dir / f"ready_{k}"
            for f in (out, ready):
                f.unlink(missing_ok=True)
            argv = [sys.executable, str(HERE / "replay.py"), str(streams), "--robots",
                    ",".join(group), "--first", str(k * args.per_process), "--rate",
                    str(args.rate), "--out", str(out), "--ready", str(ready)]
            procs[f"robots_{k}"] = start(argv + (["--diagnostics"] if k == 0 else []),
                                         run_dir / f"robots_{k}.log", env)
            outs.append(out)
            readies.append(ready)
        deadline = time.time() + args.start_timeout
        while not all(r.exists() for r in readies) and time.time() < deadline:
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"N={n}: {', '.join(dead)} exited; logs in {run_dir}")
            time.sleep(0.2)
        started = all(r.exists() for r in readies)
        if not started:  # too loaded for every robot to be served: a result, not an error
            print(f"  not every robot got outputs within {args.start_timeout:.0f} s",
                  flush=True)
        servers = {k: p for k, p in procs.items() if k.startswith("server")}
        profile = py_spy_profilers(args.py_spy, servers, run_dir) if args.py_spy else None
        main_threads: dict[str, float] = {}
        t0, t1, cpu_pct, gpu_util = measure_window(procs, gpu, args.warmup, args.seconds,
                                                   profile, main_threads)
    finally:
        stop_all(list(procs.values()), timeout=20.0)  # the replay processes write their JSON
    seconds = (t1 - t0) / 1e9
    data = [json.loads(o.read_text()) for o in outs]
    fps, latency, offered = {}, [], 0
    for d in data:
        for robot, r in d["robots"].items():
            offered += sum(t0 <= t < t1 for t in r.get("sent_ns", []))
            window = [(s, a) for s, a in r["arrivals"] if t0 <= a < t1]
            fps[robot] = len(window) / seconds
            latency += [(a - s) / 1e6 for s, a in window]
    diag = data[0]["diagnostics"]
    per_source = [v for k, v in diag.items() if k.endswith("mtl_split/features")]
    servers = [v for k, v in diag.items() if k.endswith(": server")]
    lat = np.array(latency)
    return {
        "robots": n, "offered_fps_per_robot": args.rate, "seconds": round(seconds, 2),
        "all_robots_served": started,
        "delivered_fps": {r: round(fps.get(r, 0.0), 2) for r in robots},
        "delivered_fps_min": round(min(fps.get(r, 0.0) for r in robots), 2),
        "delivered_fps_mean": round(float(np.mean([fps.get(r, 0.0) for r in robots])), 2),
        "delivered_fps_total": round(sum(fps.values()), 1),
        "offered_fps_total": round(offered / seconds, 1),  # frames the robots sent
        "e2e_ms_p50": _pct(lat, 50), "e2e_ms_p99": _pct(lat, 99),
        "server_ms_p50": _median(per_source, "receive_to_publish_ms_p50"),
        "server_ms_p99": _max(per_source, "receive_to_publish_ms_p99"),
        "batch_size_mean": _mean(servers, "batch_size_mean"),
        "drops": sum(_num(v.get("drops")) or 0 for v in per_source),
        "publish_drops": sum(_num(v.get("publish_drops")) or 0 for v in per_source),
        "lost_in_dds": sum(_num(v.get("lost_in_dds")) or 0 for v in per_source),
        "cpu_pct": cpu_pct,
        "main_thread_cpu_pct": main_threads,  # each server's executor: receiving
        "gpu_util_pct": gpu_util,
        "load_average_1min": round(os.getloadavg()[0], 2),  # the whole host, during the run
        "holds_10fps": started and min(fps.get(r, 0.0) for r in robots) >= HOLD_FPS,
    }


def _num(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values.size else None


def _median(statuses: list[dict], key: str) -> float | None:
    values = [x for x in (_num(s.get(key)) for s in statuses) if x is not None and x == x]
    return round(float(np.median(values)), 1) if values else None


def _mean(statuses: list[dict], key: str) -> float | None:
    values = [x for x in (_num(s.get(key)) for s in statuses) if x is not None and x == x]
    return round(float(np.mean(values)), 2) if values else None


def _max(statuses: list[dict], key: str) -> float | None:
    values = [x for x in (_num(s.get(key)) for s in statuses) if x is not None and x == x]
    return round(max(values), 1) if values else None


def model_label(model: str) -> str:
    from mtl_split_core.model.card import read_card
    from mtl_split_core.runtime.model_files import resolve_model_path
    card = read_card(resolve_model_path(model or None))
    return f"{card.get('name', '?')} ({card['fingerprint']})"


def markdown(results: dict) -> str:
    meta = results["meta"]
    rec = meta["recording"]
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; date {meta['date']}  ",
             f"Model: {meta['model']}; server device {','.join(meta['devices'])} (one server "
             f"process each), {meta['precision']}, "
             f"max_batch {meta['max_batch']}, batch_wait_ms {meta['batch_wait_ms']:g}  ",
             f"Streams: edge output of {rec['frames']} sim frames ({rec['source']}, split "
             f"{rec['split']}, {rec['codec']}, {rec['bytes_mean'] / 1e3:.1f} KB/message), "
             f"{meta['rate']:g} fps per robot, {meta['per_process']} robots per replay "
             "process  ",
             f"{meta['note']}",
             "",
             "| robots | delivered fps per robot (min / mean) | total fps | e2e p50 / p99 ms | "
             "server p50 / p99 ms | batch | drops | CPU % (server; robots) | GPU % | "
             f"host load | >= {HOLD_FPS:g} fps each |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|:---:|"]
    for r in results["runs"]:
        cpu = r["cpu_pct"]
        robots_cpu = ", ".join(f"{v:.0f}" for k, v in cpu.items() if k.startswith("robots"))
        server_cpu = ", ".join(f"{v:.0f}" for k, v in cpu.items() if k.startswith("server"))
        gpu = ", ".join(f"{v:.0f}" for v in (r["gpu_util_pct"] or {}).values()) or "-"
        lines.append(
            f"| {r['robots']} | {r['delivered_fps_min']:.1f} / {r['delivered_fps_mean']:.1f} | "
            f"{r['delivered_fps_total']:.0f} | {_fmt(r['e2e_ms_p50'])} / "
            f"{_fmt(r['e2e_ms_p99'])} | {_fmt(r['server_ms_p50'])} / "
            f"{_fmt(r['server_ms_p99'])} | {_fmt(r['batch_size_mean'], 1)} | "
            f"{r['drops']:.0f} | {server_cpu}; {robots_cpu} | {gpu} | "
            f"{r['load_average_1min']:.1f} | {'yes' if r['holds_10fps'] else 'no'} |")
    held = [r["robots"] for r in results["runs"] if r["holds_10fps"]]
    lines += ["", f"Largest N holding {HOLD_FPS:g} fps per robot: "
              f"{max(held) if held else 'none'}."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Delivered fps per robot and p99 latency against the number of robots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    n = [r["robots"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(n, [r["delivered_fps_min"] for r in runs], "o-", label="min over robots")
    a.plot(n, [r["delivered_fps_mean"] for r in runs], "s--", label="mean")
    a.axhline(HOLD_FPS, color="grey", lw=0.8, ls=":", label=f"{HOLD_FPS:g} fps")
    a.set(xlabel="robots", ylabel="delivered fps per robot", xscale="log", xticks=n,
          xticklabels=[str(v) for v in n], title=f"offered {results['meta']['rate']:g} fps each")
    a.legend()
    b.plot(n, [r["e2e_ms_p99"] or float("nan") for r in runs], "o-", label="end to end p99")
    b.plot(n, [r["server_ms_p99"] or float("nan") for r in runs], "s--",
           label="server receive->publish p99")
    b.set(xlabel="robots", ylabel="ms", xscale="log", xticks=n, xticklabels=[str(v) for v in n],
          title=f"server on {','.join(results['meta']['devices'])}")
    b.legend()
    for ax in (a, b):
        ax.minorticks_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet")
    ap.add_argument("--robots", default="1,2,4,8", help="comma-separated N")
    ap.add_argument("--extend", action="store_true",
                    help=f"after the list, double N while every robot holds {HOLD_FPS:g} fps")
    ap.add_argument("--max-robots", type=int, default=64)
    ap.add_argument("--rate", type=float, default=30.0, help="fps per robot")
    ap.add_argument("--per-process", type=int, default=4, help="robots per replay process")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--model", default="")
    ap.add_argument("--device", default="cpu", help="the server's device")
    ap.add_argument("--devices", default="",
                    help="comma-separated devices, one server process each, robots dealt to "
                         "them in turn (e.g. cuda:0,cuda:1); overrides --device")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=0.0)
    ap.add_argument("--edge-device", default="cpu", help="device that records the streams")
    ap.add_argument("--frames", type=Path, default=ROOT / "bench" / "frames.npz")
    ap.add_argument("--stream-frames", type=int, default=10)
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 76)))
    ap.add_argument("--py-spy", default="", metavar="PATH",
                    help="py-spy executable: profile the server(s) over each window")
    ap.add_argument("--server-param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a server parameter for every run (repeatable)")
    ap.add_argument("--codec", default="",
                    help="the robots' codec, e.g. q4-zstd/1 ('' = the model's default)")
    ap.add_argument("--note", default="", help="a line for the results (e.g. machine load)")
    args = ap.parse_args(argv)
    try:
        args.counts = [int(v) for v in args.robots.split(",") if v]
    except ValueError:
        ap.error(f"--robots {args.robots!r}: expected comma-separated integers")
    args.devices = [d for d in (args.devices or args.device).split(",") if d]
    pairs = [p.partition(":=") for p in args.server_param]
    if any(not name or not sep for name, sep, _ in pairs):
        ap.error("--server-param: expected NAME:=VALUE")
    args.server_param = {name: value for name, _, value in pairs}
    if not args.counts or min(args.counts) < 1 or args.per_process < 1 or args.rate <= 0:
        ap.error("--robots, --per-process and --rate must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    streams = logs / "streams.npz"
    print(f"recording edge output of {args.frames} on {args.edge_device} ...", flush=True)
    recording = record_streams(streams, args.frames, args.model, args.edge_device,
                               args.stream_frames, args.codec)
    env = {**os.environ, "ROS_DOMAIN_ID": str(args.domain_id), "PYTHONUNBUFFERED": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    results = {"meta": {
        "command": " ".join(["python bench/fleet/run.py", *(argv or sys.argv[1:])]),
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.machine()}, "
                   f"kernel {platform.release()}" + _gpu_name(),
        "date": datetime.date.today().isoformat(), "model": model_label(args.model),
        "devices": args.devices, "precision": args.precision, "max_batch": args.max_batch,
        "batch_wait_ms": args.batch_wait_ms, "rate": args.rate,
        "per_process": args.per_process, "recording": recording,
        "note": " ".join(filter(None, [
            args.note, "e2e = robot publish stamp -> detections arrival (the edge's own time "
            f"is not included: edge_ms_p50 {recording['edge_ms_p50']:.1f} ms on "
            f"{recording['edge_device']})."]))},
        "runs": []}
    counts = list(args.counts)
    i = 0
    while i < len(counts):
        n = counts[i]
        print(f"N={n} ...", flush=True)
        r = measure(n, streams, args, logs / f"n{n}", env)
        results["runs"].append(r)
        print(f"  fps per robot min {r['delivered_fps_min']:.1f} mean "
              f"{r['delivered_fps_mean']:.1f}; e2e p50 {r['e2e_ms_p50']} p99 {r['e2e_ms_p99']} "
              f"ms; server p99 {r['server_ms_p99']} ms; CPU {r['cpu_pct']}", flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        if i == len(counts) - 1 and args.extend and r["holds_10fps"] \
                and 2 * n <= args.max_robots:
            counts.append(2 * n)
        i += 1
    (args.out / "results.md").write_text(markdown(results))
    plot(results, args.out / "results.png")
    print("\n" + markdown(results))
    return 0


def _gpu_name() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return f"; GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    except ImportError:
        pass
    return ""


if __name__ == "__main__":
    # SIGTERM (a timeout) unwinds through the finally blocks: no node is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
