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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from mtl_split_core.data.shards import SPLIT_CODES, subset_shards  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path, help="folder of shard_*.npz")
    p.add_argument("out", type=Path, help="new folder")
    p.add_argument("--split", choices=sorted(SPLIT_CODES), default="train")
    p.add_argument("--frames", type=int, default=None, help="at most this many (first ones)")
    args = p.parse_args()
    if args.out.exists():
        p.error(f"{args.out} exists")
    n = subset_shards(args.src, args.out, args.split, args.frames)
    print(f"{n} {args.split} frames -> {args.out}")


if __name__ == "__main__":
    main()
