"""`mtl-split profile`: measure a model's per-split timings and bytes on one device."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mtl_split_core.cli.arguments import (
    non_negative_int,
    output_file,
    positive_int,
    temporal_codec_ids,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="model folder or name; '' = the packaged default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=positive_int, default=6,
                   help="sim frames (640x480) to measure on")
    p.add_argument("--images", default=None,
                   help="npz of JPEG frames to use instead of rendering (bench/frames.npz)")
    p.add_argument("--repeats", type=positive_int, default=10)
    p.add_argument("--sequences", type=non_negative_int, default=None,
                   help="labelled 30 fps sim sequences to stream the temporal codecs over "
                   "(bytes, times, accuracy against their base); 0: no temporal entry; "
                   "default: plan.profile.SEQUENCES")
    p.add_argument("--sequence-frames", type=positive_int, default=None,
                   help="frames per sequence; default: plan.profile.SEQUENCE_FRAMES")
    p.add_argument("--sequences-from", default=None, metavar="NPZ",
                   help="labelled sequences to use instead of rendering (a machine without the "
                   "simulator): bench/rate_accuracy.py's cached sequences npz")
    p.add_argument("--temporal-codecs", type=temporal_codec_ids, default=None, metavar="LIST",
                   help="comma-separated temporal codec ids to stream (e.g. "
                   "t30-c0-r200-ebc-3/1); default: plan.profile.profiled_temporal_codecs "
                   "(the conditional ones where the model's card has temporal tables)")
    p.add_argument("--out", type=output_file, required=True, help="profile JSON to write")


def profile_model(model: str, device: str = "cpu", frames: int = 6, repeats: int = 10,
                  images: str | Path | None = None, sequences: int = 0,
                  sequence_frames: int = 0, sequences_from: str | Path | None = None,
                  temporal_codecs: list[str] | None = None) -> dict[str, Any]:
    """Load ``model`` (a path, a shipped name, '' for the default) and measure its profile
    on ``frames`` frames: from ``images`` (an npz of JPEGs) or rendered by the simulator;
    its temporal codecs (``temporal``) over the labelled sequences in ``sequences_from``, or
    with ``sequences`` > 0 over that many rendered sim sequences of ``sequence_frames``
    (``temporal_codecs``, None: the model's defaults)."""
    from mtl_split_core.errors import InputError
    from mtl_split_core.plan.profile import (
        SIM_FRAME_SIZE,
        SIM_SEED,
        load_jpeg_frames,
        load_profile_sequences,
        measure_profile,
        render_profile_sequences,
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
    streams = (load_profile_sequences(sequences_from) if sequences_from else
               render_profile_sequences(tuple(card["input_size"]), sequences, sequence_frames)
               if sequences > 0 else None)
    return measure_profile(net, card, rgb, str(resolve_device(device)), repeats,
                           sequences=streams, temporal_codecs=temporal_codecs)


def _simulator() -> bool:
    """Whether the simulator can render here (the GPU machines have no pybullet wheel)."""
    import importlib.util

    return importlib.util.find_spec("pybullet") is not None


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.plan.profile import SEQUENCE_FRAMES, SEQUENCES, save_profile

    sequences = args.sequences
    if sequences is None and not args.sequences_from:
        sequences = SEQUENCES if _simulator() else 0
        if not sequences:
            print("temporal codecs not profiled: no simulator (pybullet) here to render "
                  "sequences; --sequences-from NPZ gives them")
    profile = profile_model(args.model, args.device, args.frames, args.repeats, args.images,
                            sequences or 0, args.sequence_frames or SEQUENCE_FRAMES,
                            args.sequences_from, args.temporal_codecs)
    save_profile(profile, args.out)
    print(f"profile of {profile['model']} on {profile['device']} -> {args.out}")
    return 0
