"""What the server spends per frame after the network: post-processing (network outputs ->
result fields and views) and building the output messages (rclpy), for one source tree.

Run from a tree's root (its own code is imported), e.g. this branch and the code it replaces,
in one session on one machine:

    python bench/postprocess_bench.py --json after.json
    (cd ../before && PYTHONPATH=. python $OLDPWD/bench/postprocess_bench.py --json before.json)

The network is run once per batch size and its outputs replayed, so ``post_ms`` is the
post-processing alone (``ServerRunner.run_batch`` with the network call replaced), not a
difference of two large noisy numbers (on a GPU: until the results are on the host, as the
server's worker waits for them). ``build_ms`` is ``outputs.assemble`` over every
per-frame output (what a server with a subscriber on each topic builds) with rclpy's message
classes; ``outputs_ms`` each output alone, and ``cloud`` the point cloud per ``point_stride``
(its cost and size: the decimation switch). Works with either ``assemble`` signature (before
and after #25); the fastest of ``--repeats`` batches (``_best_ms``) of real 640x480 sim frames
(bench/frames.npz), default model, ``--device`` (cpu) and ``--precision`` (fp32).
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mtl_split_core.plan.profile import load_jpeg_frames
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_ros import outputs
from mtl_split_ros.msg_factory import RclpyMessages

FRAMES = Path(__file__).resolve().parent / "frames.npz"
K = [520.0, 0.0, 319.5, 0.0, 520.0, 239.5, 0.0, 0.0, 1.0]  # a 640x480 camera


def _best_ms(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls: on a host shared with other jobs (this 2-core one
    runs several), the cost without their interference; a median moved 30x with the load."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.min(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    torch.set_num_threads(2)
    # Newer assemble: (result, header, style, wanted, factory); before #25 it also took the
    # source size and camera_info, and admit took no camera.
    new_api = "source_size" not in inspect.signature(outputs.assemble).parameters
    if new_api:  # (the views exist since #25)
        from mtl_split_core.runtime.frame_views import (
            color_table,
            colorize,
            frame_point_cloud,
            map_camera,
        )
    # Eager (no CUDA graphs): the network's outputs are replayed below.
    edge = EdgeRunner.from_path("", device=args.device, precision=args.precision)
    server = ServerRunner.from_path("", device=args.device, precision=args.precision,
                                    cuda_graphs=False)
    card = server.card
    stills = load_jpeg_frames(FRAMES)
    frames = [cv2.resize(stills[i % len(stills)], (640, 480)) for i in range(args.batch)]
    packets = [edge(rgb) for rgb in frames]
    items = [server.admit(p, K) if new_api else server.admit(p) for p in packets]
    focals = [K[4]] * len(items)
    # The network once; its outputs replayed (run_batch's only call into the model here).
    real = server.model.server
    z = torch.from_numpy(np.stack([i.codes for i in items])).to(server.device, server.dtype)
    split = server.split_names[items[0].packet.split_index]
    focal_in = torch.tensor([K[4] * p.transform[1] for p in packets], dtype=torch.float32,
                            device=server.device)
    with torch.inference_mode():
        cached = real(z, split, focal=focal_in)
    server.model.server = lambda *a, **k: cached  # type: ignore[method-assign]

    factory = RclpyMessages()
    header = factory.make("std_msgs/msg/Header", frame_id="cam")
    info = factory.make("sensor_msgs/msg/CameraInfo", width=640, height=480, k=K)
    style = outputs.OutputStyle.from_card(card)
    types = outputs.output_types(style)
    latched = outputs.latched(style) if new_api else set()
    every = [s for s in types if s not in latched]

    def run(views: bool) -> list:
        if not new_api:
            return server.run_batch(items, focals)
        request = outputs.view_request(style, every if views else ())
        return server.run_batch(items, focals, views=[request] * len(items))

    def build(result, wanted, st=style) -> dict:
        if new_api:
            return outputs.assemble(result, header, st, wanted, factory)
        return outputs.assemble(result, packets[0].source_size, header, info, st, wanted,
                                factory)

    out: dict = {"tree": str(Path.cwd()), "api": "after" if new_api else "before",
                 "batch": args.batch, "repeats": args.repeats, "model": card["name"],
                 "fingerprint": card["fingerprint"], "input_size": card["input_size"],
                 "machine": f"{platform.node()} {platform.processor() or platform.machine()}"
                            f", torch {torch.__version__}, {torch.get_num_threads()} threads",
                 "device": (torch.cuda.get_device_name(server.device)
                            if server.device.type == "cuda" else "cpu"),
                 "precision": args.precision,
                 "date": time.strftime("%Y-%m-%d")}
    run(True)
    out["post_ms"] = _best_ms(lambda: run(True), args.repeats) / args.batch
    out["post_ms_no_views"] = (_best_ms(lambda: run(False), args.repeats) / args.batch
                               if new_api else out["post_ms"])
    results = run(True)
    result = results[0]
    out["detections"] = int(len(result.scores))
    out["build_ms"] = _best_ms(lambda: [build(r, every) for r in results],
                                 args.repeats) / args.batch
    messages = build(result, every)
    out["outputs_ms"] = {s: _best_ms(lambda s=s: build(result, {s}), args.repeats)
                         for s in every if s in messages}
    out["outputs_bytes"] = {s: _nbytes(m) for s, m in messages.items()}
    cloud = {}
    for stride in (1, 2, 4, 8):
        st = type(style)(**{**style.__dict__, "point_stride": stride})
        views = [outputs.view_request(st, {"points"})] if new_api else None
        made = server.run_batch(items[:1], focals[:1], *([views] if views else []))[0]
        msg = build(made, {"points"}, st)["points"]
        cloud[stride] = {"points": int(msg.width), "bytes": len(msg.data),
                         "build_ms": _best_ms(lambda r=made, t=st: build(r, {"points"}, t),
                                                args.repeats)}
        if new_api:  # the view itself, one frame (what the batch adds per frame wanting it)
            camera = map_camera(made.camera, made.source_size, made.depth.shape)
            cloud[stride]["view_ms"] = _best_ms(lambda r=made, c=camera, n=stride: (
                frame_point_cloud(r.depth, r.segmentation, c, style.seg_palette, n)),
                args.repeats)
    out["cloud"] = cloud
    if new_api:
        table = torch.from_numpy(color_table(style.seg_palette))
        ids = torch.from_numpy(result.segmentation)[None]
        out["color_view_ms"] = _best_ms(lambda: colorize(ids, table), args.repeats)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def _nbytes(msg) -> int:
    """The size of a message's big arrays (data fields), the rest counted as 0."""
    data = getattr(msg, "data", None)
    return len(data) if data is not None and not isinstance(data, str) else 0


if __name__ == "__main__":
    main()
