"""`mtl-split train-eb`: entropy-coded codecs (eb-<k>/1) for a trained model: fine-tune
its split bottleneck with a rate term at several operating points, freeze the tables into a new
model card (mtl_split_core/train_entropy.py); ``--context`` / ``--context-only`` add context
tables (ebc-<k>/1, mtl_split_core/context_tables.py); ``--temporal-context`` adds temporal
context tables (t<N>-c<H>-ebc-<k>/1, mtl_split_core/temporal_context.py) fitted to sequences."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from mtl_split_core.cli.arguments import (
    non_negative_float,
    non_negative_int,
    output_folder,
    positive_float,
    positive_int,
)
from mtl_split_core.cli.datasets import DATA_HELP
from mtl_split_core.codec import CODECS, ENTROPY_CODECS, entropy_point
from mtl_split_core.entropy_tables import MAX_OPERATING_POINTS, tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.train_entropy import DEFAULT_ANCHOR, DEFAULT_SHAPE_BYTES, DEFAULT_TARGETS


def byte_targets(text: str) -> list[float]:
    """--targets: ascending bytes per frame, e.g. 300,450,600,800,1200,3000."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not 1 <= len(values) <= MAX_OPERATING_POINTS or any(not 20 <= v <= 1e6 for v in values) \
            or sorted(set(values)) != values:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 1..{MAX_OPERATING_POINTS} ascending distinct byte counts in "
            f"[20, 1e6], e.g. 300,800,3000")
    return values


def byte_range(text: str) -> tuple[float, float] | None:
    """--shape-bytes: LO,HI bytes per frame (LO <= HI), or 'all' (None: no range)."""
    if text == "all":
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo, hi = math.nan, math.nan
    if not 0 <= lo <= hi <= 1e6:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO,HI bytes with 0 <= LO <= HI "
                                         f"<= 1e6, e.g. 400,1500, or 'all'")
    return lo, hi


