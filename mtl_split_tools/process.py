"""`mtl-split process BAG --out DIR`: edge and server in one process over every image topic of
a bag, without DDS. Writes ``DIR/outputs.mcap`` (a rosbag2 folder with detections,
segmentation, depth and annotated images, stamped like their inputs), ``DIR/annotated/<topic>/
NNNNNN.png`` and ``DIR/summary.json``. Needs no rclpy (rosbags reads and writes the bags).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mtl_split_core.bags import IMAGE_TYPES, BagError, BagWriter, messages, open_bag
from mtl_split_core.geometry import focal_y
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import PacketRejected, ServerRunner
from mtl_split_core.viz import annotate
from mtl_split_ros.image_msg import ImageDecodeError, image_to_rgb


def output_prefix(image_topic: str, taken: set) -> str:
    """Outputs go next to the camera: /cam/image -> /cam/mtl_split/ (full topic on a clash)."""
    parent = image_topic.rsplit("/", 1)[0]
    prefix = f"{parent}/mtl_split/"
    if prefix in taken:
        prefix = f"{image_topic}/mtl_split/"
    taken.add(prefix)
    return prefix


def process_bag(bag, out_dir, model: str = "", device: str = "auto", precision: str = "fp32",
                codec: str | None = None, score_threshold: float = 0.3,
                progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    edge = EdgeRunner.from_path(model, device=device, precision=precision, codec=codec)
    server = ServerRunner(edge.model, edge.card, device=device, precision=precision,
                          score_threshold=score_threshold)
    card = edge.card
    det_names = list(card["detection_classes"])
    stats = {"frames": 0, "skipped": 0, "feature_bytes": [], "jpeg_bytes": [], "errors": {}}
    t0 = time.perf_counter()
    try:
        return _process(bag, out_dir, edge, server, stats, t0, det_names, card, progress)
    except BagError as err:
        partial = out_dir / "outputs.mcap"
        note = f" (partial output left in {partial}: {stats['frames']} frames)" \
            if partial.exists() else ""
        raise BagError(f"{err}{note}") from err


def _process(bag, out_dir, edge, server, stats, t0, det_names, card, progress):
    with open_bag(bag) as reader:
        image_conns = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
        if not image_conns:
            raise BagError(f"{bag}: no sensor_msgs/Image or CompressedImage topic "
                           f"(topics: {sorted({c.topic for c in reader.connections})})")
        taken: set = set()
        prefixes = {c.topic: output_prefix(c.topic, taken) for c in image_conns}
        total = sum(c.msgcount for c in image_conns)
        with BagWriter(out_dir / "outputs.mcap") as writer:
            store = writer.store
            Det, DetArray = (store.types[f"mtl_split/msg/{n}"]
                             for n in ("Detection2D", "Detection2DArray"))
            Image = store.types["sensor_msgs/msg/Image"]
            bar = tqdm(total=total, desc="processing", unit="frame", disable=not progress)
            info_topics = {c.topic for c in reader.connections
                           if c.msgtype == "sensor_msgs/msg/CameraInfo"}
            focal_by_frame: dict[str, float] = {}  # newest camera_info fy per frame_id
            topics = {c.topic for c in image_conns} | info_topics
            for conn, stamp_ns, raw in messages(reader, bag, topics):
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic in info_topics:
                    if (fy := focal_y(msg.k)) is not None:
                        focal_by_frame[msg.header.frame_id] = fy
                    continue
                bar.update()
                try:
                    rgb = image_to_rgb(msg)
                except ImageDecodeError as err:
                    stats["skipped"] += 1
                    stats["errors"][str(err)] = stats["errors"].get(str(err), 0) + 1
                    continue
                packet = edge(rgb)
                try:
                    result = server(packet, focal_px=focal_by_frame.get(msg.header.frame_id))
                except PacketRejected as err:  # cannot happen with one model; be explicit
                    raise BagError(f"{bag}: internal mismatch: {err}") from err
                prefix, header = prefixes[conn.topic], msg.header
                dets = []
                for (x1, y1, x2, y2), c, s in zip(result.boxes.tolist(),
                                                  result.class_ids.tolist(),
                                                  result.scores.tolist()):
                    dets.append(Det(class_id=c, class_name=det_names[c], score=s,
                                    center_x=(x1 + x2) / 2, center_y=(y1 + y2) / 2,
                                    size_x=x2 - x1, size_y=y2 - y1, depth=0.0))
                writer.write(prefix + "detections", "mtl_split/msg/Detection2DArray",
                             stamp_ns, DetArray(header=header, detections=dets))
                sx, sy = result.output_scale
                boxes = result.boxes * np.array([sx, sy, sx, sy], np.float32)
                view = annotate(result.segmentation, result.depth, boxes, result.class_ids,
                                result.scores, det_names)
                for name, pixels, enc in (("segmentation", result.segmentation, "mono8"),
                                          ("depth", result.depth, "32FC1"),
                                          ("annotated", view, "rgb8")):
                    if pixels is None:
                        continue
                    pixels = np.ascontiguousarray(pixels)
                    writer.write(prefix + name, "sensor_msgs/msg/Image", stamp_ns, Image(
                        header=header, height=pixels.shape[0], width=pixels.shape[1],
                        encoding=enc, is_bigendian=0, step=pixels.strides[0],
                        data=pixels.view(np.uint8).ravel()))
                png_dir = out_dir / "annotated" / conn.topic.strip("/").replace("/", "_")
                png_dir.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(png_dir / f"{stats['frames']:06d}.png"), view[..., ::-1])
                stats["frames"] += 1
                stats["feature_bytes"].append(packet.nbytes)
                stats["jpeg_bytes"].append(len(cv2.imencode(
                    ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]))
            bar.close()
    wall = time.perf_counter() - t0
    summary = {
        "bag": str(bag), "image_topics": sorted(prefixes), "outputs": sorted(prefixes.values()),
        "frames": stats["frames"], "skipped": stats["skipped"], "skip_reasons": stats["errors"],
        "seconds": round(wall, 2), "fps": stats["frames"] / wall if wall else None,
        "feature_bytes_mean": float(np.mean(stats["feature_bytes"])) if stats["frames"] else None,
        "jpeg_q90_bytes_mean": float(np.mean(stats["jpeg_bytes"])) if stats["frames"] else None,
        "model": card.get("name"), "codec": edge.codec, "split": edge.split,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def add_arguments(p) -> None:
    p.add_argument("bag", help="rosbag2 folder or .mcap/.db3 file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default="")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--codec", default=None)
    p.add_argument("--score-threshold", type=float, default=0.3)


def run(args) -> int:
    try:
        summary = process_bag(args.bag, args.out, args.model, args.device, args.precision,
                              args.codec, args.score_threshold)
    except BagError as err:
        print(f"mtl-split process: {err}")
        return 1
    print(json.dumps(summary, indent=2))
    return 0
