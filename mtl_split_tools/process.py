"""`mtl-split process BAG --out DIR`: edge and server in one process over every image topic of
a bag, without DDS (rosbags reads and writes the bags).

Writes:
- ``DIR/outputs/``: one rosbag2 folder (``metadata.yaml`` + ``outputs.mcap``) with every
  output topic of the live server (``mtl_split_ros.outputs``), the same messages it would
  publish, stamped like their inputs. Topic names follow the live rule: ``/cam/image_raw``
  or ``/cam/image_raw/compressed`` -> ``/cam/mtl_split/detections`` ... (see
  ``outputs.features_topic``); a second image topic of the same namespace gets
  ``<image topic>/mtl_split/...`` so two cameras never share an output topic.
- ``DIR/annotated/<image topic, '/' -> '_'>/NNNNNN.png``: numbered per topic from 000000.
- ``DIR/summary.json``.

Bad arguments (model, device, precision, codec, a missing bag, an --out that cannot be written
or already holds outputs) fail before anything is written; a run that fails later removes what it
wrote. SIGINT/SIGTERM finish the current frame, close the bag and write the summary.

Each image gets the camera_info of its frame_id with the newest stamp not after the image's.
A camera_info recorded just after its image (same stamp) is waited for: images are held
until one arrives, for at most ``MAX_HELD`` images or ``MAX_HOLD_NS`` of bag time.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mtl_split_core.bags import (
    IMAGE_TYPES,
    BagError,
    BagWriter,
    messages,
    open_bag,
)
from mtl_split_core.output_folder import check_can_create
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import PacketRejected, ServerRunner
from mtl_split_core.signals import StopSignals
from mtl_split_ros import outputs
from mtl_split_ros.camera_info import CameraInfoFitter
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb
from mtl_split_ros.msg_factory import BagMessages

OUTPUT_BAG = "outputs"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MAX_HELD = 16                   # images waiting for their camera_info
MAX_HOLD_NS = 1_000_000_000     # ... and for at most this much bag time
_INFO_HISTORY = 64              # camera_infos kept per frame_id
OUTPUT_NAMES = (OUTPUT_BAG, "annotated", "summary.json")  # what a run adds to --out


def output_prefixes(image_topics) -> dict[str, str]:
    """Image topic -> output prefix (module docstring); sorted, so the rule is stable."""
    prefixes: dict[str, str] = {}
    for topic in sorted(image_topics):
        prefix = outputs.output_prefix(outputs.features_topic(topic))
        if prefix in prefixes.values():
            prefix = f"{topic.rstrip('/')}/mtl_split/"
        prefixes[topic] = prefix
    return prefixes


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class CameraInfos:
    """camera_info messages of a bag by frame_id, to match each image with its own."""

    def __init__(self, present: bool):
        self.present = present  # the bag has a camera_info topic
        self.by_frame: dict[str, deque] = {}

    def add(self, info) -> None:
        self.by_frame.setdefault(info.header.frame_id,
                                 deque(maxlen=_INFO_HISTORY)).append(info)

    def ready(self, image) -> bool:
        """Whether the camera_info for ``image`` is known (or none will come)."""
        if not self.present:
            return True
        infos = self.by_frame.get(image.header.frame_id)
        return bool(infos) and _stamp_ns(infos[0].header) <= _stamp_ns(image.header)

    def for_image(self, image):
        """The newest camera_info of the image's frame not after it, else the oldest known."""
        infos = self.by_frame.get(image.header.frame_id)
        if not infos:
            return None
        stamp = _stamp_ns(image.header)
        earlier = [i for i in infos if _stamp_ns(i.header) <= stamp]
        return earlier[-1] if earlier else infos[0]


def check_output_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that cannot take this run's outputs, before anything is created."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BagError(f"{out_dir}: exists and is not a folder")
    taken = [name for name in OUTPUT_NAMES if (out_dir / name).exists()]
    if taken:
        raise BagError(f"{out_dir}: already holds {', '.join(taken)}; choose a new output "
                       f"folder")
    check_can_create(out_dir)


class CreatedOutputs:
    """What this run adds under ``out_dir``, to remove exactly that when the run fails."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        top = out_dir  # the outermost folder of out_dir's path that does not exist yet
        while not top.parent.exists():
            top = top.parent
        self.new_top = None if out_dir.exists() else top

    def remove(self) -> None:
        if self.new_top is not None:
            shutil.rmtree(self.new_top, ignore_errors=True)
            return
        for name in OUTPUT_NAMES:  # none of them existed before (check_output_dir)
            path = self.out_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()


def process_bag(bag, out_dir, model: str = "", device: str = "auto", precision: str = "fp32",
                codec: str | None = None, score_threshold: float = 0.3,
                progress: bool = True) -> dict:
    """Process ``bag`` into ``out_dir``; the summary (``interrupted`` when SIGINT/SIGTERM
    stopped it: the outputs are then complete up to the last processed frame).

    Every argument is checked before an output exists; a run that fails removes what it
    created (BagError / ConfigError / CodecError name the cause)."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    created = CreatedOutputs(out_dir)
    with StopSignals() as stop, open_bag(bag) as reader:
        image_conns = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
        if not image_conns:
            raise BagError(f"{bag}: no sensor_msgs/Image or CompressedImage topic "
                           f"(topics: {sorted({c.topic for c in reader.connections})})")
        edge = EdgeRunner.from_path(model, device=device, precision=precision, codec=codec)
        server = ServerRunner(edge.model, edge.card, device=device, precision=precision,
                              score_threshold=score_threshold)
        if stop.is_set():
            raise KeyboardInterrupt  # stopped while loading: nothing was written
        try:
            return _process(bag, reader, image_conns, out_dir, edge, server, progress, stop)
        except BaseException:
            created.remove()
            raise