def point_list(text: str) -> list[int]:
    """--temporal-points: distinct operating points, e.g. 3 or 2,3."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or len(set(values)) != len(values) or any(
            not 0 <= v < MAX_OPERATING_POINTS for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct operating points in "
                                         f"0..{MAX_OPERATING_POINTS - 1}, e.g. 3 or 2,3")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model to start from (folder or name); '' = the "
                   "packaged default")
    p.add_argument("--data", "--shards", dest="data", action="append", default=None,
                   metavar="[FORMAT:]PATH[@WEIGHT]",
                   help=f"{DATA_HELP} (required unless --temporal-context)")
    p.add_argument("--out", type=output_folder, required=True,
                   help="output folder (model/, entropy_model.pt, result.json), written whole")
    p.add_argument("--targets", type=byte_targets, default=list(DEFAULT_TARGETS),
                   help="bytes per frame of each operating point eb-0/1, eb-1/1, ... "
                   f"(ascending; default {','.join(f'{v:g}' for v in DEFAULT_TARGETS)})")
    p.add_argument("--codec", default=None, choices=(*CODECS, *ENTROPY_CODECS),
                   help="the new card's default codec; default: the model's")
    p.add_argument("--name", default=None, help="model card name; default <model>_eb")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="use at most this many training frames (memory on a CPU)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--points-per-step", type=positive_int, default=None,
                   help="operating points per step, drawn at random (default: all; 1 on a "
                   "CPU is cheaper)")
    p.add_argument("--time-budget", type=positive_float, default=600.0,
                   help="seconds of training steps (the schedule spans them)")
    p.add_argument("--max-steps", type=non_negative_int, default=None,
                   help="0: no joint steps (gains from the rate targets, densities fitted)")
    p.add_argument("--freeze-bottleneck", action="store_true",
                   help="keep the model's bottleneck weights: only gains and densities learn")
    p.add_argument("--lr", type=positive_float, default=3e-4, help="bottleneck learning rate")
    p.add_argument("--distill", type=non_negative_float, default=1.0,
                   help="weight of matching the float model's outputs (0: task losses only)")
    p.add_argument("--anchor", type=non_negative_float, default=DEFAULT_ANCHOR,
                   help="weight of keeping the float network (the unquantized bottleneck's "
                   f"server input) the model's (0: free; default {DEFAULT_ANCHOR:g})")
    p.add_argument("--shape-bytes", type=byte_range, default=DEFAULT_SHAPE_BYTES,
                   metavar="LO,HI", help="only the points whose target lies in LO..HI bytes "
                   "change the shared bottleneck (the others learn gains and densities on it); "
                   "'all': every point (default "
                   f"{','.join(f'{v:g}' for v in DEFAULT_SHAPE_BYTES)})")
    p.add_argument("--context", action="store_true",
                   help="also fit context tables: codecs ebc-<k>/1, the same symbols as "
                   "eb-<k>/1 coded with tables chosen by already decoded neighbours")
    p.add_argument("--context-only", action="store_true",
                   help="no training: copy --model (which has entropy tables) and add context "
                   "tables fitted to the frames (the other training options do not apply)")
    p.add_argument("--temporal-context", default=None, metavar="NPZ",
                   help="no training: copy --model (which has context tables) and add temporal "
                   "context tables (codecs t<N>-c<H>-ebc-<k>/1) fitted to these labelled "
                   "sequences (bench/rate_accuracy.py's cached sequences npz of a training "
                   "seed); --data does not apply")
    p.add_argument("--temporal-points", type=point_list, default=[3], metavar="LIST",
                   help="operating points given temporal tables (default 3; each adds about "
                   "1 MB to the card)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-val", action="store_true", help="skip evaluating the val split")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mtl_split_core.cli.train import load_data
    from mtl_split_core.data.frames import Frames
    from mtl_split_core.data.sources.base import SourceError
    from mtl_split_core.output_folder import atomic_folder
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.model_files import load_model_param, resolve_model_path
    from mtl_split_core.train_entropy import add_context_tables, train_entropy

    if args.temporal_context is not None:
        return _temporal_context(args)
    if not args.data:
        raise InputError("--data is required (unless --temporal-context)")
    base, _ = load_model_param(args.model)
    cfg = base.config
    if cfg.bottlenecks.get(cfg.default_split) is None:
        raise InputError(f"--model {args.model or 'default'}: no bottleneck at its split "
                         f"{cfg.default_split}; entropy coding needs one")
    if args.context_only:
        tables = tables_of(cfg.entropy)
        if tables is None:
            raise InputError(f"--context-only: --model {args.model or 'default'} has no "
                             f"entropy tables (train-eb without --context-only first)")
        offered = (*CODECS, *(f"{f}-{k}/1" for f in ("eb", "ebc")
                              for k in range(len(tables.points))))
        if args.codec is not None and args.codec not in offered:
            raise InputError(f"--codec {args.codec}: the new card's codecs are "
                             f"{', '.join(offered)}")
    elif args.codec in ENTROPY_CODECS and (
            entropy_point(args.codec) >= len(args.targets)  # type: ignore[operator]
            or (args.codec.startswith("ebc-") and not args.context)):
        raise InputError(f"--codec {args.codec}: not among the operating points of --targets "
                         f"({len(args.targets)}{', with --context' if args.context else ''})")
    lists = (cfg.detection_classes, cfg.segmentation_classes)
    frames: Frames = load_data(args.data, "train", cfg.input_size, None, lists).data
    if args.frames is not None and args.frames < len(frames):
        pick = np.random.default_rng(args.seed).choice(len(frames), args.frames, replace=False)
        frames = frames.subset(np.sort(pick))
    # In memory: training precomputes the frozen prefix's features of every frame anyway.
    data = frames.to_dict()
    if args.context_only:
        del base
        with atomic_folder(args.out) as out:
            card = add_context_tables(resolve_model_path(args.model), data, out,
                                      name=args.name, codec=args.codec,
                                      log=lambda line: print(line, flush=True))
        print("RESULT " + json.dumps({"fingerprint": card["fingerprint"]}))
        return 0
    val = None
    if not args.no_val:
        try:
            val = load_data(args.data, "val", cfg.input_size, None, lists).data.to_dict()
        except SourceError as err:
            print(f"no validation: {err}")
    device = str(resolve_device(args.device))
    print(f"train frames {len(data['images'])}, val frames "
          f"{0 if val is None else len(val['images'])}, device {device}", flush=True)
    del base
    with atomic_folder(args.out) as out:
        result = train_entropy(
            resolve_model_path(args.model), data, out, targets=args.targets, device=device,
            batch_size=args.batch_size, points_per_step=args.points_per_step,
            time_budget_s=args.time_budget, max_steps=args.max_steps, lr=args.lr,
            distill=args.distill, anchor=args.anchor, shape_bytes=args.shape_bytes,
            seed=args.seed, name=args.name, codec=args.codec,
            freeze_bottleneck=args.freeze_bottleneck, context=args.context, val_data=val,
            log=lambda line: print(line, flush=True))
        summary = {"fingerprint": result["card"]["fingerprint"],
                   "training": result["training"].__dict__, "val": result["val"]}
        (Path(out) / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("RESULT " + json.dumps(summary))
    return 0


def _temporal_context(args: argparse.Namespace) -> int:
    from mtl_split_core.data.sim_sequences import load_frames
    from mtl_split_core.output_folder import atomic_folder
    from mtl_split_core.runtime.model_files import resolve_model_path
    from mtl_split_core.train_entropy import add_temporal_context_tables

    sequences = load_frames(args.temporal_context)  # InputError for a file that is not one
    with atomic_folder(args.out) as out:
        card = add_temporal_context_tables(resolve_model_path(args.model), sequences,
                                           args.temporal_points, out, name=args.name,
                                           codec=args.codec,
                                           log=lambda line: print(line, flush=True))
    print("RESULT " + json.dumps({"fingerprint": card["fingerprint"]}))
    return 0
