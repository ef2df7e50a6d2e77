"""`mtl-split gen-data`: render a simulated dataset, optionally packed into shards."""

from __future__ import annotations

import argparse

from mtl_split_core.cli.arguments import image_size, output_folder, positive_int
from mtl_split_core.sim.styles import STYLES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=positive_int, default=200)
    p.add_argument("--size", type=image_size, default=(320, 240), help="WxH, e.g. 320x240")
    p.add_argument("--out", type=output_folder, required=True, help="dataset folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=positive_int, default=2, help="rendering processes")
    p.add_argument("--frames-per-scene", type=positive_int, default=10)
    p.add_argument("--pack", default=None, help="also pack into shards in this folder")
    p.add_argument("--style", default="default", choices=tuple(STYLES),
                   help="scene style (novel: a look the shipped model never saw)")


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.data.shards import pack_shards
    from mtl_split_core.output_folder import atomic_folder
    from mtl_split_core.sim.generate import generate_dataset

    with atomic_folder(args.out) as out:
        index = generate_dataset(out, args.frames, size=args.size, seed=args.seed,
                                 workers=args.workers, frames_per_scene=args.frames_per_scene,
                                 style=args.style)
    print(f"{len(index['images'])} frames, {len(index['annotations'])} boxes -> {args.out}")
    if args.pack:
        with atomic_folder(args.pack) as pack:
            shards = pack_shards(args.out, pack)
        print(f"{len(shards)} shard(s) -> {args.pack}")
    return 0
