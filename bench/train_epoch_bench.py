"""Training speed on one GPU: seconds per epoch and images/s of `mtl-split train` (issue #27).

Generates a COCO-layout data set (bench/loader_bench.py's generator: ``--frames`` records over a
pool of ``--source-size`` JPEG files, two instances each), then runs the real command once per
``--workers`` value, from scratch (no pretrained download there), bf16 autocast:

    mtl-split train --data coco:DIR --epochs 2 --batch-size 32 --workers W --device cuda

and reads each epoch's seconds from its ``train_log.csv``. The first epoch holds the start-up
(CUDA context, cudnn autotuning, workers forking); the second is the steady rate. Beside it, the
loader alone (``loader_bench.py --measure``, same data, same workers) gives the images/s the
decoding side can feed: when training runs at the loader's rate, more workers help; when it runs
below, the GPU step is the limit.

    python bench/train_epoch_bench.py --out DIR --workers 8,16     # on the GPU machine
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from loader_bench import _run as loader_run
from loader_bench import generate


def _train(root: Path, run: Path, workers: int, args: argparse.Namespace) -> list[float]:
    """Seconds of each epoch (from the run's log)."""
    cmd = [sys.executable, "-m", "mtl_split_core.cli", "train", "--data", f"coco:{root}",
           "--out", str(run), "--epochs", str(args.epochs), "--batch-size",
           str(args.batch_size), "--workers", str(workers), "--device", args.device,
           "--precision", args.precision, "--no-pretrained", "--name", "epoch_bench"]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"train failed ({done.returncode}): {done.stderr[-2000:]}")
    with open(run / "train_log.csv") as f:
        ends = [float(r["seconds"]) for r in csv.DictReader(f)]
    return [b - a for a, b in zip([0.0, *ends], ends)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("/tmp/train_epoch_bench"))
    p.add_argument("--frames", type=int, default=4000)
    p.add_argument("--pool", type=int, default=200)
    p.add_argument("--source-size", default="640x480")
    p.add_argument("--workers", default="8,16")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16")
    args = p.parse_args()
    source = tuple(int(v) for v in args.source_size.split("x"))
    root = args.work / "coco"
    t0 = time.perf_counter()
    generate(root, args.frames, args.pool, source)  # type: ignore[arg-type]
    print(f"generated {args.frames} frames in {time.perf_counter() - t0:.0f} s", flush=True)
    gpu = "cpu"
    if args.device.startswith("cuda"):
        import torch
        gpu = torch.cuda.get_device_name(0)
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        epochs = _train(root, args.work / f"run_w{workers}", workers, args)
        loader = loader_run(root, workers, min(args.frames, 2000), (320, 240))["images_per_s"]
        steps = args.frames // args.batch_size
        rows.append({"workers": workers, "epoch_s": epochs, "steps": steps,
                     "train_images_per_s": steps * args.batch_size / epochs[-1],
                     "loader_images_per_s": loader})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = [f"Command: `python bench/train_epoch_bench.py {' '.join(sys.argv[1:])}`",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, GPU {gpu}; date "
             f"{date.today()}; COCO layout, {args.frames} records over {args.pool} "
             f"{args.source_size} JPEGs, network input 320x240, efficientnet_lite0 from "
             f"scratch, batch {args.batch_size}, {args.precision}", "",
             "| workers | epoch 1 s (start-up) | epoch 2 s | steps/epoch | training images/s "
             "(epoch 2) | loader alone images/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['epoch_s'][0]:.1f} | {r['epoch_s'][-1]:.1f} | "
                     f"{r['steps']} | {r['train_images_per_s']:.0f} | "
                     f"{r['loader_images_per_s']:.0f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
