"""Split pipeline vs JPEG upload over an emulated robot link (network namespaces + tc).

The robot and the server are two network namespaces joined by a veth pair; ``tbf`` shapes
both directions to the link's bandwidth and nftables drops packets at random for loss (see
``link.py``; one-way delay is not available on this kernel). DDS runs over UDP only
(``FASTDDS_BUILTIN_TRANSPORTS=UDPv4``), so every byte between robot and server crosses the
shaped link. With ``--pin`` (default) robot processes run on CPU 0 and server processes on
CPU 1: two one-core machines instead of a shared pool.

Pipelines (the same camera JPEG stream, the same model):
  split  robot: camera -> edge node (decode, edge network, q4 + zstd)  ==link==>  server:
         server node -> probe
  jpeg   robot: camera  ==link==>  server: edge node (decode, edge network, f16) -> server
         node -> probe  (the whole model on the server: REMOTE-ONLY / JPEG upload)

For every link shape and pipeline: start the nodes, wait for the first output, let it settle
(``--warmup``), then count delivered frames and end-to-end latency (camera stamp -> detections
at the server, one clock) over ``--seconds``, with the bytes the robot put on the link. Writes
``results.json`` and ``results.md`` to ``--out``. Needs root and iproute2 (+ nftables for loss).

    sudo make netem               # or:
    python bench/netem/run.py --bandwidths 5,20,100 --out bench/results/netem
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from frames import BenchFrames, pipeline_accuracy  # noqa: E402
from harness import (  # noqa: E402
    cached_frames,
    camera_command,
    child_env,
    machine,
    model_label,
    num,
    probe_command,
    start_sides,
    today,
    wait_ready,
)
from link import EmulatedLink, LinkError, LinkShape  # noqa: E402

from mtl_split_tools.node_processes import node_command, stop_all  # noqa: E402

PIPELINES = ("split", "jpeg")
JPEG_PIPELINE_CODEC = "f16-zstd/1"  # colocated edge + server: near-lossless, ~the float model


def pipeline_processes(pipeline: str, frames: Path, rate: float, link_qos: str,
                       model: str, probe_out: Path, ready: Path) -> dict[str, list]:
    """(name, argv) of the processes on each side of the link for ``pipeline``."""
    model_p = {"model": model} if model else {}
    probe = ("probe", probe_command(probe_out, ready))
    if pipeline == "split":
        return {
            "robot": [("camera", camera_command(frames, rate, "reliable")),
                      ("edge", node_command("edge_node", {
                          **model_p, "input_transport": "compressed", "input_qos": "reliable",
                          # fixed strategy: the split path alone, never the local fallback
                          "output_qos": link_qos, "fallback_after": 0.0}))],
            "server": [("server", node_command("server_node", {**model_p,
                                                               "input_qos": link_qos})),
                       probe]}
    if pipeline == "jpeg":
        return {
            "robot": [("camera", camera_command(frames, rate, link_qos))],
            "server": [("edge", node_command("edge_node", {
                           **model_p, "input_transport": "compressed", "input_qos": link_qos,
                           "output_qos": "reliable", "codec": JPEG_PIPELINE_CODEC,
                           "fallback_after": 0.0})),
                       ("server", node_command("server_node", {**model_p,
                                                               "input_qos": "reliable"})),
                       probe]}
    raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {PIPELINES}")


def measure(link: EmulatedLink, pipeline: str, frames: Path, args, run_dir: Path) -> dict:
    """Run ``pipeline`` over the link's current shape; returns delivered fps, latency, bytes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    probe_out, ready = run_dir / "probe.json", run_dir / "ready"
    ready.unlink(missing_ok=True)
    probe_out.unlink(missing_ok=True)
    sides = pipeline_processes(pipeline, frames, args.rate, args.link_qos, args.model,
                               probe_out, ready)
    procs: list = []
    try:
        start_sides(link, sides, child_env(args.domain_id), run_dir, args.pin, procs)
        if not wait_ready(ready, procs, args.start_timeout, pipeline, run_dir):
            # A link so overloaded that no frame gets through is a result, not an error.
            print(f"  no output within {args.start_timeout:.0f} s; measuring anyway",
                  flush=True)
        time.sleep(args.warmup)
        t0, c0 = time.time_ns(), link.counters("robot")
        q0 = link.qdisc_stats("robot")
        time.sleep(args.seconds)
        t1, c1 = time.time_ns(), link.counters("robot")
        q1 = link.qdisc_stats("robot")
    finally:
        stop_all(procs)
    probe = json.loads(probe_out.read_text())
    window = [(s, a) for s, a in probe["arrivals"] if t0 <= a < t1]
    latency = np.array([(a - s) / 1e6 for s, a in window])
    seconds = (t1 - t0) / 1e9
    diag = probe["diagnostics"]
    edge = next((v for k, v in diag.items() if k.endswith(": edge")), {})
    server = next((v for k, v in diag.items() if k.endswith("mtl_split/features")), {})
    return {
        "pipeline": pipeline, "link": link.shape.describe(),
        "bandwidth_mbit": link.shape.bandwidth_mbit, "loss_pct": link.shape.loss_pct,
        "offered_fps": args.rate, "seconds": round(seconds, 2),
        "delivered_fps": len(window) / seconds,
        "latency_ms_p50": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_ms_p95": float(np.percentile(latency, 95)) if len(latency) else None,
        "uplink_mbit": (c1["tx_bytes"] - c0["tx_bytes"]) * 8 / seconds / 1e6,
        "uplink_bytes_per_delivered_frame": ((c1["tx_bytes"] - c0["tx_bytes"]) / len(window)
                                             if window else None),
        "qdisc_drops": q1["drops"] - q0["drops"],
        "edge_ms_p50": num(edge.get("edge_ms_p50")),
        "server_ms_p50": num(server.get("server_ms_p50")),
        "edge_drops": num(edge.get("drops")),
    }


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; date {meta['date']}  ",
             f"Model: {meta.get('model', '?')}  ",
             f"Camera: {meta['camera']}; link QoS {meta['link_qos']}; "
             f"{'robot on CPU 0, server on CPU 1' if meta['pinned'] else 'unpinned'}",
             "",
             "| link | pipeline | delivered fps | latency p50 / p95 (ms) | uplink Mbit/s | "
             "uplink KB/frame | tbf drops | split vs jpeg fps |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    by_link: dict[str, dict] = {}
    for r in results["runs"]:
        by_link.setdefault(r["link"], {})[r["pipeline"]] = r
    for link, runs in by_link.items():
        ratio = ""
        if "split" in runs and "jpeg" in runs:
            split_fps, jpeg_fps = runs["split"]["delivered_fps"], runs["jpeg"]["delivered_fps"]
            ratio = f"{split_fps / jpeg_fps:.1f}x" if jpeg_fps > 0 else "jpeg: none"
        for name, r in runs.items():
            lat = (f"{r['latency_ms_p50']:.0f} / {r['latency_ms_p95']:.0f}"
                   if r["latency_ms_p50"] is not None else "-")
            kb = (f"{r['uplink_bytes_per_delivered_frame'] / 1e3:.1f}"
                  if r["uplink_bytes_per_delivered_frame"] else "-")
            lines.append(f"| {link} | {name} | {r['delivered_fps']:.1f} | {lat} | "
                         f"{r['uplink_mbit']:.2f} | {kb} | {r['qdisc_drops']} | "
                         f"{ratio if name == 'split' else ''} |")
    acc = results.get("accuracy") or {}
    if acc:
        lines += ["", "| pipeline | codec | mAP@0.5 | mIoU | depth δ<1.25 | bytes/frame |",
                  "|---|---|---:|---:|---:|---:|"]
        for name, a in acc.items():
            b = a["feature_bytes_mean"] if name == "split" else meta["jpeg_bytes_mean"]
            lines.append(f"| {name} | {a['codec']} | {a['mAP50']:.3f} | {a['mIoU']:.3f} | "
                         f"{a['delta1']:.3f} | {b:.0f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/netem"))
    ap.add_argument("--bandwidths", default="5,20,100",
                    help="comma-separated Mbit/s; 0 = unshaped")
    ap.add_argument("--loss", type=float, default=0.0, help="random packet loss, percent")
    ap.add_argument("--queue-ms", type=float, default=100.0, help="tbf queue (ms of traffic)")
    ap.add_argument("--pipelines", default=",".join(PIPELINES))
    ap.add_argument("--rate", type=float, default=30.0, help="camera frames per second")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=960)
    ap.add_argument("--noise", type=float, default=0.0,
                    help="sensor noise std (8-bit levels) before JPEG; 0 = clean renders")
    ap.add_argument("--frames", type=int, default=48, help="distinct frames (looped)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--start-timeout", type=float, default=60.0,
                    help="seconds to wait for the first output (model loading)")
    ap.add_argument("--link-qos", default="reliable", choices=("reliable", "best_effort"),
                    help="QoS of the topic that crosses the link")
    ap.add_argument("--model", default="")
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    ap.add_argument("--domain-id", type=int, default=77)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    pipelines = [p for p in args.pipelines.split(",") if p]
    for p in pipelines:
        if p not in PIPELINES:
            raise SystemExit(f"unknown pipeline {p!r}; expected {', '.join(PIPELINES)}")
    shapes = [LinkShape(float(b) or None, args.loss, args.queue_ms)
              for b in args.bandwidths.split(",") if b]
    args.out.mkdir(parents=True, exist_ok=True)
    frames_path = cached_frames(args.out, args.frames, args.width, args.height, args.noise)
    frames = BenchFrames(frames_path)
    results = {"meta": {
        "command": " ".join(["python bench/netem/run.py", *(argv or sys.argv[1:])]),
        "machine": machine(), "date": today(),
        "camera": f"{frames.width}x{frames.height} JPEG q90 at {args.rate:g} fps, "
                  f"{frames.jpeg_bytes_mean() / 1e3:.1f} KB/frame (sensor noise "
                  f"{frames.noise:g})",
        "jpeg_bytes_mean": frames.jpeg_bytes_mean(),
        "link_qos": args.link_qos, "pinned": args.pin, "model": model_label(args.model)},
        "runs": []}
    if args.accuracy:
        print("accuracy of both pipelines' network paths on the bench frames ...", flush=True)
        results["accuracy"] = {
            "split": pipeline_accuracy(frames, args.model or None, "q4-zstd/1"),
            "jpeg": pipeline_accuracy(frames, args.model or None, JPEG_PIPELINE_CODEC)}
    try:
        with EmulatedLink() as link:
            for shape in shapes:
                link.set_shape(shape)
                for pipeline in pipelines:
                    print(f"[{shape.describe()}] {pipeline} ...", flush=True)
                    run_dir = args.out / "logs" / f"{pipeline}_{shape.bandwidth_mbit or 0:g}"
                    r = measure(link, pipeline, frames_path, args, run_dir)
                    results["runs"].append(r)
                    print(f"  {r['delivered_fps']:.1f} fps, latency p50 "
                          f"{r['latency_ms_p50'] or float('nan'):.0f} ms, uplink "
                          f"{r['uplink_mbit']:.2f} Mbit/s", flush=True)
                    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    except LinkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (args.out / "results.md").write_text(markdown(results))
    print("\n" + markdown(results))
    return 0


if __name__ == "__main__":
    # SIGTERM (e.g. a CI timeout) must unwind through the `with` so namespaces are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
