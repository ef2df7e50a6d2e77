"""`mtl-split profile`: measure a model's per-split timings and bytes on one device."""

from __future__ import annotations

import argparse

from mtl_split_core.cli.arguments import output_file, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model folder or name; '' = the packaged default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=positive_int, default=6,
                   help="sim frames (640x480) to measure on")
    p.add_argument("--images", default=None,
                   help="npz of JPEG frames to use instead of rendering (bench/frames.npz)")
    p.add_argument("--repeats", type=positive_int, default=10)
    p.add_argument("--out", type=output_file, required=True, help="profile JSON to write")


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.plan.profile import profile_model, save_profile

    profile = profile_model(args.model, args.device, args.frames, args.repeats, args.images)
    save_profile(profile, args.out)
    print(f"profile of {profile['model']} on {profile['device']} -> {args.out}")
    return 0
