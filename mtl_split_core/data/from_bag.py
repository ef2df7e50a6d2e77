"""A robot's RGB-D recording (rosbag2, MCAP or sqlite3) -> a ``folder`` data set
(docs/DATA_FORMAT.md, section "folder"): `mtl-split dataset from-bag`.

Rules (docs/TRAIN_YOUR_DATA.md says the same for users):
- Frames are paired by *header* stamp: an image and a depth map pair when each is the other's
  nearest in time and they are at most ``tolerance`` apart (mutual nearest, so one depth map
  never labels two images). Unpaired messages are dropped and counted. ``every`` keeps every
  N-th pair. A second message with the same stamp on one topic is dropped (counted).
- Depth follows REP 118: ``32FC1`` metres (NaN, +-inf and <= 0 are invalid) or ``16UC1`` /
  ``mono16`` millimetres (0 invalid), as a ``sensor_msgs/Image`` or as image_transport's
  ``compressedDepth`` (a CompressedImage, PNG or RVL: ``compressed_depth.py``; a format string
  or ConfigHeader it cannot read is an error, corrupt pixels skip their frame).
  It is stored as uint16 millimetres (0 = invalid); metres
  beyond 65.535 m cannot be stored and become invalid. The depth map must be registered to the
  image (same camera, e.g. RealSense ``aligned_depth_to_color``); a depth map of another size
  but the same aspect ratio is resized to the image with nearest-neighbour (no blending across
  edges, invalid stays invalid); another aspect ratio is rejected. A depth map or camera_info
  whose header names another frame than the image's is kept but counted in a warning.
- Intrinsics: ``k`` of the camera_info nearest in stamp to each image; an all-zero ``k``
  (uncalibrated) is left out; a camera_info of another size than the image is rejected (it
  belongs to another camera or resolution).
- Splits: ``time`` (default) = the first 80 % of the frames in time train, the next 10 % val,
  the last 10 % test, so neighbouring, nearly identical frames do not straddle train and test;
  ``hash`` = no ``split`` field (readers split by a hash of the frame name).
- Atomic: everything is written into a hidden folder next to ``out`` and renamed at the end;
  an error or a stop request (``should_stop``) removes it, so ``out`` either is complete or
  does not exist. A message that cannot be decoded (corrupt, truncated) skips its frame
  (counted); a problem every message shares (unsupported encoding, wrong sizes) is an error.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.image import image_to_cvimage

from mtl_split_core.bags import IMAGE_TYPES, BagError, messages, open_bag
from mtl_split_core.data import compressed_depth
from mtl_split_core.data.sources.folder import FORMAT_NAME, FORMAT_VERSION
from mtl_split_core.errors import InputError
from mtl_split_core.geometry import valid_depth_mask
from mtl_split_core.image_decode import (
    COMPRESSED_DEPTH,
    COMPRESSED_FORMAT,
    NOT_COLOUR,
    UNCONVERTED_ENCODING,
    UNKNOWN_ENCODING,
    ImageDecodeError,
    compressed_to_rgb,
    raw_to_rgb,
)
from mtl_split_core.output_folder import atomic_folder

IMAGE_MSG, COMPRESSED_MSG = IMAGE_TYPES
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
# Colour decoding problems every message of a topic shares (its encoding or format): the
# topic cannot give images, so the command stops (one line, exit 2) instead of skipping all.
TOPIC_WIDE = {UNKNOWN_ENCODING, NOT_COLOUR, UNCONVERTED_ENCODING, COMPRESSED_FORMAT,
              COMPRESSED_DEPTH}
DEPTH_METRES, DEPTH_MILLIMETRES = ("32FC1",), ("16UC1", "mono16")
DEPTH_ENCODINGS = {"32FC1": 4, "16UC1": 2, "mono16": 2}
MAX_DEPTH_MM = 65535
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test (as the simulator splits scenes)
SPLIT_BY = ("time", "hash")
NS = 1_000_000_000


class FrameError(ValueError):
    """One message that cannot be decoded; its frame is skipped and counted."""


@dataclass
class FromBagReport:
    """What a conversion did (``summary()`` is the line the command prints)."""

    out: Path
    frames: int = 0                # frames written
    planned: int = 0               # frames selected for writing
    images: int = 0                # image messages in the bag
    depths: int = 0                # depth messages in the bag
    unpaired_images: int = 0
    unpaired_depths: int = 0
    duplicate_stamps: int = 0
    skipped_by_every: int = 0
    bad_frames: int = 0            # frames skipped: a message could not be decoded
    first_bad: str = ""
    depth_resized: int = 0
    other_frame_id: int = 0        # frames whose depth / camera_info names another frame_id
    first_other_frame_id: str = ""
    with_k: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    def summary(self) -> str:
        if self.interrupted:
            return (f"from-bag: interrupted after {self.frames} of {self.planned} frames; "
                    f"nothing written to {self.out}")
        in_bag = f"{self.images} images" + (f", {self.depths} depth maps" if self.depths else "")
        parts = [f"{self.frames} frames -> {self.out}", f"{in_bag} in the bag"]
        if self.depths:
            parts.append(f"unpaired: {self.unpaired_images} images, {self.unpaired_depths} "
                         "depth maps")
        if self.depth_resized:
            parts.append(f"{self.depth_resized} depth maps resized (nearest)")
        if self.other_frame_id:
            parts.append(f"WARNING {self.other_frame_id} frames with depth or camera_info in "
                         f"another frame than the image ({self.first_other_frame_id}): check "
                         "they are registered to the image's camera")
        if self.duplicate_stamps:
            parts.append(f"{self.duplicate_stamps} duplicate stamps dropped")
        if self.skipped_by_every:
            parts.append(f"{self.skipped_by_every} pairs skipped by --every")
        if self.bad_frames:
            parts.append(f"{self.bad_frames} undecodable frames skipped ({self.first_bad})")
        parts.append(f"intrinsics on {self.with_k}")
        if self.splits:
            parts.append("split " + "/".join(f"{self.splits.get(s, 0)} {s}"
                                             for s in ("train", "val", "test")))
        return "from-bag: " + "; ".join(parts)


@dataclass(frozen=True)
class _CameraInfo:
    stamp: int
    frame_id: str
    k: tuple[float, ...]
    width: int
    height: int


def bag_to_folder(bag: str | Path, out: str | Path, image_topic: str,
                  depth_topic: str | None = None, camera_info_topic: str | None = None,
                  every: int = 1, tolerance: float = 0.02, split_by: str = "time",
                  should_stop: Callable[[], bool] = lambda: False,
                  progress: Callable[[int, int], None] | None = None) -> FromBagReport:
    """Write the frames of ``image_topic`` (+ ``depth_topic``, ``camera_info_topic``) of
    ``bag`` as a ``folder`` data set at ``out`` (see the module docstring for the rules).

    ``should_stop`` is polled per message: when it turns true the partial output is removed
    and the report says ``interrupted``. ``progress(done, total)`` is called per written frame.
    """
    bag, out = Path(bag), Path(out)
    if every < 1:
        raise InputError(f"--every {every}: expected an integer >= 1")
    if not tolerance >= 0:
        raise InputError(f"--tolerance {tolerance}: expected a number of seconds >= 0")
    if depth_topic is not None and depth_topic == image_topic:
        raise InputError(f"--depth {depth_topic}: the same topic as --image; give the depth "
                         "camera's topic")
    if split_by not in SPLIT_BY:
        raise InputError(f"--split-by {split_by!r}: expected one of {', '.join(SPLIT_BY)}")
    report = FromBagReport(out)
    try:
        with ExitStack() as stack:
            try:  # made now: an unwritable place fails before the bag is read
                tmp = stack.enter_context(atomic_folder(out))
            except OSError as err:
                raise InputError(f"{out}: cannot write there ({err})") from None
            reader = stack.enter_context(open_bag(bag))
            _convert(reader, bag, tmp, image_topic, depth_topic, camera_info_topic, every,
                     tolerance, split_by, should_stop, progress, report)
    except _Stopped:
        report.interrupted = True
    return report


def _convert(reader: Any, bag: Path, tmp: Path, image_topic: str, depth_topic: str | None,
             camera_info_topic: str | None, every: int, tolerance: float, split_by: str,
             should_stop: Callable[[], bool], progress: Callable[[int, int], None] | None,
             report: FromBagReport) -> None:
    """Both passes over the bag into the folder ``tmp``; raises ``_Stopped`` on a stop."""
    if not reader.is2:
        raise BagError(f"{bag}: a ROS 1 bag; expected rosbag2 (convert it with "
                       "rosbags-convert)")
    types = _topic_types(reader.connections)
    _check_topic(bag, types, image_topic, IMAGE_TYPES, "--image")
    if depth_topic:
        _check_topic(bag, types, depth_topic, IMAGE_TYPES, "--depth")
    if camera_info_topic:
        _check_topic(bag, types, camera_info_topic, (CAMERA_INFO,), "--camera-info")
    stamps, infos = _scan(reader, bag, image_topic, depth_topic, camera_info_topic,
                          should_stop)
    if should_stop():
        raise _Stopped
    frames = _select_frames(bag, image_topic, depth_topic, stamps, tolerance, every, report)
    try:
        records = _write_frames(reader, bag, tmp, image_topic, depth_topic, camera_info_topic,
                                frames, infos, should_stop, progress, report)
        if report.interrupted:
            raise _Stopped
        if not records:
            raise BagError(f"{bag}: no frame of {image_topic} could be decoded "
                           f"({report.first_bad})")
        _assign_splits(records, split_by, report)
        index = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
                 "detection_classes": [], "segmentation_classes": [],
                 "source": {"bag": str(bag), "image": image_topic, "depth": depth_topic,
                            "camera_info": camera_info_topic, "every": every,
                            "tolerance": tolerance, "split_by": split_by},
                 "images": records, "annotations": []}
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
    except OSError as err:  # disk full, permissions changed while running
        raise InputError(f"{report.out}: cannot write the data set: {err}") from None


class _Stopped(Exception):
    """A stop request while writing: the partial output is removed, the report says so."""


def _topic_types(connections: Sequence[Any]) -> dict[str, set[str]]:
    types: dict[str, set[str]] = {}
    for c in connections:
        types.setdefault(c.topic, set()).add(c.msgtype)
    return types


def _check_topic(bag: Path, types: dict[str, set[str]], topic: str, expected: Sequence[str],
                 option: str) -> None:
    if topic not in types:
        images = sorted(t for t, kinds in types.items() if kinds & set(IMAGE_TYPES))
        raise BagError(f"{bag}: no topic {topic} ({option}); image topics in the bag: "
                       f"{', '.join(images) or 'none'}")
    wrong = types[topic] - set(expected)
    if wrong:
        raise BagError(f"{bag}: topic {topic} ({option}) has type {', '.join(sorted(wrong))}; "
                       f"expected {' or '.join(expected)}")


def _header_stamp(raw: bytes | memoryview) -> int:
    """The header stamp (ns) of a CDR-serialised message whose first field is a Header.

    Read from the bytes (4-byte encapsulation, then int32 sec, uint32 nanosec) so that the
    first pass over a long bag does not decode megabytes of pixels per message.
    """
    if len(raw) < 12:
        raise FrameError(f"message of {len(raw)} bytes has no header")
    sec, nanosec = struct.unpack_from("<iI" if raw[1] & 1 else ">iI", raw, 4)
    return int(sec) * NS + int(nanosec)


@dataclass
class _Stamps:
    images: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)


def _scan(reader: Any, bag: Path, image_topic: str, depth_topic: str | None,
          info_topic: str | None, should_stop: Callable[[], bool]
          ) -> tuple[_Stamps, list[_CameraInfo]]:
    """First pass: every image and depth stamp, every camera_info."""
    stamps, infos = _Stamps(), []
    topics = {t for t in (image_topic, depth_topic, info_topic) if t}
    for conn, _, raw in messages(reader, bag, topics):
        if should_stop():
            break
        if conn.topic == info_topic:
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 - a corrupt camera_info: the others serve
                continue
            stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
            k = tuple(float(v) for v in np.asarray(msg.k, np.float64).reshape(-1))
            infos.append(_CameraInfo(stamp, str(msg.header.frame_id), k, int(msg.width),
                                     int(msg.height)))
            continue
        try:
            stamp = _header_stamp(raw)
        except FrameError:
            continue  # counted as unpaired/undecodable: it never enters a frame
        (stamps.images if conn.topic == image_topic else stamps.depths).append(stamp)
    if info_topic and not infos and not should_stop():
        raise BagError(f"{bag}: no messages on {info_topic} (--camera-info)")
    if not stamps.images and not should_stop():
        raise BagError(f"{bag}: no messages on {image_topic} (--image)")
    if depth_topic and not stamps.depths and not should_stop():
        raise BagError(f"{bag}: no messages on {depth_topic} (--depth)")
    return stamps, infos


def _unique(stamps: list[int]) -> tuple[np.ndarray, int]:
    """Sorted unique stamps and how many duplicates were dropped."""
    unique = np.unique(np.asarray(stamps, np.int64))
    return unique, len(stamps) - len(unique)


def _nearest(sorted_stamps: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index into ``sorted_stamps`` of the nearest stamp to each query (earlier on a tie)."""
    right = np.clip(np.searchsorted(sorted_stamps, queries), 0, len(sorted_stamps) - 1)
    left = np.clip(right - 1, 0, len(sorted_stamps) - 1)
    take_left = np.abs(queries - sorted_stamps[left]) <= np.abs(sorted_stamps[right] - queries)
    return np.where(take_left, left, right)