def _process(bag, reader, image_conns, out_dir, edge, server, progress, stop):
    t0 = time.perf_counter()
    stats = {"frames": 0, "skipped": 0, "feature_bytes": [], "jpeg_bytes": [], "errors": {}}
    card = edge.card
    style = outputs.OutputStyle.from_card(card)
    types = outputs.output_types(style)
    prefixes = output_prefixes({c.topic for c in image_conns})
    info_topics = {c.topic for c in reader.connections if c.msgtype == CAMERA_INFO}
    infos = CameraInfos(bool(info_topics))
    png_counts = {topic: 0 for topic in prefixes}
    latched_done: set[str] = set()  # image topics whose latched outputs (label_info) are written
    total = sum(c.msgcount for c in image_conns)
    out_dir.mkdir(parents=True, exist_ok=True)
    with BagWriter(out_dir / OUTPUT_BAG) as writer:
        factory = BagMessages(writer.store)
        bar = tqdm(total=total, desc="processing", unit="frame", disable=not progress)

        def camera_info_rejected(reason: str, detail: str) -> None:
            stats["errors"][detail] = stats["errors"].get(detail, 0) + 1

        # As the edge does: each camera_info fitted to its image (mtl_split_ros.camera_info).
        fitter = CameraInfoFitter(factory, lambda text: tqdm.write(f"warning: {text}"),
                                  camera_info_rejected)

        def process_one(topic, stamp_ns, msg):
            bar.update()
            try:
                rgb = image_to_rgb(msg)
            except ImageDecodeError as err:
                stats["skipped"] += 1
                stats["errors"][str(err)] = stats["errors"].get(str(err), 0) + 1
                return
            info = fitter.for_image(infos.for_image(msg), rgb.shape[1], rgb.shape[0])
            packet = edge(rgb)
            try:
                result = server(server.admit(packet, info.k if info else None))
            except PacketRejected as err:  # cannot happen with one model; be explicit
                raise BagError(f"{bag}: internal mismatch: {err}") from err
            if topic not in latched_done:  # once per output prefix, as the server does
                latched_done.add(topic)
                header = factory.make("std_msgs/msg/Header", stamp=msg.header.stamp)
                for suffix, message in outputs.latched_messages(style, header,
                                                                factory).items():
                    writer.write(prefixes[topic] + suffix, types[suffix], stamp_ns, message)
            out = outputs.assemble(result, msg.header, style, types, factory)
            for suffix, message in out.items():
                writer.write(prefixes[topic] + suffix, types[suffix], stamp_ns, message)
            if "annotated" in out:
                png_dir = out_dir / "annotated" / topic.strip("/").replace("/", "_")
                png_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(png_dir / f"{png_counts[topic]:06d}.png"),
                            image_to_rgb(out["annotated"])[..., ::-1])
                png_counts[topic] += 1
            stats["frames"] += 1
            stats["feature_bytes"].append(packet.nbytes)
            stats["jpeg_bytes"].append(len(cv2.imencode(
                ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]))

        held: deque = deque()  # (topic, bag time, image) in bag order
        for conn, stamp_ns, raw in messages(reader, bag, set(prefixes) | info_topics):
            if stop.is_set():
                break
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic in info_topics:
                infos.add(msg)
            else:
                held.append((conn.topic, stamp_ns, msg))
            while held and not stop.is_set() and (
                    infos.ready(held[0][2]) or len(held) > MAX_HELD
                    or stamp_ns - held[0][1] > MAX_HOLD_NS):
                process_one(*held.popleft())
        while held and not stop.is_set():
            process_one(*held.popleft())
        bar.close()
    wall = time.perf_counter() - t0
    summary = {
        "bag": str(bag), "image_topics": sorted(prefixes),
        "outputs": sorted(set(prefixes.values())), "output_bag": str(out_dir / OUTPUT_BAG),
        "frames": stats["frames"], "skipped": stats["skipped"], "skip_reasons": stats["errors"],
        "interrupted": stop.is_set(),
        "seconds": round(wall, 2), "fps": stats["frames"] / wall if wall else None,
        "feature_bytes_mean": float(np.mean(stats["feature_bytes"])) if stats["frames"] else None,
        "jpeg_q90_bytes_mean": float(np.mean(stats["jpeg_bytes"])) if stats["frames"] else None,
        "model": card.get("name"), "codec": edge.codec, "split": edge.split,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def add_arguments(p) -> None:
    p.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--out", required=True,
                   help="output folder (gets outputs/ (a rosbag2 folder), annotated/ and "
                        "summary.json)")
    p.add_argument("--model", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--codec", default=None)
    # Checked with the model's other settings (ServerRunner) before anything is written.
    p.add_argument("--score-threshold", type=float, default=0.3)


def run(args) -> int:
    # Unusable input raises InputError (BagError, ConfigError, ...): the dispatcher prints
    # one line and returns 2.
    summary = process_bag(args.bag, args.out, args.model, args.device, args.precision,
                          args.codec, args.score_threshold)
    print(json.dumps(summary, indent=2))
    if summary["interrupted"]:
        print(f"mtl-split process: interrupted after {summary['frames']} frames; "
              f"{summary['output_bag']} is complete up to that frame", file=sys.stderr)
    return 0
