"""`mtl-split eval`: detection mAP, segmentation mIoU, depth metrics for a split and codec."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_split_core.cli.arguments import output_file
from mtl_split_core.cli.datasets import DATA_HELP
from mtl_split_core.cli.train import load_data
from mtl_split_core.codec import CODECS, ENTROPY_CODECS, model_codecs
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model folder or name; '' = the packaged default")
    p.add_argument("--data", "--shards", dest="data", action="append", required=True,
                   metavar="[FORMAT:]PATH[@WEIGHT]", help=DATA_HELP)
    p.add_argument("--class-map", default=None, metavar="FILE",
                   help='JSON {"source class": "model class" | null}: source classes onto the '
                   "model's (classes the model lacks are ignored)")
    p.add_argument("--split-set", default="test", choices=("train", "val", "test"))
    p.add_argument("--split", default=None, help="split point; default: the model's")
    p.add_argument("--codec", default="all", choices=("all", "float", *CODECS, *ENTROPY_CODECS),
                   help="float, a codec id (eb-<k>/1: a model with entropy tables), or 'all' "
                   "for float + every codec of the model at that split")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=output_file, default=None, help="write the results as JSON here")


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.evaluate import evaluate, headline
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.model_files import load_model_param

    model, card = load_model_param(args.model)
    device = resolve_device(args.device)
    if args.split is not None and args.split not in model.split_names:
        raise InputError(f"split {args.split!r}: this model splits at {list(model.split_names)}")
    cfg = model.config
    # The model's class lists: every source's classes are mapped onto them by name.
    data = load_data(args.data, args.split_set, cfg.input_size, args.class_map,
                     (cfg.detection_classes, cfg.segmentation_classes)).data
    tables = tables_of(cfg.entropy)
    if tables is not None and (args.split or cfg.default_split) != tables.split:
        tables = None  # entropy tables code their own split only
    if args.codec not in ("all", "float", *model_codecs(tables)):
        raise InputError(f"codec {args.codec}: this model has {', '.join(model_codecs(tables))} "
                         f"at split {args.split or cfg.default_split}")
    codecs = [None, *model_codecs(tables)] if args.codec == "all" else \
        [None if args.codec == "float" else args.codec]
    results = []
    print(f"{card['name']} on {len(data['images'])} {args.split_set} frames")
    print("| codec | bytes/frame | mAP@0.5 | mAP@0.5:0.95 | mIoU | delta<1.25 | AbsRel |")
    print("|---|---|---|---|---|---|---|")
    for codec in codecs:
        r = evaluate(model, data, args.split, codec, device)
        h = headline(r)
        results.append(r)
        print(f"| {codec or 'float (unsplit)'} | {r.get('bytes_per_frame', 0):.0f} | "
              f"{_cell(h['mAP50'])} | {_cell(h['mAP50_95'])} | {_cell(h['mIoU'])} | "
              f"{_cell(h['delta1'])} | {_cell(h['abs_rel'])} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0
