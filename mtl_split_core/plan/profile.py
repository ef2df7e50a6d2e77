"""Measured profiles: per split point and codec, edge time, server time and bytes per frame,
plus the two baselines (whole model on the edge; JPEG upload + whole model on the server),
split ``input`` (image upload, ``image_codec.py``) per image codec, an option like a split,
and ``temporal``: the temporal codecs (``temporal_codec.py``) streamed over labelled 30 fps sim
sequences (``data/sim_sequences.py``): bytes and times per frame averaged over the stream (a
keyframe every N frames), the keyframe's own, and their accuracy against their base codec on the
same frames (``_measure_temporal``).

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
from mtl_split_core.entropy_tables import EntropyTables, tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.image_codec import (
    PROFILED_IMAGE_CODECS,
    decode_image,
    encode_image,
    is_image_codec,
    to_uint8,
)
from mtl_split_core.preprocess import letterbox_tensor
from mtl_split_core.temporal_codec import (
    TemporalDecoder,
    TemporalEncoder,
    is_keyframe,
    parse_temporal,
)

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet

PROFILE_VERSION = 1
SIM_FRAME_SIZE = (640, 480)  # frames rendered to profile on when none are given
SIM_SEED = 21
# Temporal codecs measured by default: the operating points docs/BENCHMARKS.md found to keep
# their base's accuracy on sim sequences (each where the model offers its base codec).
PROFILED_TEMPORAL_CODECS = ("t30-s20-q4-zstd/1", "t30-s50-eb-3/1")
# With a card's temporal context tables, per operating point k that has them: the conditional
# codec without a hold (exactly ebc-k's tensor) and the rate-weighted one at the largest weight
# docs/BENCHMARKS.md ("Rate-distortion symbol choices") found within 0.002 of ebc-k's mIoU and
# δ (r200 saves more bytes at a 3% mIoU loss: `--temporal-codecs` profiles it).
CONDITIONAL_TEMPORAL_CODECS = ("t30-c0-ebc-{k}/1", "t30-c0-r50-ebc-{k}/1")


def profiled_temporal_codecs(tables: EntropyTables | None) -> tuple[str, ...]:
    """The temporal codecs a profile streams by default for a model with ``tables``: the
    fixed ones, and the conditional ones of every operating point with temporal tables."""
    conditional = tuple(codec.format(k=k) for k in range(len(tables.points))
                        if tables.has_temporal(k) for codec in CONDITIONAL_TEMPORAL_CODECS
                        ) if tables is not None else ()
    return PROFILED_TEMPORAL_CODECS + conditional
SEQUENCES = 2          # sim sequences the temporal codecs stream over (scene seeds SIM_SEED+i)
SEQUENCE_FRAMES = 60   # frames per sequence: two keyframe intervals of t30
# Accuracy of a temporal codec against its base on the sequences: the worst relative drop of
# these headline metrics (as planner.accuracy_drops).
HEADLINE_METRICS = (("detection", "mAP50"), ("segmentation", "mIoU"), ("depth", "delta1"))


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
                    image_codecs: Sequence[str] = PROFILED_IMAGE_CODECS,
                    sequences: dict[str, Any] | None = None,
                    temporal_codecs: Sequence[str] | None = None
                    ) -> dict[str, Any]:
    """Median edge/server/encode/decode times and mean bytes per split and codec on
    ``device``, plus the local-only and JPEG-upload baselines, and ``input`` (image upload)
    for each of ``image_codecs`` this build has. ``codecs`` at every split, and at the split
    of the model's entropy tables (if it has them) its entropy-coded codecs ``eb-<k>/1`` too:
    every codec the model offers has its measured bytes and times. With ``sequences``
    (``data.sim_sequences.render_sequences``' dataset dict and groups, under "data" and "groups",
    plus what they are under "about") ``temporal``: each of ``temporal_codecs`` (None: the
    model's ``profiled_temporal_codecs``) at every split the model serves (``served_splits``)
    where it offers the codec's base (``_measure_temporal``)."""
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
        **({} if sequences is None else {"temporal": _measure_temporal(
            model, sequences, served_splits(card, list(model.split_names)),
            profiled_temporal_codecs(tables) if temporal_codecs is None else temporal_codecs,
            tables, sync, dev)}),
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


def served_splits(card: dict[str, Any], split_names: list[str]) -> list[str]:
    """The splits the model was trained to serve: the card's ``trained.splits``, else its one
    trained split, else its default split (the edge's controller never picks another). A
    single-split model run at another split point runs later stages on features they never
    saw: no operating point."""
    trained = card.get("trained") or {}
    splits = trained.get("splits") or [trained.get("split") or card.get("default_split")]
    return [s for s in split_names if s in splits] or \
        ([card["default_split"]] if card.get("default_split") else list(split_names))


def _measure_temporal(model: MultiTaskSplitNet, sequences: dict[str, Any], at: list[str],
                      codecs: Sequence[str], tables: EntropyTables | None,
                      sync: Callable[[], object], dev: torch.device) -> dict[str, Any]:
    """Each temporal codec streamed over the sequences (a new stream per sequence, as after a
    switch), per split of ``at`` where the model offers its base: per frame ``bytes``, ``encode_ms``
    (the edge's encoder, which also tracks the decoder's reconstruction) and ``decode_ms``
    averaged over the stream, keyframes included, and ``keyframe``'s own means (a stream starts
    with one: a switch into the codec costs one); ``accuracy_vs_base``: the worst relative
    drop of the headline metrics against the per-frame base codec on the same frames
    (``evaluate`` with the sequences as groups; negative: the stream scored higher)."""
    from mtl_split_core.evaluate import evaluate

    data, groups = sequences["data"], list(sequences["groups"])
    images = torch.from_numpy(np.asarray(data["images"])).to(dev)
    splits: dict[str, Any] = {}
    scored: dict[tuple[str, str], dict[str, Any]] = {}  # (split, codec) -> evaluate's result

    def result(split: str, codec: str) -> dict[str, Any]:  # the model's tables at their split
        if (split, codec) not in scored:
            scored[split, codec] = evaluate(model, data, split, codec, dev, groups=groups)
        return scored[split, codec]

    for split in at:
        offered = (*CODECS, *(tables.codec_ids if tables is not None and tables.split == split
                              else ()))
        coded = tables if tables is not None and tables.split == split else None
        entry: dict[str, Any] = {}
        for codec in codecs:
            spec = parse_temporal(codec)
            if spec.base not in offered:
                continue
            frames: dict[bool, list[tuple[int, float, float]]] = {True: [], False: []}
            for start, group in _runs(groups):
                encoder, decoder = TemporalEncoder(codec, coded), TemporalDecoder()
                for i in range(start, start + group):
                    z = model.edge(images[i:i + 1].permute(0, 3, 1, 2).float() / 255.0,
                                   split)[0]
                    sync()
                    t0 = time.perf_counter()
                    enc = encoder.encode(z)
                    t1 = time.perf_counter()
                    decoder.decode(enc, tables=coded)
                    t2 = time.perf_counter()
                    keyframe = is_keyframe(enc)
                    frames[keyframe].append((enc.nbytes, 1e3 * (t1 - t0), 1e3 * (t2 - t1)))
            every = frames[True] + frames[False]
            entry[codec] = {
                "base": spec.base, "keyframe_interval": spec.keyframe_interval,
                "frames": len(every), "keyframes": len(frames[True]),
                **_means(every), "keyframe": _means(frames[True]),
                "accuracy_vs_base": _worst_drop(result(split, spec.base),
                                                result(split, codec))}
        if entry:
            splits[split] = {"codecs": entry}
    return {**sequences.get("about", {}), "splits": splits}


def _runs(groups: list[int]) -> list[tuple[int, int]]:
    """(first index, length) of each run of equal sequence ids."""
    out: list[tuple[int, int]] = []
    for i, g in enumerate(groups):
        if i and g == groups[i - 1]:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((i, 1))
    return out


def _means(frames: list[tuple[int, float, float]]) -> dict[str, float]:
    nbytes, enc, dec = zip(*frames)
    return {"bytes": float(np.mean(nbytes)), "encode_ms": float(np.mean(enc)),
            "decode_ms": float(np.mean(dec))}


def _worst_drop(base: dict[str, Any], other: dict[str, Any]) -> float:
    """The worst relative drop of ``other``'s headline metrics against ``base``'s."""
    drops = [(base[task][metric] - other[task][metric]) / base[task][metric]
             for task, metric in HEADLINE_METRICS
             if task in base and task in other and base[task][metric]]
    return float(max(drops)) if drops else 0.0


def render_profile_sequences(input_wh: tuple[int, int], sequences: int = SEQUENCES,
                             frames: int = SEQUENCE_FRAMES) -> dict[str, Any]:
    """The labelled sim sequences ``measure_profile`` streams temporal codecs over."""
    from mtl_split_core.data.sim_sequences import FPS, render_sequences

    seeds = [SIM_SEED + i for i in range(sequences)]
    data, groups = render_sequences(seeds, frames, SIM_FRAME_SIZE, input_wh)
    return {"data": data, "groups": groups, "about": {
        "sequences": sequences, "frames_per_sequence": frames, "fps": FPS,
        "scene_seeds": seeds, "camera": list(SIM_FRAME_SIZE)}}


def load_profile_sequences(path: str | Path) -> dict[str, Any]:
    """Labelled sequences from an npz (``data.sim_sequences.save_frames`` with ``group_of``, e.g.
    bench/rate_accuracy.py's cached sequences), for a machine without the simulator."""
    from mtl_split_core.data.sim_sequences import load_frames

    data = load_frames(path)
    groups = [int(g) for g in data.pop("group_of")]
    return {"data": data, "groups": groups, "about": {
        "sequences": len(set(groups)), "frames": len(groups), "file": Path(path).name}}


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
