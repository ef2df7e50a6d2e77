"""`mtl-split export`: a model's edge and server halves as ONNX, with an export card."""

from __future__ import annotations

import argparse

from mtl_split_core.cli.arguments import image_size, output_folder, positive_int

# Sim frames rendered for the check (and int8 calibration) when --frames is not given.
DEFAULT_FRAMES = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model folder or name; '' = the packaged default")
    p.add_argument("--split", default="all", help="split point name (s16) or 'all'")
    p.add_argument("--format", default="onnx", choices=("onnx",))
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"),
                   help="int8: static quantisation of the edge (the server stays fp32)")
    p.add_argument("--input", type=image_size, default=None,
                   help="WxH network input (default: the model's; runners use exports at the "
                   "model's size only)")
    p.add_argument("--frames", default=None,
                   help="frames to check against PyTorch and calibrate int8 on: a dataset "
                   "folder or an .npz of JPEGs (bench/frames.npz); default: render sim frames")
    p.add_argument("--count", type=positive_int, default=DEFAULT_FRAMES,
                   help="how many frames to use")
    p.add_argument("--out", type=output_folder, required=True,
                   help="folder to write (new, empty or a previous export, which is "
                   "replaced); runners look in MODEL_DIR/onnx by default")


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.export import ExportError, export_model, sample_frames
    from mtl_split_core.runtime.model_files import load_model_param

    model, card = load_model_param(args.model)
    splits = None if args.split == "all" else [args.split]
    if splits and args.split not in model.split_names:  # before any frame is rendered
        raise ExportError(f"split {args.split!r}: this model splits at "
                          f"{', '.join(model.split_names)} (or all)")
    size = args.input or tuple(card["input_size"])
    frames = sample_frames(args.frames, args.count, size)
    export = export_model(model, card, args.out, splits=splits, precision=args.precision,
                          input_size=size, frames=frames, progress=print)
    print(f"{card.get('name')} ({card['fingerprint']}) {args.precision} "
          f"{size[0]}x{size[1]} -> {args.out}")
    for entry in export["splits"].values():
        for half in ("edge", "server"):
            f = entry[half]
            check = (f"RMS error {f['rel_rms_error']:.2f} of the output's (bound "
                     f"{f['tolerance']})" if "rel_rms_error" in f else
                     f"max |onnx - torch| {f['max_abs_diff']:.2g} (tolerance "
                     f"{f['tolerance']:.2g})")
            print(f"  {f['file']} ({f['precision']}): {check}")
    return 0
