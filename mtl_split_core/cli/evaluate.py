"""`mtl-split eval`: detection mAP, segmentation mIoU, depth metrics for a split and codec."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from mtl_split_core.cli.arguments import output_file
from mtl_split_core.cli.datasets import DATA_HELP, data_spec
from mtl_split_core.cli.train import load_data
from mtl_split_core.codec import CODECS, ENTROPY_CODECS, split_codecs
from mtl_split_core.data.sources.base import SPLITS
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.image_codec import INPUT_SPLIT, PROFILED_IMAGE_CODECS, is_image_codec

# The default split to score, in order of preference: held-out data first.
DEFAULT_SPLIT_ORDER = ("test", "val")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model folder or name; '' = the packaged default")
    p.add_argument("--data", "--shards", dest="data", action="append", required=True,
                   metavar="[FORMAT:]PATH[@WEIGHT]", help=DATA_HELP)
    p.add_argument("--class-map", default=None, metavar="FILE",
                   help='JSON {"source class": "model class" | null}: source classes onto the '
                   "model's (classes the model lacks are ignored)")
    p.add_argument("--split-set", default=None, choices=SPLITS,
                   help="which split of the --data to score; default: one every data set has "
                   "labels for, test where they all do (Cityscapes labels only train and val: "
                   "val, or test with cityscapes:PATH?test=val)")
    p.add_argument("--split", default=None, help="split point, or input (image upload: the "
                   "model-input image through an image codec); default: the model's")
    p.add_argument("--codec", default="all", type=codec_choice,
                   help=f"float, a codec id ({', '.join(CODECS)}; eb-<k>/1, ebc-<k>/1: a "
                   f"model with entropy tables; at --split {INPUT_SPLIT} an "
                   f"image codec like webp-q80/1), or 'all' for float + every codec (at "
                   f"--split {INPUT_SPLIT}: {', '.join(PROFILED_IMAGE_CODECS)})")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=output_file, default=None, help="write the results as JSON here")
    p.add_argument("--into-card", action="store_true",
                   help="also write the results into the model's card (metrics: accuracy per "
                   "split and codec; the edge's accuracy floor reads them)")


def codec_choice(value: str) -> str:
    """``--codec``: all, float, a feature codec or an image codec id."""
    if value in ("all", "float", *CODECS, *ENTROPY_CODECS) or is_image_codec(value):
        return value
    raise argparse.ArgumentTypeError(
        f"{value!r}: expected all, float, one of {', '.join(CODECS)}, eb-<k>/1 or ebc-<k>/1 "
        f"(k < {len(ENTROPY_CODECS) // 2}) or an image codec like webp-q80/1")


def codecs_to_score(split: str | None, codec: str,
                    feature_codecs: Sequence[str] = CODECS) -> list[str | None]:
    """The codecs ``--codec`` names for ``--split`` (None = float, the unsplit model), of the
    model's ``feature_codecs`` there; InputError for a codec of the other kind (image codecs
    go with split input) or one the model lacks."""
    upload = split == INPUT_SPLIT
    if codec == "all":
        return [None, *(PROFILED_IMAGE_CODECS if upload else feature_codecs)]
    if codec == "float":
        return [None]
    if is_image_codec(codec) != upload:
        raise InputError(f"--codec {codec}: image codecs go with --split {INPUT_SPLIT}, "
                         f"feature codecs ({', '.join(feature_codecs)}) with the model's splits")
    if not upload and codec not in feature_codecs:
        raise InputError(f"--codec {codec}: this model has {', '.join(feature_codecs)} at "
                         f"split {split or 'its default'}")
    return [codec]


def split_to_score(data: list[str], requested: str | None) -> str:
    """``--split-set``, checked against the splits each ``--data`` labels; without it the
    first of ``DEFAULT_SPLIT_ORDER`` that all of them label."""
    specs = [data_spec(v) for v in data]
    labelled = {f"{s.format}:{s.path}": s.labelled_splits() for s in specs}

    def listing() -> str:
        return "; ".join(f"{name} labels {', '.join(splits)}"
                         for name, splits in labelled.items())
    if requested is not None:
        missing = [name for name, splits in labelled.items() if requested not in splits]
        if missing:
            raise InputError(f"--split-set {requested}: {listing()}")
        return requested
    common = next((s for s in DEFAULT_SPLIT_ORDER
                   if all(s in splits for splits in labelled.values())), None)
    if common is None:
        raise InputError(f"--split-set: no split is labelled in every --data ({listing()}); "
                         "choose one")
    return common


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.evaluate import evaluate, headline
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.model_files import load_model_param

    split_set = split_to_score(args.data, args.split_set)  # before the slow model load
    model, card = load_model_param(args.model)
    device = resolve_device(args.device)
    if args.split not in (None, INPUT_SPLIT, *model.split_names):
        raise InputError(f"split {args.split!r}: this model splits at {list(model.split_names)} "
                         f"(or {INPUT_SPLIT}: image upload)")
    cfg = model.config
    codecs = codecs_to_score(args.split, args.codec, split_codecs(
        tables_of(cfg.entropy), args.split or cfg.default_split))
    # The model's class lists: every source's classes are mapped onto them by name.
    data = load_data(args.data, split_set, cfg.input_size, args.class_map,
                     (cfg.detection_classes, cfg.segmentation_classes)).data
    results = []
    print(f"{card['name']} on {len(data)} {split_set} frames")
    print("| codec | bytes/frame | mAP@0.5 | mAP@0.5:0.95 | mIoU | delta<1.25 | AbsRel |")
    print("|---|---|---|---|---|---|---|")
    for codec in codecs:
        # float is the unsplit model: at split input, the model's default split uncoded
        split = None if codec is None and args.split == INPUT_SPLIT else args.split
        r = evaluate(model, data, split, codec, device)
        h = headline(r)
        results.append(r)
        print(f"| {codec or 'float (unsplit)'} | {r.get('bytes_per_frame', 0):.0f} | "
              f"{_cell(h['mAP50'])} | {_cell(h['mAP50_95'])} | {_cell(h['mIoU'])} | "
              f"{_cell(h['delta1'])} | {_cell(h['abs_rel'])} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    if args.into_card:
        from mtl_split_core.model.card import write_card_metrics
        from mtl_split_core.runtime.model_files import resolve_model_path

        folder = resolve_model_path(args.model)
        try:
            write_card_metrics(folder, results, ", ".join(args.data), split_set)
        except OSError as err:
            raise InputError(f"--into-card: cannot write {folder}: {err}") from None
        print(f"metrics written into {folder / 'card.json'}")
    return 0
