"""Measured profiles: per split point and codec, edge time, server time and bytes per frame,
plus the two baselines (whole model on the edge; JPEG upload + whole model on the server),
and split ``input`` (image upload, ``image_codec.py``) per image codec, an option like a split.

A profile is measured on one device (``mtl-split profile --device cuda``) and saved as JSON,
so a robot's profile (edge times) and a server's profile (server times) can be combined.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from mtl_split_core.codec import CODECS, decode, encode
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.image_codec import (
    PROFILED_IMAGE_CODECS,
    decode_image,
    encode_image,
    is_image_codec,
    to_uint8,
)
from mtl_split_core.preprocess import letterbox_tensor

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet

PROFILE_VERSION = 1
SIM_FRAME_SIZE = (640, 480)  # frames rendered to profile on when none are given
SIM_SEED = 21


def _no_sync() -> None:
    """CPU work is done when the call returns: nothing to wait for."""


def _timed(fn: Callable[[], object], sync: Callable[[], object], repeats: int) -> float:
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(out))


@torch.inference_mode()
def measure_profile(model: MultiTaskSplitNet, card: dict[str, Any], frames: list[np.ndarray],
                    device: str = "cpu", repeats: int = 10,
                    codecs: Sequence[str] = CODECS,
                    image_codecs: Sequence[str] = PROFILED_IMAGE_CODECS) -> dict[str, Any]:
    """Median edge/server/encode/decode times and mean bytes per split and codec on
    ``device``, plus the local-only and JPEG-upload baselines, and ``input`` (image upload)
    for each of ``image_codecs`` this build has. ``codecs`` at every split, and at the split
    of the model's entropy tables (if it has them) its entropy-coded codecs ``eb-<k>/1`` too:
    every codec the model offers has its measured bytes and times."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else _no_sync
    size = tuple(card["input_size"])
    xs = [letterbox_tensor(torch.from_numpy(f).to(dev), size)[0][None] for f in frames]
    x = xs[0]
    for _ in range(3):
        model(x)
    tables = tables_of(model.config.entropy)
    splits = {}
    for split in model.split_names:
        z = model.edge(x, split)
        entry: dict[str, Any] = {
            "edge_ms": _timed(partial(model.edge, x, split), sync, repeats),
            "server_ms": _timed(partial(model.server, z, split), sync, repeats),
            "shape": list(z.shape[1:]), "codecs": {}}
        coded = tables if tables is not None and tables.split == split else None
        for codec in (*codecs, *(coded.codec_ids if coded is not None else ())):
            encs = [encode(model.edge(xi, split)[0], codec, tables=coded) for xi in xs]
            entry["codecs"][codec] = {
                "bytes": float(np.mean([e.nbytes for e in encs])),
                "encode_ms": _timed(partial(encode, z[0], codec, tables=coded), sync, repeats),
                "decode_ms": _timed(partial(decode, encs[0], tables=coded), _no_sync, repeats)}
        splits[split] = entry
    whole_ms = _timed(lambda: model(x), sync, repeats)
    jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
             for f in frames]
    return {
        "version": PROFILE_VERSION,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
        f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
        "model": card.get("name"), "fingerprint": card.get("fingerprint"),
        "source_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "whole_ms": whole_ms,
        "jpeg": {"bytes": float(np.mean([len(j) for j in jpegs])),
                 "encode_ms": _timed(lambda: cv2.imencode(
                     ".jpg", frames[0], [cv2.IMWRITE_JPEG_QUALITY, 90]), _no_sync, repeats),
                 "decode_ms": _timed(lambda: cv2.imdecode(jpegs[0], cv2.IMREAD_COLOR),
                                     _no_sync, repeats)},
        "splits": splits,
        "input": _measure_input(xs, [c for c in image_codecs if is_image_codec(c)], whole_ms,
                                sync, dev, repeats),
    }


def _measure_input(xs: list[torch.Tensor], codecs: list[str], whole_ms: float,
                   sync: Callable[[], object], dev: torch.device, repeats: int
                   ) -> dict[str, Any]:
    """Split ``input`` as a split entry: edge = the letterboxed batch to the uint8 image on the
    host (the prefix a split runs is none here), encode = the image codec, decode = image
    codec + the float tensor on ``dev``, server = the whole network (``whole_ms``)."""
    x = xs[0][0]
    image = to_uint8(x).cpu().numpy()
    size = (image.shape[1], image.shape[0])
    entry: dict[str, Any] = {
        "edge_ms": _timed(lambda: to_uint8(x).cpu().numpy(), sync, repeats),
        "server_ms": whole_ms, "shape": [3, size[1], size[0]], "codecs": {}}

    def to_network(data: bytes, codec: str) -> torch.Tensor:
        decoded = torch.from_numpy(decode_image(data, codec, size))
        return decoded.to(dev).permute(2, 0, 1).float().div_(255.0)

    for codec in codecs:
        files = [encode_image(to_uint8(xi[0]).cpu().numpy(), codec) for xi in xs]
        entry["codecs"][codec] = {
            "bytes": float(np.mean([len(f) for f in files])),
            "encode_ms": _timed(partial(encode_image, image, codec), _no_sync, repeats),
            "decode_ms": _timed(partial(to_network, files[0], codec), sync, repeats)}
    return entry


def save_profile(profile: dict[str, Any], path: str | Path) -> None:
    """Write a profile as JSON."""
    Path(path).write_text(json.dumps(profile, indent=2))


def load_profile(path: str | Path) -> dict[str, Any]:
    """A profile written by ``save_profile``; InputError if unreadable or of another version."""
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"profile {path}: cannot read: {err}") from None
    if not isinstance(profile, dict) or profile.get("version") != PROFILE_VERSION \
            or "splits" not in profile:
        version = profile.get("version") if isinstance(profile, dict) else None
        raise InputError(f"profile {path}: version {version!r} is not "
                         f"{PROFILE_VERSION} or it has no 'splits'")
    return profile


def load_jpeg_frames(path: str | Path) -> list[np.ndarray]:
    """RGB frames from an npz of concatenated JPEGs (``jpeg``) with ``offsets`` — a compact
    way to carry real frames to a machine without the simulator (bench/frames.npz)."""
    try:
        z = np.load(path)
        jpeg, offsets = z["jpeg"], z["offsets"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"images {path}: not an npz with 'jpeg' and 'offsets': {err}") from None
    frames: list[np.ndarray] = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        bgr = cv2.imdecode(jpeg[start:end], cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"images {path}: frame {len(frames)} is not a JPEG")
        frames.append(bgr[..., ::-1].copy())
    return frames
