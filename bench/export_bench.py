"""torch vs onnxruntime fp32 vs onnxruntime int8 (edge) for the default model, side by side in
one run: latency of the edge and server halves, and accuracy through the whole split path.

    python bench/export_bench.py --data DATASET --out bench/results/export.md

Latency: the network halves alone (torch ``model.edge`` / ``model.server`` vs the onnxruntime
sessions) and the whole edge runner (letterbox + network + codec), at the model's input size,
batch 1, with 2 threads each; each backend runs in a process of its own, and the backends take
turns round by round so that load from other processes on a shared machine falls on all alike.
Accuracy: every frame of DATASET through EdgeRunner -> codec -> ServerRunner with each backend,
scored by evaluate.score.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from mtl_split_core.data.dataset import load_dataset
from mtl_split_core.evaluate import frame_truth, headline, score
from mtl_split_core.export import OPSET, export_model, frames_to_batch, sample_frames
from mtl_split_core.runtime.backends import OnnxExport, OrtEdge, OrtOptions, OrtServer
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.model_files import load_model_param
from mtl_split_core.runtime.server import ServerRunner

THREADS = 2


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def timed(call, inputs: list, repeats: int, warmup: int = 5) -> list[float]:
    """ms per call of ``call`` over ``inputs`` (cycled), after ``warmup`` calls."""
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        call(inputs[i % len(inputs)])
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def latency_worker(variant: str, model_name: str, folder: str, frames_path: str,
                   repeats: int) -> dict:
    """One backend's latencies (edge network, edge runner, server network), in a process of
    its own: torch's OpenMP threads and onnxruntime's thread pool in one process slow torch
    down by an order of magnitude on this loaded 2-core machine (measured), which is not a
    comparison of the runtimes."""
    torch.set_num_threads(THREADS)
    model, card = load_model_param(model_name)
    split, size = card["default_split"], tuple(card["input_size"])
    frames = sample_frames(frames_path, 10, size)
    batches = [frames_to_batch([f], size) for f in frames]
    with torch.inference_mode():
        zs = [model.edge(torch.from_numpy(b), split).numpy() for b in batches]
    if variant == "torch":
        def edge(x: np.ndarray) -> None:
            with torch.inference_mode():
                model.edge(torch.from_numpy(x), split)

        def server(z: np.ndarray) -> None:
            with torch.inference_mode():
                model.server(torch.from_numpy(z), split)
        runner = EdgeRunner(model, card, split=split, device="cpu")
    else:
        options = OrtOptions(folder, threads=THREADS)
        export = OnnxExport(card, options, torch.device("cpu"))
        edge, server = OrtEdge(export, split), OrtServer(export, split)
        runner = EdgeRunner(model, card, split=split, device="cpu", backend="onnxruntime",
                            onnx=options)
    out = {"edge": timed(edge, batches, repeats), "runner": timed(runner, frames, repeats)}
    if variant != "int8":  # the int8 export's server half is the fp32 one
        out["server"] = timed(server, zs, repeats)
    return out


def table(title: str, times: dict[str, np.ndarray], base: str) -> list[str]:
    ref = float(np.median(times[base]))
    lines = [f"### {title}", "", "| variant | median ms | p90 ms | speed-up vs " + base + " |",
             "|---|---|---|---|"]
    for name, t in times.items():
        med = float(np.median(t))
        lines.append(f"| {name} | {med:.2f} | {np.percentile(t, 90):.2f} | {ref / med:.2f}x |")
    return lines + [""]


def accuracy(model, card, folders: dict[str, str | None], data: dict, split: str) -> dict:
    """Headline metrics per variant through edge -> codec -> server (ServerRunner)."""
    results = {}
    k = data.get("k")
    for name, folder in folders.items():
        backend = "torch" if folder is None else "onnxruntime"
        onnx = None if folder is None else OrtOptions(folder, threads=THREADS)
        edge = EdgeRunner(model, card, split=split, device="cpu", backend=backend, onnx=onnx)
        server = ServerRunner(model, card, device="cpu", backend=backend, onnx=onnx,
                              score_threshold=0.05, max_detections=100)
        pairs = []
        for i, image in enumerate(data["images"]):
            focal = None if k is None or not len(k) else float(np.asarray(k[i])[4])
            pairs.append((server(edge(image), focal_px=focal).as_dict(), frame_truth(data, i)))
        results[name] = headline(score(pairs, model.config))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--data", required=True, help="sim dataset folder (mtl-split gen-data)")
    ap.add_argument("--frames", default="bench/frames.npz", help="frames for the latency runs")
    ap.add_argument("--calibration", type=int, default=64,
                    help="sim frames rendered for int8 calibration (other scenes than --data)")
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--out", default="bench/results/export.md")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--export-dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    if args.worker:
        print(json.dumps(latency_worker(args.worker, args.model, args.export_dir,
                                        args.frames, args.repeats)))
        return 0

    model, card = load_model_param(args.model)
    split = card["default_split"]
    size = tuple(card["input_size"])
    tmp = Path(tempfile.mkdtemp(prefix="export_bench_"))
    calibration = sample_frames(None, args.calibration, size)
    exports = {}
    for precision in ("fp32", "int8"):
        t0 = time.perf_counter()
        export_model(model, card, tmp / precision, splits=[split], precision=precision,
                     frames=calibration)
        exports[precision] = time.perf_counter() - t0
        print(f"exported {precision} in {exports[precision]:.1f} s", flush=True)

    # Latency: one process per backend and round; the backends take turns round by round,
    # so load from other processes on a shared machine falls on all of them alike.
    variants = {"torch": "torch", "onnxruntime fp32": "fp32", "onnxruntime int8": "int8"}
    times: dict[str, dict[str, list[float]]] = {n: {} for n in variants}
    rounds = 3
    for r in range(rounds):
        for name, variant in variants.items():
            worker = subprocess.run(
                [sys.executable, __file__, "--worker", variant, "--data", args.data,
                 "--model", args.model,
                 "--export-dir", str(tmp / variant), "--frames", args.frames,
                 "--repeats", str(args.repeats // rounds)],
                capture_output=True, text=True, check=True)
            result = json.loads(worker.stdout.strip().splitlines()[-1])
            for kind, values in result.items():
                times[name].setdefault(kind, []).extend(values)
        print(f"latency round {r + 1}/{rounds} done", flush=True)

    def kind(k: str) -> dict[str, np.ndarray]:
        return {n: np.asarray(t[k]) for n, t in times.items() if k in t}
    edge_times, runner_times, server_times = kind("edge"), kind("runner"), kind("server")
    print("latency done", flush=True)

    data = load_dataset(args.data, ("train", "val", "test"))
    acc = accuracy(model, card, {"torch": None, "onnxruntime fp32": str(tmp / "fp32"),
                                 "onnxruntime int8": str(tmp / "int8")}, data, split)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# ONNX export: torch vs onnxruntime (CPU)", "",
        f"`{' '.join(['python', *sys.argv])}` — {datetime.date.today().isoformat()}, commit "
        f"{commit}", "",
        f"Machine: {cpu_model()}, `nproc` = {os.cpu_count()}, shared with other sessions' "
        "work while this ran (absolute times are noisy; each backend runs in its own process and "
        "the backends take turns in 3 rounds, so the ratios are the comparable numbers).",
        f"Model: {card.get('name')} (fingerprint {card['fingerprint']}), split {split}, "
        f"{size[0]}x{size[1]}, codec {card.get('codec')}. torch {torch.__version__} "
        f"({THREADS} threads), onnxruntime {onnxruntime.__version__} "
        f"(CPU provider, {THREADS} intra-op threads without spinning, graph optimisation "
        f"'all'), opset "
        f"{OPSET}, legacy TorchScript exporter.",
        f"int8: static QDQ quantisation of the edge (per-channel int8 weights, uint8 "
        f"activations, MinMax) calibrated on {args.calibration} rendered sim frames; the "
        f"server stays fp32. Export times: fp32 {exports['fp32']:.1f} s, int8 "
        f"{exports['int8']:.1f} s. {rounds} processes x {args.repeats // rounds} timed calls "
        "per variant, after 5 warm-up calls each.", "",
        *table("Edge network (normalise + prefix + bottleneck encoder), batch 1", edge_times,
               "torch"),
        *table("Edge runner (letterbox + network + codec encode), 640x480 frames", runner_times,
               "torch"),
        *table("Server network (bottleneck decoder + rest + heads), batch 1", server_times,
               "torch"),
        f"### Accuracy through edge -> {card.get('codec')} -> server, "
        f"{len(data['images'])} sim frames ({args.data})", "",
        "| variant | mAP@0.5 | mIoU | delta<1.25 | rel. change mAP / mIoU / delta |",
        "|---|---|---|---|---|",
    ]
    base = acc["torch"]
    for name, h in acc.items():
        rel = " / ".join(f"{(h[k] - base[k]) / base[k] * 100:+.2f}%"
                         for k in ("mAP50", "mIoU", "delta1"))
        lines.append(f"| {name} | {h['mAP50']:.4f} | {h['mIoU']:.4f} | {h['delta1']:.4f} | "
                     f"{rel} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
