"""One robot end to end: camera replay -> edge node -> server node -> outputs, real nodes and DDS.

A camera process publishes the bench frames (bench/frames.npz, 640x480) as raw rgb8 ``image``
and ``camera_info`` at ``--rate`` fps, stamped with the wall clock; the edge node (CUDA graph
on CUDA) and the server node run on ``--device``; a probe subscribes detections, segmentation
and depth (as serialized bytes: the arrival without the probe's own deserialisation;
``--typed-probe`` deserialises as a Python subscriber would) and records, per detections
message, its stamp and arrival. After ``--warmup`` it
measures ``--seconds``: delivered fps and end-to-end latency (camera stamp -> detections
arrival, one host, one clock), plus the nodes' own /diagnostics timings. ``--no-server``: no
server node; the edge serves every frame itself (its local fallback path, which a robot without a
link takes): the local-inference baseline on the same frames. Writes
``pipeline.json`` and ``pipeline.md`` to ``--out``. ``--trace``: the nodes run under
``frame_trace.py``, and both files get the per-frame timeline of the critical path (each hop's
p50/p90/p99, camera stamp -> probe; ``latency_pairs.py`` compares two trees with it).

    python bench/fleet/pipeline.py --device cuda --precision fp16 --out $OUT/pipeline
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NS = "robot"


def camera(frames: Path, rate: float, trace: Path | None = None) -> int:
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    from mtl_split_core.plan.profile import load_jpeg_frames
    from mtl_split_ros.image_msg import fill_image
    from mtl_split_ros.node_main import run_node
    from mtl_split_ros.qos import qos_from_name

    rgbs = load_jpeg_frames(frames)
    h, w = rgbs[0].shape[:2]
    fy = (h / 2) / math.tan(math.radians(60.0) / 2)  # the sim camera: 60 degrees vertical
    images = [fill_image(Image(), rgb, "rgb8") for rgb in rgbs]

    class Camera(Node):
        def __init__(self) -> None:
            super().__init__("bench_camera", namespace=NS)
            qos = qos_from_name("reliable", depth=1)
            self.pub = self.create_publisher(Image, "image", qos)
            self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
            self.count = 0
            self.published: list[tuple[int, str, int]] = []  # --trace: (stamp, event, time)
            self.create_timer(1.0 / rate, self._tick)

        def _tick(self) -> None:
            image = images[self.count % len(images)]
            image.header.stamp = self.get_clock().now().to_msg()
            image.header.frame_id = "camera_optical_frame"
            self.info_pub.publish(CameraInfo(
                header=image.header, width=w, height=h, distortion_model="plumb_bob",
                k=[fy, 0.0, w / 2, 0.0, fy, h / 2, 0.0, 0.0, 1.0]))
            self.pub.publish(image)
            if trace is not None:
                self.published.append((_stamp_ns(image), "camera_published", time.time_ns()))
            self.count += 1

        def close(self) -> None:
            if trace is not None:
                trace.write_text(json.dumps(self.published))

    return run_node(Camera)


def probe(out: Path, ready: Path, typed: bool = False) -> int:
    """Records each output's (camera stamp, arrival). By default it subscribes to the outputs'
    serialized bytes and reads the stamp from them: the arrival is the message's, without the
    probe's own Python deserialisation (a Detection2DArray costs rclpy ~1 ms, a C++ subscriber
    far less); ``typed`` subscribes to the messages as a Python subscriber would."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from mtl_split_ros.node_main import run_node
    from mtl_split_ros.qos import qos_from_name

    stamp = _stamp_ns if typed else _cdr_stamp_ns

    class Probe(Node):
        def __init__(self) -> None:
            super().__init__("bench_probe", namespace=NS)
            qos = qos_from_name("reliable", depth=10)
            self.arrivals: list[tuple[int, int]] = []
            # The images' arrivals too: the server publishes each output once built, so
            # each has its own latency (detections, declared first, is the headline).
            self.image_arrivals: dict[str, list[tuple[int, int]]] = {}
            self.diagnostics: dict[str, dict] = {}
            self.create_subscription(Detection2DArray, "mtl_split/detections", self._on, qos,
                                     raw=not typed)
            for name in ("segmentation", "depth"):
                times = self.image_arrivals.setdefault(name, [])
                self.create_subscription(
                    Image, f"mtl_split/{name}",
                    lambda m, times=times: times.append((stamp(m), time.time_ns())), qos,
                    raw=not typed)
            self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag,
                                     qos_profile_sensor_data)

        def _on(self, msg) -> None:
            now = time.time_ns()
            self.arrivals.append((stamp(msg), now))
            if len(self.arrivals) == 1:
                ready.write_text(str(now))

        def _on_diag(self, msg: DiagnosticArray) -> None:
            for s in msg.status:
                self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}

        def close(self) -> None:
            out.write_text(json.dumps({"arrivals": self.arrivals,
                                       "image_arrivals": self.image_arrivals,
                                       "diagnostics": self.diagnostics}))

    return run_node(Probe)


