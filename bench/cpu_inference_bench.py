"""The network halves on this CPU, each way the project could run them, in one run: torch eager
fp32 (what the nodes run today), eager with channels_last tensors, TorchScript (trace + freeze
+ optimize_for_inference), and onnxruntime fp32 (`mtl-split export` files).

    python bench/cpu_inference_bench.py --out bench/results/cpu_inference

Server half at batch 1 and 4 (the fleet bench's 4 robots), edge half at batch 1, default model
and split, 2 threads each. Each variant runs in a process of its own (onnxruntime's thread pool
in a torch process slows torch by an order of magnitude here: bench/results/export.md), and
the variants take turns round by round so that load from other sessions falls on all alike.
Each worker also saves its outputs for the first inputs; the table gives every variant's
largest absolute difference from eager per output (the equivalence check).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_split_core.export import export_model, frames_to_batch, sample_frames  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402

VARIANTS = ("eager", "channels_last", "torchscript", "onnxruntime")
THREADS = 2
BATCHES = (1, 4)


def timed(call, inputs: list, repeats: int, warmup: int = 3) -> tuple[list, list]:
    """Wall and process CPU ms per call (CPU time: what a call costs the machine, less moved
    by other sessions' load than the wall time)."""
    wall, cpu = [], []
    for i in range(warmup + repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call(inputs[i % len(inputs)])
        if i >= warmup:
            wall.append((time.perf_counter() - start) * 1e3)
            cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def halves(variant: str, model, card: dict, split: str, onnx_dir: str):
    """(edge, server) callables of ``variant``: numpy in, numpy out (server: tuple of the
    outputs in sorted name order)."""
    from mtl_split_core.export import _EdgeGraph, _ServerGraph
    size = tuple(card["input_size"])
    out_hw = (size[1], size[0])
    if variant == "onnxruntime":
        from mtl_split_core.runtime.backends import OnnxExport, OrtEdge, OrtOptions, OrtServer
        export = OnnxExport(card, OrtOptions(onnx_dir, threads=THREADS), torch.device("cpu"))
        ort_edge, ort_server = OrtEdge(export, split), OrtServer(export, split)
        return ort_edge, lambda z: tuple(v.numpy() for _, v in sorted(ort_server(z).items()))
    with torch.inference_mode():
        x0 = torch.zeros(1, 3, size[1], size[0])
        z0 = model.edge(x0, split)
        names = sorted(model.server(z0, split, out_hw=out_hw))
    edge_mod = _EdgeGraph(model, split).eval()
    server_mod = _ServerGraph(model, split, out_hw, names, focal=False).eval()
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last)
    if variant == "torchscript":  # what the server runs (runtime/torchscript.py)
        from mtl_split_core.runtime.torchscript import FrozenTrace
        edge_mod, server_mod = FrozenTrace(edge_mod, (x0,)), FrozenTrace(server_mod, (z0,))
    fmt = torch.channels_last if variant == "channels_last" else torch.contiguous_format

    def edge(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return edge_mod(torch.from_numpy(x).contiguous(memory_format=fmt)).numpy()

    def server(z: np.ndarray) -> tuple:
        with torch.inference_mode():
            out = server_mod(torch.from_numpy(z).contiguous(memory_format=fmt))
            return tuple(o.contiguous().numpy() for o in out)
    return edge, server


def worker(variant: str, model_name: str, onnx_dir: str, inputs: str, repeats: int,
           save: str) -> dict:
    torch.set_num_threads(THREADS)
    model, card = load_model_param(model_name)
    split = card["default_split"]
    data = np.load(inputs)
    xs, zs = list(data["x"]), list(data["z"])
    edge, server = halves(variant, model.eval(), card, split, onnx_dir)
    out: dict[str, list[float]] = {}
    out["edge_b1"], out["edge_b1_cpu"] = timed(edge, [x[None] for x in xs], repeats)
    for b in BATCHES:
        batches = [np.stack([zs[(i + k) % len(zs)] for k in range(b)]) for i in range(len(zs))]
        out[f"server_b{b}"], out[f"server_b{b}_cpu"] = timed(server, batches, repeats)
    saved = {"edge": np.concatenate([edge(x[None]) for x in xs[:4]])}
    for k, o in enumerate(server(np.stack(zs[:4]))):
        saved[f"server{k}"] = o
    np.savez(save, **saved)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--frames", default=str(ROOT / "bench/frames.npz"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10, help="timed calls per round and case")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", default="")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--onnx-dir", default="", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", default="", help=argparse.SUPPRESS)
    ap.add_argument("--save", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.onnx_dir, args.inputs,
                                args.repeats, args.save)))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS) or "eager" not in variants:
        print(f"--variants: a subset of {','.join(VARIANTS)} with eager", file=sys.stderr)
        return 2
    torch.set_num_threads(THREADS)
    model, card = load_model_param(args.model)
    split, size = card["default_split"], tuple(card["input_size"])
    frames = sample_frames(args.frames, 8, size)
    x = frames_to_batch(frames, size)
    with torch.inference_mode():
        z = model.edge(torch.from_numpy(x), split).numpy()
    tmp = Path(tempfile.mkdtemp(prefix="cpu_inference_"))
    np.savez(tmp / "inputs.npz", x=x, z=z)
    onnx_dir = tmp / "onnx"
    if "onnxruntime" in variants:
        t0 = time.perf_counter()
        export_model(model, card, onnx_dir, splits=[split], frames=frames)
        print(f"export {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    times: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            cmd = [sys.executable, __file__, "--worker", v, "--model", args.model,
                   "--onnx-dir", str(onnx_dir), "--inputs", str(tmp / "inputs.npz"),
                   "--repeats", str(args.repeats), "--save", str(tmp / f"{v}.npz")]
            env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                            env=env).stdout.splitlines()[-1])
            for case, t in res.items():
                times[v].setdefault(case, []).extend(t)
            print(f"round {r} {v}: " + ", ".join(f"{c} {np.median(t):.1f}" for c, t in
                                                res.items()), file=sys.stderr, flush=True)
    ref = np.load(tmp / "eager.npz")
    with torch.inference_mode():
        out_names = sorted(model.server(torch.from_numpy(z[:1]), split))
    diffs = {}
    for v in variants:
        got = np.load(tmp / f"{v}.npz")
        diffs[v] = {k: float(np.max(np.abs(got[k].astype(np.float64) - ref[k])))
                    for k in ref.files}
    cases = [c for c in times["eager"] if not c.endswith("_cpu")]
    lines = ["# Network halves on this CPU: eager vs channels_last vs TorchScript vs "
             "onnxruntime", "",
             f"`python bench/cpu_inference_bench.py --rounds {args.rounds} --repeats "
             f"{args.repeats}` — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
             "",
             f"Machine: {os.uname().nodename}, {os.cpu_count()} CPUs, torch "
             f"{torch.__version__}, {THREADS} threads each; model {card.get('name')} "
             f"({card['fingerprint']}), split {split}, input {size[0]}x{size[1]}; "
             f"1-min load at the end {os.getloadavg()[0]:.1f}. Median (p90) ms per call over "
             f"{args.rounds} rounds x {args.repeats} calls; each variant in its own process, "
             f"variants alternating.", "",
             "| variant | " + " | ".join(cases) + " | speed-up server b4 (wall; CPU) | max abs "
             "diff vs eager (edge; server outputs " + ", ".join(out_names) + ") |",
             "|---|" + "---:|" * len(cases) + "---:|---|"]
    base = float(np.median(times["eager"]["server_b4"]))
    base_cpu = float(np.median(times["eager"]["server_b4_cpu"]))
    for v in variants:
        cells = [f"{np.median(times[v][c]):.1f} ({np.percentile(times[v][c], 90):.1f})"
                 for c in cases]
        d = diffs[v]
        dtext = f"{d['edge']:.1e}; " + ", ".join(f"{d[k]:.1e}" for k in d if k != "edge")
        lines.append(f"| {v} | " + " | ".join(cells) +
                     f" | {base / float(np.median(times[v]['server_b4'])):.2f}x; "
                     f"{base_cpu / float(np.median(times[v]['server_b4_cpu'])):.2f}x | {dtext} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(text)
        (out / "results.json").write_text(json.dumps({"times": times, "diffs": diffs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
