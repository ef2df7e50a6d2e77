"""`mtl-split eval`: detection mAP, segmentation mIoU, depth metrics for a split and codec."""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--model", default="", help="model folder; '' = the packaged default")
    p.add_argument("--data", "--shards", dest="shards", required=True,
                   help="dataset folder (gen-data output) or folder of shard_*.npz")
    p.add_argument("--split-set", default="test", choices=("train", "val", "test"))
    p.add_argument("--split", default=None, help="split point; default: the model's")
    p.add_argument("--codec", default="all",
                   help="float, a codec id (q8-zstd/1, ...), or 'all' for float + every codec")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write the results as JSON here")


def run(args) -> int:
    from mtl_split_core.codec import CODECS
    from mtl_split_core.data.dataset import load_dataset
    from mtl_split_core.evaluate import evaluate, headline
    from mtl_split_core.model import load_model
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.models import resolve_model_path

    model, card = load_model(resolve_model_path(args.model))
    data = load_dataset(args.shards, (args.split_set,))
    codecs = [None, *CODECS] if args.codec == "all" else \
        [None if args.codec == "float" else args.codec]
    results = []
    print(f"{card['name']} on {len(data['images'])} {args.split_set} frames")
    print("| codec | bytes/frame | mAP@0.5 | mAP@0.5:0.95 | mIoU | delta<1.25 | AbsRel |")
    print("|---|---|---|---|---|---|---|")
    for codec in codecs:
        r = evaluate(model, data, args.split, codec, resolve_device(args.device))
        h = headline(r)
        results.append(r)
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {codec or 'float (unsplit)'} | {r.get('bytes_per_frame', 0):.0f} | "
              f"{fmt(h['mAP50'])} | {fmt(h['mAP50_95'])} | {fmt(h['mIoU'])} | "
              f"{fmt(h['delta1'])} | {fmt(h['abs_rel'])} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
