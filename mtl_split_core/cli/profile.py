"""`mtl-split profile`: measure a model's per-split timings and bytes on one device."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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


def profile_model(model: str, device: str = "cpu", frames: int = 6, repeats: int = 10,
                  images: str | Path | None = None) -> dict[str, Any]:
    """Load ``model`` (a path, a shipped name, '' for the default) and measure its profile
    on ``frames`` frames: from ``images`` (an npz of JPEGs) or rendered by the simulator."""
    from mtl_split_core.errors import InputError
    from mtl_split_core.plan.profile import (
        SIM_FRAME_SIZE,
        SIM_SEED,
        load_jpeg_frames,
        measure_profile,
    )
    from mtl_split_core.runtime.device import resolve_device
    from mtl_split_core.runtime.model_files import load_model_param

    if frames < 1 or repeats < 1:
        raise InputError(f"frames ({frames}) and repeats ({repeats}) must be >= 1")
    net, card = load_model_param(model)
    if images:
        rgb = load_jpeg_frames(images)[:frames]
    else:
        from mtl_split_core.sim.scene import SimScene
        with SimScene(SIM_SEED, *SIM_FRAME_SIZE) as scene:
            rgb = [scene.render().rgb for _ in range(frames)]
    return measure_profile(net, card, rgb, str(resolve_device(device)), repeats)


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.plan.profile import save_profile

    profile = profile_model(args.model, args.device, args.frames, args.repeats, args.images)
    save_profile(profile, args.out)
    print(f"profile of {profile['model']} on {profile['device']} -> {args.out}")
    return 0
