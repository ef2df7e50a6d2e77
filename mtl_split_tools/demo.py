"""`make demo`: sim camera -> edge -> server as separate processes over DDS, plus a collector.

Runs a fixed number of frames per sim camera seed (``--seeds 0,1,2``: one scene and camera
path each, one after another), or replays a bag (``--bag PATH``, ``make demo
DEMO_ARGS="--bag samples/sim_camera"``), then writes ``demo_out/``: ``contact_sheet.png`` (input |
detections | segmentation | depth), ``metrics.json`` (latency, bytes vs JPEG, fps, drops,
accuracy against the simulator's ground truth per seed and over all, and how the frames differ
from the test split's random views: ``demo_views``) and prints a summary. Every started process
is ended on exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy

from mtl_split_core.classes import DETECTION_CLASSES, SEGMENTATION_CLASSES
from mtl_split_core.image_codec import (
    DEFAULT_IMAGE_CODEC,
    encode_image,
    is_image_codec,
    model_input_image,
)
from mtl_split_core.runtime.edge import known_codec
from mtl_split_core.runtime.model_files import read_model_card_param
from mtl_split_core.viz import (
    class_palette,
    colorize_depth,
    colorize_segmentation,
    contact_sheet,
    detection_palette,
    draw_detections,
)
from mtl_split_ros.outputs import detection_arrays
from mtl_split_tools import demo_views
from mtl_split_tools.collector import Collector
from mtl_split_tools.node_processes import node_command, start, stop_all
from mtl_split_tools.sim_camera_node import PARAMS as SIM_CAMERA_PARAMS

_boxes = detection_arrays  # vision_msgs Detection2DArray -> (boxes, class ids, scores)


def _spin_until(node, condition, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        if condition():
            return True
    return False


def evaluate_frames(frames: list[dict], card: dict) -> dict:
    """The one evaluation loop (mtl_split_core.evaluate.score) over the collected messages.
    The sim's ground truth uses the sim's classes: detection and segmentation are scored only
    for a model with those same lists, depth always."""
    from mtl_split_core.evaluate import score
    from mtl_split_core.model.config import ModelConfig

    sim_classes = (tuple(card.get("detection_classes", ())) == DETECTION_CLASSES and
                   tuple(card.get("segmentation_classes", ())) == SEGMENTATION_CLASSES)
    tasks = [t for t in card.get("tasks", ("depth",)) if sim_classes or t == "depth"]

    def pairs():
        for f in frames:
            boxes, labels, scores = _boxes(f["dets"])
            gt_boxes, gt_labels, _ = _boxes(f["gt_dets"])
            yield ({"boxes": boxes, "class_ids": labels, "scores": scores,
                    "segmentation": f["seg"], "depth": f["depth"]},
                   {"boxes": gt_boxes, "labels": gt_labels, "seg": f["gt_seg"],
                    "depth": f["gt_depth"]})
    return score(pairs(), ModelConfig(detection_classes=DETECTION_CLASSES,
                                      segmentation_classes=SEGMENTATION_CLASSES), tasks=tasks)


def summarize(frames: list[dict], published: int, wall_s: float, diagnostics: dict,
              card: dict, ground_truth: bool = True) -> dict:
    def pct(values, q):
        return float(np.percentile(values, q)) if len(values) else None
    # Image received -> detections received, both at the collector: works for live stamps and
    # for bags (whose header stamps are from the past).
    e2e = [1e3 * (f["arrival"]["dets"] - f["arrival"]["image"]) for f in frames]
    edge = [f["features"]["edge_ms"] for f in frames]
    feat_bytes = [f["features"]["bytes"] for f in frames]
    jpeg = [len(cv2.imencode(".jpg", f["image"][..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1])
            for f in frames]
    # The baseline split computing must beat: the model-input image with the default image
    # codec (what split `input` uploads), not the camera's JPEG.
    size = (int(card["input_size"][0]), int(card["input_size"][1]))
    upload = [len(encode_image(model_input_image(f["image"], size)[0])) for f in frames]
    arrivals = sorted(f["arrival"]["dets"] for f in frames)
    fps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else None
    server = next((v for k, v in diagnostics.items() if k.endswith("mtl_split/features")), {})
    edge_diag = next((v for k, v in diagnostics.items() if k.endswith(": edge")), {})
    return {
        "frames_published": published, "frames_complete": len(frames),
        "wall_s": round(wall_s, 1), "fps": fps,
        "latency_ms": {"edge_p50": pct(edge, 50), "edge_p95": pct(edge, 95),
                       "server_p50": _num(server.get("server_ms_p50")),
                       "server_p95": _num(server.get("server_ms_p95")),
                       "end_to_end_p50": pct(e2e, 50), "end_to_end_p95": pct(e2e, 95)},
        "bytes_per_frame": {"features_mean": float(np.mean(feat_bytes)),
                            "jpeg_q90_mean": float(np.mean(jpeg)),
                            "ratio": float(np.mean(feat_bytes) / np.mean(jpeg)),
                            "upload_codec": DEFAULT_IMAGE_CODEC,
                            "upload_mean": float(np.mean(upload)),
                            "ratio_to_upload": float(np.mean(feat_bytes) / np.mean(upload)),
                            "codec": frames[0]["features"]["codec"],
                            "shape": frames[0]["features"]["shape"]},
        "drops": {"edge": _num(edge_diag.get("drops")), "server": _num(server.get("drops")),
                  "not_completed": published - len(frames)},
        "accuracy": evaluate_frames(frames, card) if ground_truth else None,
    }


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def write_sheet(frames: list[dict], card: dict, path: Path, count: int = 6) -> None:
    """Input, detections, segmentation and depth of a few frames, in the model's classes."""
    det_classes = tuple(card["detection_classes"])
    seg_classes = tuple(card["segmentation_classes"])
    palette = class_palette(len(seg_classes))
    det_palette = detection_palette(det_classes, seg_classes)
    picks = [frames[i] for i in
             np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)]
    rows = []
    for f in picks:
        boxes, labels, scores = detection_arrays(f["dets"])
        rows.append([f["image"],
                     draw_detections(f["image"], boxes, labels, scores, det_classes,
                                     det_palette),
                     colorize_segmentation(f["seg"], palette),
                     colorize_depth(f["depth"], 0.3, 40.0)])
    contact_sheet(rows, ["input", "detections", "segmentation", "depth (m)"], path)


