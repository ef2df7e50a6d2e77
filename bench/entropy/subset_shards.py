"""Copy the frames of one split (optionally the first N) of a folder of sim shards into a new
folder, byte for byte (the encoded images are not re-encoded): a smaller carry for the GPU run,
e.g. only the 2,400 train frames of the seed-31 shards (26 of their 33 MB), so the working tree
and the carried data stay inside the device tool's 64 MiB.

    python bench/entropy/subset_shards.py .carry/entropy/shards_train \
        .carry/entropy/shards_trainonly --split train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from mtl_split_core.data.shards import SPLIT_CODES, _empty, _write  # noqa: E402


def subset(src: Path, out: Path, split: str, frames: int | None) -> int:
    """Write ``out/shard_<i>.npz`` for each shard of ``src`` holding frames of ``split``;
    returns the frames written."""
    out.mkdir(parents=True, exist_ok=True)
    written, shards = 0, 0
    for path in sorted(src.glob("shard_*.npz")):
        with np.load(path) as npz:  # each member read once (an npz reads a key on access)
            z = {k: npz[k] for k in npz.files}
        keep = np.flatnonzero(z["split"] == SPLIT_CODES[split])
        if frames is not None:
            keep = keep[:max(frames - written, 0)]
        if not len(keep):
            continue
        cur = _empty()
        for i in keep:
            for key in ("rgb", "depth", "seg"):
                o = z[key + "_offsets"]
                cur[key].append(z[key][o[i]:o[i + 1]])
            b = z["box_offsets"]
            cur["boxes"].append(z["boxes"][b[i]:b[i + 1]])
            cur["labels"].append(z["labels"][b[i]:b[i + 1]])
            cur["split"].append(z["split"][i])
            cur["k"].append(z["k"][i])
        _write(cur, out / f"shard_{shards:03d}.npz")
        written, shards = written + len(keep), shards + 1
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="folder of shard_*.npz")
    p.add_argument("out", type=Path, help="new folder")
    p.add_argument("--split", choices=sorted(SPLIT_CODES), default="train")
    p.add_argument("--frames", type=int, default=None, help="at most this many (first ones)")
    args = p.parse_args()
    if args.out.exists():
        p.error(f"{args.out} exists")
    n = subset(args.src, args.out, args.split, args.frames)
    print(f"{n} {args.split} frames -> {args.out}")


if __name__ == "__main__":
    main()
