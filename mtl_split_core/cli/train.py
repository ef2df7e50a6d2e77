"""`mtl-split train`: multi-task (or single-task) training from a dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_split_core.backbones import has_pretrained
from mtl_split_core.cli.arguments import image_size, non_negative_float, output_folder, positive_int
from mtl_split_core.codec import CODECS
from mtl_split_core.errors import InputError
from mtl_split_core.tasks import DEFAULT_TASKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", "--shards", dest="shards", required=True,
                   help="dataset folder (gen-data output) or folder of shard_*.npz")
    p.add_argument("--out", type=output_folder, required=True,
                   help="output folder (model/, train_log.csv)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--split", default="s16", help="split point to train at (s4, s8, s16, s32)")
    p.add_argument("--bottleneck", type=int, default=16,
                   help="bottleneck channels at the split; 0 = none")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help="comma-separated subset (STL: one)")
    p.add_argument("--quant-bits", type=int, default=8, choices=(0, 4, 8),
                   help="fake quantization bits at the split while training (0 = off)")
    p.add_argument("--codec", default="q8-zstd/1", choices=CODECS)
    p.add_argument("--weighting", default="uncertainty", choices=("uncertainty", "fixed"))
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=image_size, default=(320, 240), help="network input WxH")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone init")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--time-budget", type=non_negative_float, default=None,
                   help="stop training after this many seconds (then save and evaluate)")
    p.add_argument("--name", default=None, help="model card name")
    p.add_argument("--depth-reference-focal", type=non_negative_float, default=None,
                   help="focal length (input px) the depth head is calibrated to; default: the "
                   "median of the training frames; 0: depth ignores the camera's focal length")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mtl_split_core.cli.datasets import load_dataset_arg
    from mtl_split_core.model.config import ModelConfig, ModelConfigError
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.train import train

    tasks = tuple(t for t in args.tasks.split(",") if t)
    try:
        config = ModelConfig(
            name=args.name or f"mtl_split_{args.backbone}_{args.split}",
            backbone=args.backbone, input_size=args.size, tasks=tasks,
            bottlenecks={args.split: args.bottleneck or None}, default_split=args.split,
            codec=args.codec, train_quant_bits=args.quant_bits or None)
    except ModelConfigError as err:
        raise InputError(str(err)) from None
    device = str(resolve_device(args.device))
    train_data = load_dataset_arg(args.shards, ("train",))
    val_data = load_dataset_arg(args.shards, ("val",))
    ref = args.depth_reference_focal
    if ref is None:
        ref = round(float(np.median(np.asarray(train_data["k"])[:, 4])), 2)
    config.depth_reference_focal = ref or None
    print(f"train frames {len(train_data['images'])}, val frames {len(val_data['images'])}")
    result = train(config, train_data, val_data, args.out, split=args.split, epochs=args.epochs,
                   batch_size=args.batch_size, lr=args.lr, weighting=args.weighting,
                   device=device,
                   pretrained=not args.no_pretrained and has_pretrained(args.backbone),
                   resume=args.resume, max_steps=args.max_steps,
                   time_budget_s=args.time_budget)
    print("VAL " + json.dumps(result))
    (Path(args.out) / "val_metrics.json").write_text(json.dumps(result, indent=2))
    return 0
