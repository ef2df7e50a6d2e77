"""Compact dataset shards: many frames in one .npz, small enough to carry to a GPU box.

Each shard stores encoded bytes back to back with offsets (no pickling): RGB as JPEG, semantic
ids as PNG, depth as an 8-bit PNG on a log scale between ``DEPTH_MIN`` and ``DEPTH_MAX``
(code 0 = invalid; one step is a 2.7% depth change, well under the 25% of delta<1.25),
plus boxes, labels, split and intrinsics. ``load_shards`` decodes them into arrays.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np
from numpy.typing import DTypeLike
from tqdm import tqdm

from mtl_split_core.data.frames import (
    DatasetBuilder,
    decode_image,
    indexed_frames,
    read_image,
    xyxy_boxes,
)

DEPTH_MIN, DEPTH_MAX = 0.1, 80.0
_LOG_MIN, _LOG_SPAN = math.log(DEPTH_MIN), math.log(DEPTH_MAX) - math.log(DEPTH_MIN)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def depth_to_code(depth: np.ndarray) -> np.ndarray:
    valid = depth > 0
    code = np.zeros(depth.shape, np.uint8)
    d = np.clip(depth[valid], DEPTH_MIN, DEPTH_MAX)
    code[valid] = np.round((np.log(d) - _LOG_MIN) / _LOG_SPAN * 254 + 1).astype(np.uint8)
    return code


def code_to_depth(code: np.ndarray) -> np.ndarray:
    depth = np.exp(_LOG_MIN + (code.astype(np.float32) - 1) / 254 * _LOG_SPAN)
    return np.where(code > 0, depth, 0.0).astype(np.float32)


def pack_shards(dataset_dir: str | Path, out_dir: str | Path, max_mb: float = 60.0,
                jpeg_quality: int = 90, splits: Sequence[str] = ("train", "val", "test")
                ) -> list[Path]:
    """Pack a generated dataset (index.json + rgb/ depth/ seg/) into shards of <= max_mb."""
    src, out = Path(dataset_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = json.loads((src / "index.json").read_text())
    shards: list[Path] = []
    current, size = _empty(), 0
    frames = list(indexed_frames(index, splits))
    for img, anns in tqdm(frames, desc="packing", unit="frame"):
        name = img["file_name"]
        rgb = read_image(src / "rgb" / f"{name}.jpg", cv2.IMREAD_COLOR)
        depth = read_image(src / "depth" / f"{name}.png", cv2.IMREAD_UNCHANGED)
        parts = [cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1],
                 cv2.imencode(".png", depth_to_code(depth.astype(np.float32) / 1000.0))[1],
                 np.fromfile(src / "seg" / f"{name}.png", np.uint8)]
        frame_bytes = sum(p.size for p in parts)
        if size + frame_bytes > max_mb * 1e6 and current["split"]:
            shards.append(_write(current, out / f"shard_{len(shards):03d}.npz"))
            current, size = _empty(), 0
        for key, p in zip(("rgb", "depth", "seg"), parts):
            current[key].append(p.ravel())
        boxes, labels = xyxy_boxes(anns)
        current["boxes"].append(boxes)
        current["labels"].append(labels)
        current["split"].append(SPLIT_CODES[img["split"]])
        current["k"].append(img["k"])
        size += frame_bytes
    if current["split"]:
        shards.append(_write(current, out / f"shard_{len(shards):03d}.npz"))
    return shards


def subset_shards(src: str | Path, out: str | Path, split: str,
                  frames: int | None = None) -> int:
    """Copy the frames of ``split`` (at most the first ``frames``) of the shards in ``src``
    into ``out/shard_<i>.npz``, the encoded images byte for byte (a smaller data set to carry,
    e.g. to a lent GPU machine); returns the frames written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, shards = 0, 0
    for path in sorted(Path(src).glob("shard_*.npz")):
        with np.load(path) as npz:  # each member read once (an npz reads a key on access)
            z = {k: npz[k] for k in npz.files}
        keep = np.flatnonzero(z["split"] == SPLIT_CODES[split])
        if frames is not None:
            keep = keep[:max(frames - written, 0)]
        if not len(keep):
            continue
        cur = _empty()
        for i in keep:
            for key in ("rgb", "depth", "seg"):
                o = z[key + "_offsets"]
                cur[key].append(z[key][o[i]:o[i + 1]])
            b = z["box_offsets"]
            cur["boxes"].append(z["boxes"][b[i]:b[i + 1]])
            cur["labels"].append(z["labels"][b[i]:b[i + 1]])
            cur["split"].append(z["split"][i])
            cur["k"].append(z["k"][i])
        _write(cur, out / f"shard_{shards:03d}.npz")
        written, shards = written + len(keep), shards + 1
    return written


