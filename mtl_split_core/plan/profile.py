"""Measured profiles: per split point and codec, edge time, server time and bytes per frame,
plus the two baselines (whole model on the edge; JPEG upload + whole model on the server).

A profile is measured on one device (``mtl-split profile --device cuda``) and saved as JSON,
so a robot's profile (edge times) and a server's profile (server times) can be combined.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mtl_split_core.codec import CODECS, decode, encode
from mtl_split_core.preprocess import letterbox_tensor

PROFILE_VERSION = 1


def _timed(fn, sync, repeats):
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(out))


@torch.inference_mode()
def measure_profile(model, card: dict, frames: list[np.ndarray], device: str = "cpu",
                    repeats: int = 10, codecs=CODECS) -> dict:
    dev = torch.device(device)
    model = model.to(dev).eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    size = tuple(card["input_size"])
    xs = [letterbox_tensor(torch.from_numpy(f).to(dev), size)[0][None] for f in frames]
    x = xs[0]
    for _ in range(3):
        model(x)
    splits = {}
    for split in model.split_names:
        z = model.edge(x, split)
        entry = {"edge_ms": _timed(lambda: model.edge(x, split), sync, repeats),
                 "server_ms": _timed(lambda: model.server(z, split), sync, repeats),
                 "shape": list(z.shape[1:]), "codecs": {}}
        for codec in codecs:
            encs = [encode(model.edge(xi, split)[0], codec) for xi in xs]
            entry["codecs"][codec] = {
                "bytes": float(np.mean([e.nbytes for e in encs])),
                "encode_ms": _timed(lambda: encode(z[0], codec), sync, repeats),
                "decode_ms": _timed(lambda: decode(encs[0]), lambda: None, repeats)}
        splits[split] = entry
    jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
             for f in frames]
    return {
        "version": PROFILE_VERSION,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
        f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
        "model": card.get("name"), "fingerprint": card.get("fingerprint"),
        "source_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "whole_ms": _timed(lambda: model(x), sync, repeats),
        "jpeg": {"bytes": float(np.mean([len(j) for j in jpegs])),
                 "encode_ms": _timed(lambda: cv2.imencode(
                     ".jpg", frames[0], [cv2.IMWRITE_JPEG_QUALITY, 90]), lambda: None, repeats),
                 "decode_ms": _timed(lambda: cv2.imdecode(jpegs[0], cv2.IMREAD_COLOR),
                                     lambda: None, repeats)},
        "splits": splits,
    }


def save_profile(profile: dict, path) -> None:
    Path(path).write_text(json.dumps(profile, indent=2))


def load_profile(path) -> dict:
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"profile {path}: cannot read: {err}") from None
    if profile.get("version") != PROFILE_VERSION or "splits" not in profile:
        raise ValueError(f"profile {path}: version {profile.get('version')!r} is not "
                         f"{PROFILE_VERSION} or it has no 'splits'")
    return profile


def load_jpeg_frames(path) -> list[np.ndarray]:
    """RGB frames from an npz of concatenated JPEGs (``jpeg``) with ``offsets`` — a compact
    way to carry real frames to a machine without the simulator (bench/frames.npz)."""
    z = np.load(path)
    return [cv2.imdecode(z["jpeg"][o:e], cv2.IMREAD_COLOR)[..., ::-1].copy()
            for o, e in zip(z["offsets"][:-1], z["offsets"][1:])]
