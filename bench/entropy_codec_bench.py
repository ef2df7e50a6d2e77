"""Entropy-coded codecs (eb-<k>/1, and ebc-<k>/1 where the card has context tables) against
q4-zstd/1 on the same split tensors: bytes per frame and encode / decode time per frame on this
CPU (the edge and server run one frame at a time). ebc-<k>/1 must decode every frame to exactly
eb-<k>/1's tensor (the same symbols: the same accuracy); the bench stops if one does not.

    python bench/entropy_codec_bench.py --model models/default --data DATA --frames 60

The tensors are the model's edge output at its split for the frames' test split; each codec
encodes and decodes every frame ``--repeats`` times, the table gives the median per frame.
Writes a markdown table (command, machine, date, model fingerprint) to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from mtl_split_core.cli.train import load_data
from mtl_split_core.codec import decode, encode, model_codecs
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.runtime.model_files import load_model_param


def per_frame_ms(fn, items, repeats: int) -> float:
    """Median over ``repeats`` passes of the mean time of ``fn`` per item, in ms."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - t0) / len(items) * 1e3)
    return statistics.median(times)


def run_header(load: float) -> list[str]:
    """The command, machine (``load``: the load average at the start) and date lines."""
    return [
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, Python {platform.python_version()}, load "
        f"average {load:.1f} on {os.cpu_count()} cores at the start  ",
        f"Date: {datetime.date.today().isoformat()}  "]


def write_report(lines: list[str], out: str) -> int:
    """Print the report and write it to ``out``; the exit status."""
    text = "\n".join(lines) + "\n"
    print(text)
    Path(out).write_text(text)
    return 0


def _vs_eb(codec: str, nbytes: float, rows: list) -> str:
    """An ebc row's bytes relative to the eb row of its operating point ("" for the others)."""
    if not codec.startswith("ebc-"):
        return ""
    eb = next(b for c, b, *_ in rows if c == codec.replace("ebc-", "eb-"))
    return f"{nbytes / eb - 1:+.1%}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--data", required=True, help="a data set with a test split (mtl-split eval)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default="bench/results/entropy_codec.md")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (q4's quantization runs in torch; 1 avoids OpenMP "
                    "spinning on a 4800-value tensor)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    model, card = load_model_param(args.model)
    cfg = model.config
    tables = tables_of(cfg.entropy)
    data = load_data([args.data], "test", cfg.input_size, None,
                     (cfg.detection_classes, cfg.segmentation_classes)).data.to_dict()
    images = torch.from_numpy(data["images"][:args.frames]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        z = model.edge(images, cfg.default_split)
    tensors = list(z)
    rows = []
    decoded: dict[str, list[bytes]] = {}
    for codec in [c for c in model_codecs(tables) if c == "q4-zstd/1" or c.startswith("eb")]:
        encoded = [encode(t, codec, tables=tables) for t in tensors]
        decoded[codec] = [decode(e, tables=tables).tobytes() for e in encoded]
        same = codec.replace("ebc-", "eb-")
        if decoded[same] != decoded[codec]:
            raise SystemExit(f"{codec} decodes differently from {same}")
        rows.append((codec, statistics.mean(e.nbytes for e in encoded),
                     per_frame_ms(lambda t, c=codec: encode(t, c, tables=tables), tensors,
                                  args.repeats),
                     per_frame_ms(lambda e: decode(e, tables=tables), encoded, args.repeats)))
    shape = "x".join(map(str, tensors[0].shape))
    lines = [
        *run_header(load),
        f"Model: {card['name']}, fingerprint `{card['fingerprint']}`; split "
        f"{cfg.default_split}, tensor {shape}, {len(tensors)} test frames, median of "
        f"{args.repeats} passes",
        "",
        "| codec | bytes/frame | vs eb-<k>/1 | encode ms/frame | decode ms/frame |",
        "|---|---:|---:|---:|---:|",
        *[f"| {c} | {b:,.0f} | {_vs_eb(c, b, rows)} | {e:.3f} | {d:.3f} |"
          for c, b, e, d in rows],
    ]
    return write_report(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