def _bag_source(bag) -> dict:
    """What the demo needs to know about a bag: image topic kind, frames, ground truth."""
    from mtl_split_core.bags import open_bag
    with open_bag(bag) as reader:
        conns = {c.topic.lstrip("/"): c for c in reader.connections}
        if "image/compressed" in conns:
            image = "image/compressed"
        elif "image" in conns:
            image = "image"
        else:
            raise SystemExit(f"{bag}: the demo replays a bag with an 'image' or "
                             f"'image/compressed' topic; it has {sorted(conns)} (use "
                             f"`mtl-split process` or --remap for other names)")
        gt = all(t in conns for t in ("gt/depth", "gt/segmentation", "gt/detections"))
        topics = [conns[t].topic for t in (image, "camera_info", "gt/depth", "gt/segmentation",
                                           "gt/detections") if t in conns]
        return {"compressed": image == "image/compressed", "frames": conns[image].msgcount,
                "ground_truth": gt, "topics": topics,
                "seconds": (reader.end_time - reader.start_time) / 1e9}


def seed_list(text: str) -> list[int]:
    """``--seeds``: one seed or several, comma-separated ("0,1,2"), each a distinct scene."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers such as 0 or 0,1,2"
                                         ) from None
    if len(set(seeds)) != len(seeds) or any(not 0 <= x < 2 ** 31 for x in seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: distinct seeds in 0..2147483647")
    return seeds


def _accuracy_line(what: str, acc: dict) -> str:
    return (f"accuracy vs sim ground truth, {what}: mAP@0.5 {acc['detection']['mAP50']:.3f}, "
            f"mIoU {acc['segmentation']['mIoU']:.3f}, depth delta<1.25 "
            f"{acc['depth']['delta1']:.3f}")


def compare_views(frames: list[dict], seeds: list[int], card: dict) -> tuple[dict, list[str]]:
    """The demo frames' ground truth against random views of the same scenes (demo_views)."""
    network_height = int(card["input_size"][1])
    demo = demo_views.view_statistics(
        ((_boxes(f["gt_dets"])[0], f["gt_depth"], f["gt_depth"].shape[0]) for f in frames),
        network_height)
    views, vfov = demo_views.random_views(seeds, max(1, min(30, len(frames) // len(seeds))))
    random = demo_views.view_statistics(views, network_height)
    camera = {p.name: p.default for p in SIM_CAMERA_PARAMS}  # the demo sets none of these
    lines = demo_views.comparison_lines(demo, random, camera["vfov_deg"], vfov, network_height,
                                        (camera["width"], camera["height"]))
    return {"demo": demo, "random_views": random}, lines


def _run_frames(collector: Collector, gt: bool, expected: int, budget: float,
                seen: set[float]) -> list[dict]:
    """Spin until ``expected`` new complete frames (not in ``seen``) arrived, or nothing new
    came for 8 s after the first (a lost frame must not hold the demo for the whole budget)."""
    progress = {"n": 0, "at": time.time()}

    def new() -> list[dict]:
        return [f for f in collector.complete(gt) if f["stamp_s"] not in seen]

    def finished() -> bool:
        n = len(new())
        if n != progress["n"]:
            progress.update(n=n, at=time.time())
        return n >= expected or (n > 0 and time.time() - progress["at"] > 8.0)
    _spin_until(collector, finished, budget)
    frames = new()
    seen.update(f["stamp_s"] for f in frames)
    return frames


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames per seed (sim camera)")
    ap.add_argument("--rate", type=float, default=2.0)
    ap.add_argument("--seeds", "--seed", dest="seeds", type=seed_list, default=None,
                    metavar="N[,N...]",
                    help="sim camera seeds, one scene and camera path each, run one after "
                    "another (default 0); accuracy per seed and over all")
    ap.add_argument("--out", default="demo_out")
    ap.add_argument("--model", default="")
    ap.add_argument("--codec", default="",
                    help="the edge's codec, e.g. ebc-3/1 ('' = the model's default)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per seed at most")
    ap.add_argument("--bag", default=None, help="replay this rosbag2 instead of the sim camera")
    args = ap.parse_args(argv)
    if args.bag and args.seeds:
        ap.error("--seeds is for the sim camera; a --bag replays its own frames")
    if args.codec and (not known_codec(args.codec) or is_image_codec(args.codec)):
        ap.error(f"--codec {args.codec!r}: expected a feature codec such as q4-zstd/1 or "
                 "ebc-3/1")
    seeds = args.seeds or [0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    procs = []
    rclpy.init()
    collector = Collector()
    t0 = time.time()
    try:
        print(f"starting edge and server nodes (logs in {out}/)", flush=True)
        model = ["-p", f"model:={args.model}"] if args.model else []
        # The sim camera publishes reliably; a best-effort subscription would lose fragments
        # of 1 MB images under load and make the demo measure DDS, not the pipeline.
        edge_params = model + ["-p", "input_qos:=reliable"]
        if args.codec:
            edge_params += ["-p", f"codec:={args.codec}"]
        source = _bag_source(args.bag) if args.bag else None
        if source and source["compressed"]:
            edge_params += ["-p", "input_transport:=compressed"]
        procs.append(start(node_command("edge_node", edge_params), out / "edge.log"))
        procs.append(start(node_command("server_node", model), out / "server.log"))
        in_topic = "image/compressed" if source and source["compressed"] else "image"
        # The edge subscribes before its model has loaded (discovery overlaps the load), so
        # its subscription alone does not say it is ready: its first /diagnostics does (the
        # node spins only once constructed). Frames sent earlier would wait in its newest-frame
        # slot, and all but the last be replaced: the demo would not see every frame.
        ready = _spin_until(collector, lambda: any(p.poll() is not None for p in procs) or (
            collector.count_subscribers(in_topic) > 0 and
            collector.count_publishers("mtl_split/link_feedback") > 0 and
            any(name.endswith(": edge") for name in collector.diagnostics)), 120)
        if not ready or any(p.poll() is not None for p in procs):
            print("edge/server did not come up; see the logs", file=sys.stderr)
            return 1
        gt = source is None or source["ground_truth"]
        t1 = time.time()
        seen: set[float] = set()
        by_seed: dict[int, list[dict]] = {}
        if source:
            published = source["frames"]
            print(f"nodes ready after {t1 - t0:.1f}s; replaying {args.bag} "
                  f"({published} frames)", flush=True)
            procs.append(start([sys.executable, "-m", "mtl_split_tools.cli", "replay", args.bag,
                                # every replayed topic has the edge; camera_info only it
                                "--wait-subscribers", "1", "--topics", *source["topics"]],
                               out / "replay.log"))
            frames = _run_frames(collector, gt, published,
                                 min(args.timeout, source["seconds"] + 60), seen)
        else:
            published = args.frames * len(seeds)
            print(f"nodes ready after {t1 - t0:.1f}s; sim camera: {args.frames} frames at "
                  f"{args.rate} Hz for seed{'s' if len(seeds) > 1 else ''} "
                  f"{', '.join(map(str, seeds))}", flush=True)
            for seed in seeds:
                # Two subscribers to wait for before the first frame: the edge and the
                # collector.
                camera = start(node_command("sim_camera_node", {
                    "frames": args.frames, "rate": args.rate, "seed": seed,
                    "min_subscribers": 2}), out / f"sim_camera_seed{seed}.log")
                procs.append(camera)
                by_seed[seed] = _run_frames(collector, gt, args.frames,
                                            min(args.timeout, args.frames / args.rate + 60),
                                            seen)
                stop_all([camera])
                print(f"seed {seed}: {len(by_seed[seed])}/{args.frames} frames", flush=True)
            frames = [f for seed in seeds for f in by_seed[seed]]
        _spin_until(collector, lambda: False, 1.5)  # let the last diagnostics arrive
        if not frames:
            print("no frame went through the whole pipeline; see the logs", file=sys.stderr)
            return 1
        card = read_model_card_param(args.model or None)
        metrics = summarize(frames, published, time.time() - t1, collector.diagnostics, card,
                            gt)
        lines = []
        if by_seed:
            metrics["seeds"] = seeds
            if gt and len(seeds) > 1:
                metrics["accuracy_per_seed"] = {
                    str(seed): evaluate_frames(f, card) if f else None
                    for seed, f in by_seed.items()}
            metrics["frames_vs_test_split"], lines = compare_views(frames, seeds, card)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        write_sheet(frames, card, out / "contact_sheet.png")
        acc = metrics["accuracy"]
        lat, b = metrics["latency_ms"], metrics["bytes_per_frame"]
        print(f"\n{len(frames)}/{published} frames through "
              f"{'the bag' if source else 'sim camera'} -> edge -> server "
              f"({metrics['fps'] or 0:.2f} fps)")
        print(f"latency ms: edge p50 {lat['edge_p50']:.0f}, server p50 {lat['server_p50'] or 0:.0f}"
              f", end-to-end p50 {lat['end_to_end_p50']:.0f} / p95 {lat['end_to_end_p95']:.0f}")
        print(f"bytes/frame: features {b['features_mean']:.0f}; image upload of the model input "
              f"({b['upload_codec']}) {b['upload_mean']:.0f} ({b['ratio_to_upload']:.2f}x"
              f"{': the image is smaller' if b['ratio_to_upload'] > 1 else ''}); the camera's "
              f"JPEG q90 {b['jpeg_q90_mean']:.0f} ({b['ratio']:.3f}x)")
        for seed, seed_acc in metrics.get("accuracy_per_seed", {}).items():
            if seed_acc:
                print(_accuracy_line(f"seed {seed}", seed_acc))
        if acc:
            print(_accuracy_line(f"all {len(frames)} frames", acc))
        if lines:
            print("\nThese frames are not the test split's: the sim camera drives a path with a "
                  "fixed field of view, the test split (`mtl-split eval`) has random views "
                  "facing an object. Ground truth of both, same scenes:")
            print("\n".join(lines))
        print(f"\nwrote {out}/contact_sheet.png and {out}/metrics.json")
        return 0
    except KeyboardInterrupt:
        print("interrupted; stopping nodes", file=sys.stderr)
        return 130
    finally:
        stop_all(procs)
        collector.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
