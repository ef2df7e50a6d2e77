"""Streaming data loader: host memory and images/s against the data set's size (issue #27).

Generates a COCO-layout data set (``annotations/instances_train2017.json`` + ``train2017/``)
of N frames: the JSON has N image records with two polygon instances each, and the images are
a pool of ``--pool`` real 64x48 JPEG files that the records point at in turn (writing 100k
files is disk and time this benchmark does not need: decoding cost per frame is the same).
Each measurement runs in a fresh process: open the source (stream the JSON into the index),
then one epoch through the training loader (``frames.frame_batches``: DataLoader workers decode
and letterbox, batches of 32 collated into tensors), sampling the summed RSS of the
process and its workers every 50 ms. The baseline is what the code did before: every frame
decoded into one in-memory dataset dict (``Frames.to_dict``), measured where it fits.

    python bench/loader_bench.py --out bench/results/loader          # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

BATCH = 32


def generate(root: Path, frames: int, pool: int, size: tuple[int, int] = (64, 48)) -> None:
    """The COCO layout with ``frames`` records over ``pool`` image files of ``size`` (WxH; the
    instances sit in its top-left 64x48 corner)."""
    images_dir = root / "train2017"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(pool):
        path = images_dir / f"{i:06d}.jpg"
        if not path.exists():
            image = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
            cv2.imwrite(str(path), cv2.GaussianBlur(image, (5, 5), 0))
    (root / "annotations").mkdir(exist_ok=True)
    with open(root / "annotations" / "instances_train2017.json", "w") as f:
        f.write('{"info": {"description": "loader_bench"}, "categories": '
                '[{"id": 1, "name": "person"}, {"id": 3, "name": "car"}], "images": [')
        f.write(",".join(json.dumps({"id": i, "file_name": f"{i % pool:06d}.jpg",
                                     "width": size[0], "height": size[1]})
                         for i in range(frames)))
        f.write('], "annotations": [')
        anns = []
        for i in range(frames):
            for j, (x, y) in enumerate(((4 + i % 20, 6), (30, 10 + i % 15))):
                poly = [x, y, x + 16, y, x + 16, y + 20, x, y + 20]
                anns.append(json.dumps({"id": 2 * i + j, "image_id": i, "category_id": 1 + 2 * j,
                                        "bbox": [x, y, 16, 20], "area": 320.0, "iscrowd": 0,
                                        "segmentation": [poly]}))
        f.write(",".join(anns))
        f.write("]}")


def _memory_mb(pid: int) -> tuple[float, float]:
    """(RSS of ``pid``, PSS of ``pid`` and its children) in MB. PSS splits pages the forked
    DataLoader workers share with their parent among them: summing RSS would count the
    parent's pages once per worker."""
    import psutil

    try:
        proc = psutil.Process(pid)
        pss = sum(p.memory_full_info().pss for p in [proc, *proc.children(recursive=True)])
        return proc.memory_info().rss / 1e6, pss / 1e6
    except psutil.Error:
        return 0.0, 0.0


def measure(root: Path, workers: int, limit: int | None, in_memory: bool,
            size: tuple[int, int]) -> dict:
    """One run in this process (called in a fresh one by ``main``)."""
    from mtl_split_core.data.frames import collate_tensors, frame_batches
    from mtl_split_core.data.sources import DataSpec
    from mtl_split_core.data.sources.loading import load_sources

    peak = [0.0, 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[:] = np.maximum(peak, _memory_mb(os.getpid())).tolist()
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    frames = load_sources([DataSpec.parse(f"coco:{root}")], "train", size).data
    index_s = time.perf_counter() - t0
    n = len(frames) if limit is None else min(limit, len(frames))
    t1 = time.perf_counter()
    if in_memory:
        frames.subset(np.arange(n)).to_dict()
    else:
        batches = [list(range(s, min(n, s + BATCH))) for s in range(0, n, BATCH)]
        for _ in frame_batches(frames, batches, collate_tensors, workers):
            pass
    seconds = time.perf_counter() - t1
    done.set()
    return {"frames": len(frames), "decoded": n, "workers": workers, "index_s": index_s,
            "size": f"{size[0]}x{size[1]}",
            "images_per_s": n / seconds, "peak_rss_mb": peak[0], "peak_pss_mb": peak[1],
            "index_mb": frames.index_bytes() / 1e6}


def _run(root: Path, workers: int, limit: int | None, size: tuple[int, int],
         in_memory: bool = False) -> dict:
    args = [sys.executable, __file__, "--measure", str(root), "--workers", str(workers),
            "--size", f"{size[0]}x{size[1]}"]
    args += ["--limit", str(limit)] if limit else []
    args += ["--in-memory"] if in_memory else []
    out = subprocess.run(args, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1",
                              "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results/loader"))
    p.add_argument("--work", type=Path, default=Path("/tmp/loader_bench"))
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--pool", type=int, default=500)
    p.add_argument("--rate-frames", type=int, default=4000,
                   help="frames decoded per images/s measurement")
    p.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rate-workers", default="1,2,8",
                   help="DataLoader workers of the images/s rows")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--in-memory", action="store_true")
    p.add_argument("--size", default="320x240", help="network input WxH of the images/s rows")
    p.add_argument("--rss-size", default="64x48",
                   help="network input of the whole-epoch memory rows (the source size: no "
                   "resize, so 100k frames fit a few minutes on 2 cores)")
    args = p.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    rss_size = tuple(int(v) for v in args.rss_size.split("x"))
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.workers, args.limit, args.in_memory,
                                 size)))  # type: ignore[arg-type]
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        generate(args.work / str(n), n, args.pool)
        print(f"generated {n} frames in {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append({"what": "streaming, whole epoch", **_run(args.work / str(n), 2, None,
                                                               rss_size)})
        print(rows[-1], flush=True)
    for workers in (int(w) for w in args.rate_workers.split(",")):
        rows.append({"what": "streaming, images/s", **_run(args.work / str(sizes[1]), workers,
                                                           args.rate_frames, size)})
        print(rows[-1], flush=True)
    for n in (1000, 2000):  # the old way: every frame in memory (10k would need ~6 GB)
        rows.append({"what": "in memory (before)", **_run(args.work / str(sizes[1]), 0, n,
                                                          size, in_memory=True)})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = [f"Command: `python bench/loader_bench.py` ({' '.join(sys.argv[1:]) or 'defaults'})",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs (shared), Python "
             f"{platform.python_version()}; date {date.today()}; COCO layout, 64x48 JPEG pool "
             f"of {args.pool} files (the JSON's records point at them in turn), batch {BATCH}; "
             "sampled every 50 ms: peak RSS of the training process, peak PSS of it plus its "
             "DataLoader workers (PSS shares the pages forked workers share with it)", "",
             "| loader | frames in data set | frames decoded | network input | workers | "
             "index build s | index MB | peak RSS MB (process) | peak PSS MB (with workers) "
             "| images/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['frames']} | {r['decoded']} | {r['size']} | "
                     f"{r['workers']} | "
                     f"{r['index_s']:.1f} | {r['index_mb']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_pss_mb']:.0f} | {r['images_per_s']:.0f} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