def _empty() -> dict[str, list]:
    return {k: [] for k in ("rgb", "depth", "seg", "boxes", "labels", "split", "k")}


def _concat(chunks: Sequence[np.ndarray], dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
    data = np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype)
    return data, offsets


def _write(cur: dict, path: Path) -> Path:
    arrays = {}
    for key in ("rgb", "depth", "seg"):
        arrays[key], arrays[key + "_offsets"] = _concat(cur[key], np.uint8)
    boxes, arrays["box_offsets"] = _concat(cur["boxes"], np.float32)
    arrays["boxes"] = boxes.reshape(-1, 4)
    arrays["labels"], _ = _concat(cur["labels"], np.int64)
    arrays["split"] = np.asarray(cur["split"], np.uint8)
    arrays["k"] = np.asarray(cur["k"], np.float32)
    # numpy's stub lets **kwargs fill the bool allow_pickle too, so any dict of arrays fails.
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


class SimFrame(NamedTuple):
    """One simulated frame: what ``DatasetBuilder.add`` takes."""

    image: np.ndarray       # (H, W, 3) uint8 RGB
    seg: np.ndarray         # (H, W) uint8
    depth: np.ndarray       # (H, W) float32 metres
    boxes: np.ndarray       # (K, 4) float32 x1y1x2y2
    labels: np.ndarray      # (K,) int64
    k: np.ndarray           # (9,) intrinsics


class ShardReader:
    """The frames of some splits of one shard, by position, each read from disk on demand:
    only its own bytes (``np.savez`` stores members uncompressed, so a member's data lies at
    a fixed place in the file). The small arrays (offsets, boxes, splits) are read at once."""

    def __init__(self, path: str | Path, splits: Sequence[str] = ("train",)) -> None:
        self.path = Path(path)
        with np.load(self.path) as z:
            self.small = {key: z[key] for key in z.files if key not in BLOBS}
        want = [SPLIT_CODES[s] for s in splits]
        self.rows = np.flatnonzero(np.isin(self.small["split"], want))
        self.blob_at = _member_offsets(self.path, BLOBS)

    def __len__(self) -> int:
        return len(self.rows)

    def _bytes(self, f: BinaryIO, key: str, i: int) -> np.ndarray:
        o = self.small[key + "_offsets"]
        f.seek(self.blob_at[key] + int(o[i]))
        return np.frombuffer(f.read(int(o[i + 1] - o[i])), np.uint8)

    def frame(self, position: int) -> SimFrame:
        i = int(self.rows[position])
        what = f"frame {i} of {self.path}"
        with open(self.path, "rb") as f:
            rgb, depth, seg = (self._bytes(f, key, i) for key in BLOBS)
        b = self.small["box_offsets"]
        return SimFrame(np.ascontiguousarray(decode_image(rgb, cv2.IMREAD_COLOR, what)[..., ::-1]),
                        decode_image(seg, cv2.IMREAD_UNCHANGED, what),
                        code_to_depth(decode_image(depth, cv2.IMREAD_UNCHANGED, what)),
                        self.small["boxes"][b[i]:b[i + 1]], self.small["labels"][b[i]:b[i + 1]],
                        self.small["k"][i])


BLOBS = ("rgb", "depth", "seg")


def _member_offsets(path: Path, keys: Sequence[str]) -> dict[str, int]:
    """Where each ``KEY.npy`` member's array data starts in an (uncompressed) .npz file."""
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for key in keys:
            info = z.getinfo(key + ".npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{path}: {key} is compressed; shards are written uncompressed")
            f.seek(info.header_offset)
            local = f.read(30)  # the local file header: name and extra field lengths at 26
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"{path}: {key}: .npy format {version} is not 1.0 or 2.0")
            out[key] = f.tell()
    return out


def load_shards(paths: Iterable[str | Path], splits: Sequence[str] = ("train",)) -> dict:
    """Decode shards into arrays for the given splits: images (N, H, W, 3) RGB uint8,
    seg (N, H, W) uint8, depth (N, H, W) float32, boxes/labels lists, k (N, 9)."""
    out = DatasetBuilder()
    for path in sorted(Path(p) for p in paths):
        reader = ShardReader(path, splits)
        for i in range(len(reader)):
            f = reader.frame(i)
            out.add(f.image, f.seg, f.depth, f.boxes, f.labels, f.k.tolist())
    return out.build()
