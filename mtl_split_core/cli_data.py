"""`mtl-split gen-data` and `mtl-split pack`: render a sim dataset; pack it into shards."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", default="320x240", help="WxH")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames-per-scene", type=int, default=10)
    p.add_argument("--pack", default=None, help="also pack into shards in this folder")


def run(args) -> int:
    from mtl_split_core.data.shards import pack_shards
    from mtl_split_core.sim.generate import generate_dataset

    w, h = (int(v) for v in args.size.lower().split("x"))
    index = generate_dataset(args.out, args.frames, size=(w, h), seed=args.seed,
                             workers=args.workers, frames_per_scene=args.frames_per_scene)
    print(f"{len(index['images'])} frames, {len(index['annotations'])} boxes -> {args.out}")
    if args.pack:
        shards = pack_shards(args.out, args.pack)
        print(f"{len(shards)} shard(s) -> {args.pack}")
    return 0