def pair_stamps(images: np.ndarray, depths: np.ndarray, tolerance_ns: int
                ) -> tuple[list[tuple[int, int]], int]:
    """Mutual-nearest pairs (image stamp, depth stamp) at most ``tolerance_ns`` apart, from
    sorted unique stamps; also the smallest offset found (ns), for the error message."""
    to_depth = _nearest(depths, images)
    to_image = _nearest(images, depths)
    offsets = np.abs(depths[to_depth] - images)
    pairs = [(int(images[i]), int(depths[j])) for i, j in enumerate(to_depth)
             if to_image[j] == i and offsets[i] <= tolerance_ns]
    return pairs, int(offsets.min())


def _select_frames(bag: Path, image_topic: str, depth_topic: str | None, stamps: _Stamps,
                   tolerance: float, every: int, report: FromBagReport
                   ) -> list[tuple[int, int | None]]:
    images, dup = _unique(stamps.images)
    report.images, report.duplicate_stamps = len(stamps.images), dup
    pairs: list[tuple[int, int | None]]
    if depth_topic:
        depths, dup = _unique(stamps.depths)
        report.depths, report.duplicate_stamps = len(stamps.depths), report.duplicate_stamps + dup
        matched, nearest = pair_stamps(images, depths, round(tolerance * NS))
        if not matched:
            raise BagError(f"{bag}: no image on {image_topic} has a depth map on {depth_topic} "
                           f"within {tolerance:g} s (nearest offset {nearest / NS:.6f} s; "
                           "raise --tolerance or check the header stamps)")
        report.unpaired_images = len(images) - len(matched)
        report.unpaired_depths = len(depths) - len(matched)
        pairs = list(matched)
    else:
        pairs = [(int(s), None) for s in images]
    chosen = pairs[::every]
    report.skipped_by_every = len(pairs) - len(chosen)
    report.planned = len(chosen)
    return chosen


