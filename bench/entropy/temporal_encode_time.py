"""Encode time per frame of one temporal codec on the rate-accuracy sequences, with the code of
a given checkout (``--tree``), for before / after pairs on this noisy CPU: run it alternately
for two checkouts and compare the minima (a new encoder per sequence, as an edge starts one).

    for i in 1 2 3; do for t in BEFORE AFTER; do
      python bench/entropy/temporal_encode_time.py --tree $t --codec t30-c0-r100-ebc-3/1; done; done
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEQUENCES = ROOT / "data/rate_accuracy/v2_sequences_seed23_n150_g50_640x480_320x240_noise0.npz"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose code encodes")
    ap.add_argument("--codec", required=True)
    ap.add_argument("--model", type=Path, default=ROOT / "models/default")
    ap.add_argument("--sequences", type=Path, default=SEQUENCES,
                    help="bench/rate_accuracy.py's cached sequences (it renders them)")
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import torch

    import mtl_split_core
    from mtl_split_core.data.sim_sequences import load_frames
    from mtl_split_core.entropy_tables import tables_of
    from mtl_split_core.runtime.model_files import load_model_param
    from mtl_split_core.temporal_codec import TemporalEncoder
    assert Path(mtl_split_core.__file__).resolve().is_relative_to(args.tree.resolve())

    model, _ = load_model_param(str(args.model))
    tables = tables_of(model.config.entropy)
    data = load_frames(args.sequences)
    images, group = data["images"], data["group_of"]
    with torch.inference_mode():
        y = torch.cat([model.edge(torch.from_numpy(images[i:i + 32]).permute(0, 3, 1, 2)
                                  .float() / 255.0, tables.split)
                       for i in range(0, len(images), 32)]).numpy()
    per_frame, size = [], 0
    for _ in range(args.passes):
        encoder, start, size = None, time.perf_counter(), 0
        for f in range(len(y)):
            if encoder is None or group[f] != group[f - 1]:
                encoder = TemporalEncoder(args.codec, tables)
            size += len(encoder.encode(y[f]).data)
        per_frame.append((time.perf_counter() - start) / len(y) * 1e3)
    print(f"{args.tree.resolve().name} {args.codec}: encode ms/frame min {min(per_frame):.3f} "
          f"median {statistics.median(per_frame):.3f}; {size / len(y):.1f} B/frame "
          f"({len(y)} frames, {args.passes} passes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
