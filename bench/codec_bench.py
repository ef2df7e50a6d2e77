"""Codec benchmark: bytes per split point and codec vs JPEG q90, encode/decode speed (CPU),
and the CPU cost of splitting (edge + server vs the whole network).

    python bench/codec_bench.py --data data/sim320 --frames 20

Prints markdown tables (pasted into docs/BENCHMARKS.md with command, machine and date).
"""

from __future__ import annotations

import argparse
import platform
import time

import cv2
import numpy as np
import torch

from mtl_split_core.backbones import build_backbone
from mtl_split_core.codec import CODECS, decode, encode
from mtl_split_core.model import load_model
from mtl_split_core.runtime.model_files import resolve_model_path
from mtl_split_core.sim.scene import SimScene


def frames_at(size, count, seed=5):
    with SimScene(seed, *size) as scene:
        return [scene.render().rgb for _ in range(count)]


def to_tensor(rgb):
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def codec_rows(tensors_by_split, jpeg_bytes):
    rows = []
    for split, tensors in tensors_by_split.items():
        raw = np.mean([t.numel() * 4 for t in tensors])
        row = {"split": split, "shape": "x".join(map(str, tensors[0].shape)), "raw_fp32": raw}
        for codec in CODECS:
            t0 = time.perf_counter()
            encs = [encode(t, codec) for t in tensors]
            t1 = time.perf_counter()
            for e in encs:
                decode(e)
            t2 = time.perf_counter()
            mb = sum(t.numel() * 4 for t in tensors) / 1e6
            row[codec] = (np.mean([e.nbytes for e in encs]), mb / (t1 - t0), mb / (t2 - t1))
        row["jpeg_q90"] = jpeg_bytes
        rows.append(row)
    return rows


def print_codec_table(title, rows):
    print(f"\n#### {title}\n")
    print("| split | tensor (CxHxW) | raw fp32 | f16-zstd | q8-zstd | q4-zstd | JPEG q90 | "
          "q8 / JPEG | q8 enc / dec MB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        q8 = r["q8-zstd/1"]
        print(f"| {r['split']} | {r['shape']} | {r['raw_fp32'] / 1e3:.1f} KB | "
              f"{r['f16-zstd/1'][0] / 1e3:.1f} KB | {q8[0] / 1e3:.1f} KB | "
              f"{r['q4-zstd/1'][0] / 1e3:.1f} KB | {r['jpeg_q90'] / 1e3:.1f} KB | "
              f"{q8[0] / r['jpeg_q90']:.2f}x | {q8[1]:.0f} / {q8[2]:.0f} |")


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"torch threads, torch {torch.__version__}")
    backbone = build_backbone("efficientnet_lite0", pretrained=True).eval()
    for size in ((640, 480), (320, 240)):
        imgs = frames_at(size, args.frames)
        jpeg = np.mean([len(cv2.imencode(".jpg", im[..., ::-1],
                                         [cv2.IMWRITE_JPEG_QUALITY, 90])[1]) for im in imgs])
        feats = {name: [] for name in backbone.split_names}
        for im in imgs:
            for name, f in zip(backbone.split_names, backbone(to_tensor(im))):
                feats[name].append(f[0])
        print_codec_table(f"EfficientNet-Lite0 stage outputs (ImageNet weights, no bottleneck),"
                          f" {size[0]}x{size[1]}", codec_rows(feats, jpeg))
    # The trained default model: its bottleneck at the default split.
    model, card = load_model(resolve_model_path(""))
    w, h = card["input_size"]
    imgs = frames_at((w, h), args.frames)
    jpeg320 = np.mean([len(cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
                       for im in imgs])
    jpeg640 = np.mean([len(cv2.imencode(".jpg", im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
                       for im in frames_at((640, 480), args.frames)])
    x = [torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255 for im in imgs]
    split = card["default_split"]
    z = [model.edge(xi, split)[0] for xi in x]
    print_codec_table(f"default model ({card['name']}): bottleneck {card['bottlenecks'][split]} "
                      f"channels at {split}, {w}x{h} input; JPEG of the {w}x{h} frame",
                      codec_rows({split: z}, jpeg320))
    print(f"\n(JPEG q90 of the same scenes at 640x480: {jpeg640 / 1e3:.1f} KB)")
    # Split overhead on this CPU: edge + server vs the whole network, interleaved, medians.
    times = {"whole": [], "edge+server": []}
    xi = x[0]
    for _ in range(3):
        model(xi, split)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model(xi, split)
        t1 = time.perf_counter()
        model.server(model.edge(xi, split), split)
        t2 = time.perf_counter()
        times["whole"].append(t1 - t0)
        times["edge+server"].append(t2 - t1)
    whole, parts = (1e3 * np.median(times[k]) for k in ("whole", "edge+server"))
    print(f"\n#### split overhead, {w}x{h}, CPU\n\n| path | median ms |\n|---|---|\n"
          f"| whole network | {whole:.1f} |\n| edge + server | {parts:.1f} |\n"
          f"| ratio | {parts / whole:.3f} |")


if __name__ == "__main__":
    main()