def frame_name(stamp_ns: int) -> str:
    """A frame's file name stem: its image stamp (unique per topic, stable across runs)."""
    sec, nanosec = divmod(stamp_ns, NS)
    return f"{sec:010d}_{nanosec:09d}"


def _write_frames(reader: Any, bag: Path, tmp: Path, image_topic: str,
                  depth_topic: str | None, info_topic: str | None,
                  frames: list[tuple[int, int | None]], infos: list[_CameraInfo],
                  should_stop: Callable[[], bool],
                  progress: Callable[[int, int], None] | None,
                  report: FromBagReport) -> list[dict]:
    """Second pass: decode the selected messages and write each frame once both halves
    arrived (a half waits as raw bytes: at most the tolerance window's worth)."""
    (tmp / "images").mkdir(parents=True)
    if depth_topic:
        (tmp / "depth").mkdir()
    by_image = {img: i for i, (img, _) in enumerate(frames)}
    by_depth = {dep: i for i, (_, dep) in enumerate(frames) if dep is not None}
    halves: dict[int, dict[str, tuple[str, bytes | memoryview]]] = {}
    records: dict[int, dict] = {}
    info_stamps = np.array([c.stamp for c in infos], np.int64)
    topics = {t for t in (image_topic, depth_topic) if t}
    for conn, _, raw in messages(reader, bag, topics):
        if should_stop():
            report.interrupted = True
            return []
        try:
            stamp = _header_stamp(raw)
        except FrameError:
            continue
        wanted = by_image if conn.topic == image_topic else by_depth
        i = wanted.pop(stamp, None)  # pop: a duplicate stamp is used once
        if i is None:
            continue
        half = halves.setdefault(i, {})
        half["image" if conn.topic == image_topic else "depth"] = (conn.msgtype, bytes(raw))
        if "image" not in half or (depth_topic and "depth" not in half):
            continue
        del halves[i]
        try:
            record = _write_frame(reader, bag, tmp, image_topic, depth_topic, info_topic,
                                  frames[i][0], half, infos, info_stamps, report)
        except FrameError as err:
            report.bad_frames += 1
            report.first_bad = report.first_bad or str(err)
            continue
        records[i] = record
        report.frames += 1
        if progress is not None:
            progress(report.frames, len(frames))
    report.bad_frames += len(halves)  # a half whose partner could not be read
    out = [records[i] for i in sorted(records)]
    for image_id, record in enumerate(out):
        record["id"] = image_id
    return out