def orchestrate(args) -> int:
    sys.path.insert(0, str(HERE))
    from run import GpuSampler, measure_window, model_label, py_spy_profilers

    from mtl_split_tools.node_processes import node_command, start, stop_all

    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    probe_out, ready = logs / "probe.json", logs / "ready"
    for f in (probe_out, ready):
        f.unlink(missing_ok=True)
    env = {**os.environ, "ROS_DOMAIN_ID": str(args.domain_id), "PYTHONUNBUFFERED": "1",
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if args.dds_profile:  # as the launch files run the nodes (LOCALHOST would add SHM back)
        env.update(FASTDDS_DEFAULT_PROFILES_FILE=str(args.dds_profile.resolve()),
                   ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
    common = {"device": args.device, "precision": args.precision,
              **({"model": args.model} if args.model else {}),
              **({"executor": args.executor} if args.executor else {})}
    me = [sys.executable, str(Path(__file__).resolve())]
    traces = {k: logs / f"trace_{k}.json" for k in ("server", "edge", "camera")}
    for f in traces.values():
        f.unlink(missing_ok=True)

    def node(name: str, ros_args: list[str]) -> list[str]:
        """The node's executable, or with --trace the same node under frame_trace.py."""
        if not args.trace:
            return node_command(f"{name}_node", ros_args)
        return [sys.executable, str(HERE / "frame_trace.py"), name, str(traces[name]),
                "--ros-args", *ros_args]

    procs = {} if args.no_server else {
        "server": start(node("server", [
            "-r", f"__ns:=/{NS}", *_params({**common, "publish_detections_markers": False,
                                            "publish_points": False,
                                            "publish_annotated": False,
                                            "publish_segmentation_color": False}),
            *_extra(args.server_param)]), logs / "server.log", env)}
    # With a server the edge never falls back (0); without one it serves every frame itself.
    fallback = 0.5 if args.no_server else 0.0
    procs.update({
        "edge": start(node("edge", ["-r", f"__ns:=/{NS}",
                                    *_params({**common, "fallback_after": fallback}),
                                    *_extra(args.edge_param)]),
                      logs / "edge.log", env),
        "probe": start(me + ["--role", "probe", "--probe-out", str(probe_out), "--ready",
                             str(ready)] + (["--typed-probe"] if args.typed_probe else []),
                       logs / "probe.log", env),
        "camera": start(me + ["--role", "camera", "--rate", str(args.rate), "--frames",
                              str(args.frames)]
                        + (["--trace-out", str(traces["camera"])] if args.trace else []),
                        logs / "camera.log", env),
    })
    gpu = GpuSampler(logs / "gpu.csv")
    try:
        deadline = time.time() + args.start_timeout
        while not ready.exists() and time.time() < deadline:
            dead = [k for k, p in procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited; logs in {logs}")
            time.sleep(0.2)
        if not ready.exists():
            raise RuntimeError(f"no outputs within {args.start_timeout:.0f} s; logs in {logs}")
        profile = (py_spy_profilers(args.py_spy, {k: procs[k] for k in ("server", "edge")
                                                  if k in procs},
                                    logs) if args.py_spy else None)
        t0, t1, cpu_pct, gpu_util = measure_window(procs, gpu, args.warmup, args.seconds,
                                                   profile)
    finally:
        stop_all(list(procs.values()), timeout=20.0)
    seconds = (t1 - t0) / 1e9
    data = json.loads(probe_out.read_text())
    lat = _latencies_ms(data["arrivals"], t0, t1)
    by_output = {name: _latencies_ms(times, t0, t1)
                 for name, times in {"detections": data["arrivals"],
                                     **data.get("image_arrivals", {})}.items()}
    diag = data["diagnostics"]
    edge = next((v for k, v in diag.items() if k.endswith(": edge")), {})
    server = next((v for k, v in diag.items() if k.endswith("mtl_split/features")), {})
    result = {
        "meta": {"command": " ".join(["python bench/fleet/pipeline.py", *sys.argv[1:]]),
                 "machine": f"{platform.node()}: {os.cpu_count()} CPUs",
                 "date": datetime.date.today().isoformat(), "model": model_label(args.model),
                 "device": args.device, "precision": args.precision,
                 "camera": f"640x480 rgb8 raw at {args.rate:g} fps (bench/frames.npz)",
                 "server": "none: the edge serves locally" if args.no_server else "server node",
                 "probe": "typed (rclpy deserialises)" if args.typed_probe
                 else "raw (stamp read from the bytes)"},
        "offered_fps": args.rate, "seconds": round(seconds, 2),
        "delivered_fps": round(len(lat) / seconds, 2),
        "e2e_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "e2e_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "e2e_ms_by_output": {name: {"p50": round(float(np.percentile(v, 50)), 2),
                                    "p99": round(float(np.percentile(v, 99)), 2)}
                             for name, v in by_output.items() if v.size},
        "edge_diagnostics": edge, "server_diagnostics": server,
        "cpu_pct": cpu_pct,
        "gpu_util_pct": gpu_util}
    if args.trace:
        result["trace"] = _trace(traces, data, t0, t1)
    (args.out / "pipeline.json").write_text(json.dumps(result, indent=2))
    m = result["meta"]
    md = (f"Command: `{m['command']}`  \nMachine: {m['machine']}; date {m['date']}  \n"
          f"Model: {m['model']}; edge and server on {m['device']} {m['precision']}; camera "
          f"{m['camera']}; probe {m['probe']}\n\n"
          "| delivered fps | e2e p50 / p99 ms | edge ms p50 | server ms p50 | "
          "CPU % | GPU % |\n|---:|---:|---:|---:|---|---:|\n"
          f"| {result['delivered_fps']:.1f} | {result['e2e_ms_p50']} / {result['e2e_ms_p99']} | "
          f"{edge.get('edge_ms_p50', '-')} | {server.get('receive_to_publish_ms_p50', '-')} | "
          + ", ".join(f"{k} {v:.0f}" for k, v in result["cpu_pct"].items())
          + f" | {', '.join(f'{v:.0f}' for v in (gpu_util or {}).values()) or '-'} |\n"
          + "\ne2e p50 / p99 ms per output (camera stamp -> arrival): "
          + ", ".join(f"{k} {v['p50']} / {v['p99']}"
                      for k, v in result["e2e_ms_by_output"].items()) + "\n")
    if args.trace:
        md += "\n" + _trace_markdown(result["trace"])
    (args.out / "pipeline.md").write_text(md)
    print(md)
    return 0


def _trace(traces: dict[str, Path], probe: dict, t0: int, t1: int) -> dict:
    """The per-hop timeline (frame_trace.py) of the frames whose detections arrived in [t0, t1)."""
    from frame_trace import timeline  # bench/fleet/frame_trace.py (HERE is on sys.path)

    events = [tuple(e) for f in traces.values() if f.exists()
              for e in json.loads(f.read_text())]
    missing = [k for k, f in traces.items() if not f.exists()]
    events += [(s, "probe:detections", a) for s, a in probe["arrivals"]]
    for name, times in probe.get("image_arrivals", {}).items():
        events += [(s, f"probe:{name}", a) for s, a in times]
    return {**timeline(events, (t0, t1)), "missing": missing}


def _trace_markdown(trace: dict) -> str:
    rows = ["| hop (ends at event) | p50 ms | p90 ms | p99 ms | event p50 ms after stamp |",
            "|---|---:|---:|---:|---:|"]
    for h in trace["hops"]:
        rows.append(f"| {h['hop']} ({h['event']}) | {h['p50']:.3f} | {h['p90']:.3f} | "
                    f"{h['p99']:.3f} | {trace['since_stamp_p50'][h['event']]:.3f} |")
    missing = f"; no trace from {', '.join(trace['missing'])}" if trace["missing"] else ""
    return (f"Per-frame timeline (bench/fleet/frame_trace.py), {trace['frames']} frames"
            f"{missing}:\n\n"
            + "\n".join(rows) + "\n")


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _cdr_stamp_ns(data: bytes) -> int:
    """The header stamp of a serialized message that starts with a std_msgs/Header (little-
    endian CDR: 4 bytes of encapsulation, then int32 sec, uint32 nanosec)."""
    if len(data) < 12 or data[:2] != b"\x00\x01":
        raise ValueError("not a little-endian CDR message")
    sec, nanosec = struct.unpack_from("<iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def _latencies_ms(arrivals, t0: int, t1: int) -> np.ndarray:
    """Camera stamp -> arrival (ms) of the messages that arrived within [t0, t1)."""
    return np.array([(a - s) / 1e6 for s, a in arrivals if t0 <= a < t1])


def _params(params: dict) -> list[str]:
    return [a for k, v in params.items() for a in ("-p", f"{k}:={v}")]


def _extra(assignments: list[str]) -> list[str]:
    """``--edge-param`` / ``--server-param`` values (NAME:=VALUE), after the defaults."""
    return [a for kv in assignments for a in ("-p", kv)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--role", choices=("run", "camera", "probe"), default="run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fleet" /
                    "pipeline")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--model", default="")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--frames", type=Path, default=ROOT / "bench" / "frames.npz")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 76)))
    ap.add_argument("--executor", default="", choices=("", "single", "events"),
                    help="the edge's and server's executor parameter ('' = their defaults)")
    ap.add_argument("--edge-param", action="append", default=[], metavar="NAME:=VALUE",
                    help="an edge node parameter (repeatable; after the others)")
    ap.add_argument("--server-param", action="append", default=[], metavar="NAME:=VALUE",
                    help="a server node parameter (repeatable; after the others)")
    ap.add_argument("--dds-profile", type=Path,
                    help="Fast DDS profile for every process (e.g. config/fastdds.xml)")
    ap.add_argument("--no-server", action="store_true",
                    help="no server node: the edge serves every frame itself (local inference)")
    ap.add_argument("--typed-probe", action="store_true",
                    help="the probe deserialises the outputs (as a Python subscriber does); "
                         "default: it reads the stamp from their bytes")
    ap.add_argument("--py-spy", default="", metavar="PATH",
                    help="py-spy executable: profile the server and the edge over the window "
                         "(logs/pyspy_{server,edge}_{threads,gil}.txt)")
    ap.add_argument("--trace", action="store_true",
                    help="run the nodes under bench/fleet/frame_trace.py: a per-frame timeline of "
                         "the critical path in pipeline.md / pipeline.json")
    ap.add_argument("--trace-out", type=Path, help="(the camera role's trace file)")
    ap.add_argument("--probe-out", type=Path)
    ap.add_argument("--ready", type=Path)
    args = ap.parse_args()
    if args.no_server and args.trace:
        ap.error("--trace follows frames through the server: not with --no-server")
    if args.role == "camera":
        return camera(args.frames, args.rate, args.trace_out)
    if args.role == "probe":
        return probe(args.probe_out, args.ready, args.typed_probe)
    return orchestrate(args)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
