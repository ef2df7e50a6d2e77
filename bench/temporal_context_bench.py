"""Temporal codecs on 30 fps sequences, as an edge streams them: bytes per frame and encode /
decode time per frame on this CPU (the conditional ``t<N>-c<H>-ebc-<k>/1`` against the skip
codec ``t<N>-s<T>-ebc-<k>/1`` and per-frame ``ebc-<k>/1``, entropy_codec_bench.py's pattern).
A conditional codec with hold 0 must decode every frame to exactly ebc-<k>'s tensor; the bench
stops if one does not.

    python bench/temporal_context_bench.py --model models/default \
        --sequences data/rate_accuracy/v2_sequences_seed23_n150_g50_640x480_320x240_noise0.npz

The tensors are the model's edge output at its split for every frame of the sequences npz
(bench/rate_accuracy.py's cache); each codec streams every sequence ``--repeats`` times (a new
encoder and decoder each time), the table gives the median over passes of the mean per frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
from entropy_codec_bench import run_header, write_report  # noqa: E402

from mtl_split_core.codec import decode, encode  # noqa: E402
from mtl_split_core.data.sim_sequences import load_frames  # noqa: E402
from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402
from mtl_split_core.temporal_codec import (  # noqa: E402
    TemporalDecoder,
    TemporalEncoder,
    is_temporal,
)

DEFAULT_CODECS = ("ebc-3/1", "t30-s50-ebc-3/1", "t30-c0-ebc-3/1", "t30-c250-ebc-3/1",
                  "t30-c500-ebc-3/1")


def stream_pass(codec: str, sequences: list[np.ndarray], tables) -> tuple[list, list, list,
                                                                          list]:
    """One pass over every sequence: (sizes, encode s, decode s, decoded tensors) per frame."""
    sizes, enc_s, dec_s, out = [], [], [], []
    for seq in sequences:
        temporal = is_temporal(codec)
        enc = TemporalEncoder(codec, tables) if temporal else None
        dec = TemporalDecoder() if temporal else None
        for x in seq:
            t0 = time.perf_counter()
            e = enc.encode(x) if enc is not None else encode(x, codec, tables=tables)
            t1 = time.perf_counter()
            y = dec.decode(e, tables=tables) if dec is not None else decode(e, tables=tables)
            t2 = time.perf_counter()
            sizes.append(e.nbytes)
            enc_s.append(t1 - t0)
            dec_s.append(t2 - t1)
            out.append(y)
    return sizes, enc_s, dec_s, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--sequences", required=True, help="a labelled sequences npz")
    ap.add_argument("--codecs", default=",".join(DEFAULT_CODECS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/temporal_context_codec.md")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    model, card = load_model_param(args.model)
    cfg = model.config
    tables = tables_of(cfg.entropy)
    data = load_frames(args.sequences)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        z = torch.cat([model.edge(images[i:i + 32], cfg.default_split)
                       for i in range(0, len(images), 32)]).numpy()
    groups = data["group_of"]
    sequences = [z[groups == g] for g in dict.fromkeys(groups.tolist())]
    rows = []
    per_frame: dict[str, list[np.ndarray]] = {}
    for codec in args.codecs.split(","):
        passes = [stream_pass(codec, sequences, tables) for _ in range(args.repeats)]
        sizes, _, _, per_frame[codec] = passes[0]
        base = codec.split("-", 2)[2] if is_temporal(codec) else None
        if base and "-c0-" in codec and base in per_frame and not all(
                np.array_equal(a, b) for a, b in zip(per_frame[codec], per_frame[base])):
            raise SystemExit(f"{codec} decodes differently from {base}")
        rows.append((codec, statistics.mean(sizes),
                     statistics.median(1e3 * statistics.mean(p[1]) for p in passes),
                     statistics.median(1e3 * statistics.mean(p[2]) for p in passes),
                     statistics.median(1e3 * max(p[1]) for p in passes),
                     statistics.median(1e3 * max(p[2]) for p in passes)))
    shape = "x".join(map(str, z.shape[1:]))
    lines = [
        *run_header(load),
        f"Model: {card['name']}, fingerprint `{card['fingerprint']}`; split "
        f"{cfg.default_split}, tensor {shape}; {len(sequences)} sequences, {len(z)} frames "
        f"({Path(args.sequences).name}); median of {args.repeats} passes",
        "",
        "| codec | bytes/frame | encode ms/frame | decode ms/frame | slowest encode ms | "
        "slowest decode ms |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {c} | {b:,.0f} | {e:.3f} | {d:.3f} | {em:.3f} | {dm:.3f} |"
          for c, b, e, d, em, dm in rows],
    ]
    return write_report(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