def _write_frame(reader: Any, bag: Path, tmp: Path, image_topic: str, depth_topic: str | None,
                 info_topic: str | None, stamp: int,
                 half: dict[str, tuple[str, bytes | memoryview]], infos: list[_CameraInfo],
                 info_stamps: np.ndarray, report: FromBagReport) -> dict:
    name = frame_name(stamp)
    msgtype, raw = half["image"]
    image = _deserialize(reader, msgtype, raw, image_topic)
    rgb = decode_rgb(bag, image_topic, image)
    frame_ids: dict[str, str] = {}
    h, w = rgb.shape[:2]
    record: dict[str, Any] = {"id": -1, "file_name": f"images/{name}.png", "width": w,
                              "height": h, "stamp": {"sec": stamp // NS,
                                                     "nanosec": stamp % NS},
                              "labelled": []}
    if depth_topic:
        msgtype, raw = half["depth"]
        depth_msg = _deserialize(reader, msgtype, raw, depth_topic)
        frame_ids[depth_topic] = depth_msg.header.frame_id
        mm = decode_depth_mm(bag, depth_topic, depth_msg)
        if mm.shape != (h, w):
            mm = _fit_depth(bag, image_topic, depth_topic, mm, (h, w))
            report.depth_resized += 1
        _imwrite(tmp / "depth" / f"{name}.png", mm)
        record["depth_file"] = f"depth/{name}.png"
        record["labelled"] = ["depth"]
    if info_topic:
        info = infos[int(_nearest(info_stamps, np.array([stamp], np.int64))[0])]
        frame_ids[info_topic] = info.frame_id
        k = _intrinsics(bag, info_topic, image_topic, info, (w, h))
        if k is not None:
            record["k"] = k
            report.with_k += 1
    _imwrite(tmp / "images" / f"{name}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    other = {t: f for t, f in frame_ids.items() if f != image.header.frame_id}
    if other:
        report.other_frame_id += 1
        report.first_other_frame_id = report.first_other_frame_id or ", ".join(
            f"{t} in {f!r}" for t, f in other.items()) + \
            f" but {image_topic} in {image.header.frame_id!r}"
    return record


def _deserialize(reader: Any, msgtype: str, raw: bytes | memoryview, topic: str) -> Any:
    try:
        return reader.deserialize(raw, msgtype)
    except Exception as err:  # noqa: BLE001 - the CDR decoder raises several types
        raise FrameError(f"{topic}: cannot deserialize a {msgtype}: {err}") from err


def _imwrite(path: Path, pixels: np.ndarray) -> None:
    if not cv2.imwrite(str(path), pixels):
        raise OSError(f"cannot write {path}")


@dataclass(frozen=True)
class _PackedImage:
    """The Image fields rosbags-image reads, with rows packed (it ignores ``step``)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: np.ndarray


def _packed(msg: Any, topic: str, bytes_per_pixel: int) -> _PackedImage:
    """``msg`` without row padding; sizes that do not add up are a FrameError."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * bytes_per_pixel
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if h <= 0 or w <= 0 or step < row or data.size < step * (h - 1) + row:
        raise FrameError(f"{topic}: {msg.encoding} image {w}x{h} needs step >= {row} and "
                         f"{step * h} bytes; got step {step} and {data.size} bytes")
    if step != row:
        data = np.ascontiguousarray(
            np.lib.stride_tricks.as_strided(data, (h, row), (step, 1))).ravel()
    return _PackedImage(msg.encoding, h, w, row, int(msg.is_bigendian), data[: h * row])


def decode_rgb(bag: Path, topic: str, msg: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an Image or CompressedImage, decoded as the edge decodes camera
    frames (``image_decode``: every encoding cv_bridge converts, compressed images by content).
    A problem of the topic (``TOPIC_WIDE``) is a BagError, a corrupt message a FrameError."""
    try:
        if hasattr(msg, "format"):
            return compressed_to_rgb(msg.format, msg.data)
        return raw_to_rgb(msg.encoding, int(msg.height), int(msg.width), int(msg.step),
                          bool(msg.is_bigendian), msg.data)
    except ImageDecodeError as err:
        if err.reason in TOPIC_WIDE:
            raise BagError(f"{bag}: {topic}: unsupported image: {err}") from None
        raise FrameError(f"{topic}: {err}") from None


def decode_depth_mm(bag: Path, topic: str, msg: Any) -> np.ndarray:
    """(H, W) uint16 millimetres, 0 = invalid, from a REP 118 depth Image or a
    compressedDepth CompressedImage."""
    if hasattr(msg, "format"):
        if not compressed_depth.is_compressed_depth(msg.format):
            raise BagError(f"{bag}: {topic}: a CompressedImage of format {msg.format!r}; "
                           "depth must be an Image or image_transport's compressedDepth")
        try:
            pixels = compressed_depth.decode(msg.format, bytes(msg.data))
        except compressed_depth.HeaderError as err:
            raise BagError(f"{bag}: {topic}: compressedDepth {err}") from None
        except compressed_depth.PayloadError as err:
            raise FrameError(f"{topic}: {err}") from None
        return pixels if pixels.dtype == np.uint16 else _metres_to_mm(pixels)
    if msg.encoding not in DEPTH_ENCODINGS:
        raise BagError(f"{bag}: {topic}: unsupported depth encoding {msg.encoding!r}; expected "
                       "32FC1 (metres) or 16UC1 (millimetres), REP 118")
    packed = _packed(msg, topic, DEPTH_ENCODINGS[msg.encoding])
    pixels = image_to_cvimage(packed)  # type: ignore[arg-type]
    if msg.encoding in DEPTH_MILLIMETRES:
        return pixels.astype(np.uint16)
    return _metres_to_mm(pixels)


def _metres_to_mm(pixels: np.ndarray) -> np.ndarray:
    metres = pixels.astype(np.float64)
    valid = valid_depth_mask(metres)
    mm = np.zeros(metres.shape, np.float64)
    mm[valid] = np.round(metres[valid] * 1000.0)
    mm[mm > MAX_DEPTH_MM] = 0  # beyond what uint16 mm holds: invalid rather than wrong
    return mm.astype(np.uint16)


def _fit_depth(bag: Path, image_topic: str, depth_topic: str, mm: np.ndarray,
               size_hw: tuple[int, int]) -> np.ndarray:
    """A registered depth map of another resolution, resized (nearest) to the image's."""
    (dh, dw), (h, w) = mm.shape, size_hw
    if dw * h != dh * w:
        raise BagError(f"{bag}: depth on {depth_topic} is {dw}x{dh} but images on "
                       f"{image_topic} are {w}x{h} (another aspect ratio: not registered to "
                       "the image; record the depth aligned to the colour camera)")
    return cv2.resize(mm, (w, h), interpolation=cv2.INTER_NEAREST)


def _intrinsics(bag: Path, info_topic: str, image_topic: str, info: _CameraInfo,
                size_wh: tuple[int, int]) -> list[float] | None:
    """K as 9 floats, None when unset (all zero); other sizes or values are a BagError."""
    k = np.asarray(info.k, np.float64)
    if k.size != 9 or not np.all(np.isfinite(k)):
        raise BagError(f"{bag}: {info_topic}: camera_info k is not 9 finite numbers")
    if not np.any(k):
        return None
    if info.width and info.height and (info.width, info.height) != size_wh:
        raise BagError(f"{bag}: camera_info on {info_topic} is {info.width}x{info.height} but "
                       f"images on {image_topic} are {size_wh[0]}x{size_wh[1]}; give the "
                       "camera_info of the image's camera")
    if not (k[0] > 0 and k[4] > 0):
        raise BagError(f"{bag}: {info_topic}: camera_info k has fx={k[0]:g}, fy={k[4]:g}; "
                       "expected positive focal lengths (or all zero = uncalibrated)")
    return [float(v) for v in k]


def _assign_splits(records: list[dict], split_by: str, report: FromBagReport) -> None:
    """``time``: contiguous blocks in stamp order (records are in stamp order already)."""
    if split_by != "time":
        return
    n = len(records)
    train_end = round(n * SPLIT_FRACTIONS[0])
    val_end = round(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))
    for i, record in enumerate(records):
        record["split"] = "train" if i < train_end else "val" if i < val_end else "test"
        report.splits[record["split"]] = report.splits.get(record["split"], 0) + 1
