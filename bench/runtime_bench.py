"""Edge and server latency breakdown of the default model (torch + codec path, no ROS).

    python bench/runtime_bench.py --device cpu            # this machine
    python bench/runtime_bench.py --device cuda --frames bench/frames.npz   # on the GPU box

Per stage: image upload + letterbox, backbone prefix + bottleneck, encode (edge); decode,
rest of the network + heads, post-processing (server). Medians over --repeats frames, after a
warm-up, with the device synchronised around each stage.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from mtl_split_core.codec import decode, encode
from mtl_split_core.model import load_model
from mtl_split_core.preprocess import letterbox_tensor
from mtl_split_core.runtime.model_files import resolve_model_path
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.tasks import PostprocessContext, get_tasks


def load_frames(path, count):
    if path:
        import cv2
        z = np.load(path)
        return [cv2.imdecode(z["jpeg"][o:e], cv2.IMREAD_COLOR)[..., ::-1].copy()
                for o, e in zip(z["offsets"][:-1], z["offsets"][1:])][:count]
    from mtl_split_core.sim.scene import SimScene
    with SimScene(11, 640, 480) as s:
        return [s.render().rgb for _ in range(count)]


@torch.inference_mode()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--frames", default=None, help="npz of JPEG frames (bench/make_frames)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--codec", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(2)
    dtype = torch.float16 if args.precision == "fp16" else torch.float32
    model, card = load_model(resolve_model_path(""))
    model = model.to(dev, dtype).eval()
    server = ServerRunner(model, card, device=args.device, precision=args.precision)
    codec = args.codec or card["codec"]
    split = card["default_split"]
    frames = load_frames(args.frames, 10)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    t = {k: [] for k in ("letterbox", "edge_net", "encode", "decode", "server_net", "post",
                         "edge_total", "server_total")}
    for i in range(args.repeats + 5):
        rgb = frames[i % len(frames)]
        sync()
        t0 = time.perf_counter()
        x, tr = letterbox_tensor(torch.from_numpy(rgb).to(dev), tuple(card["input_size"]))
        sync()
        t1 = time.perf_counter()
        z = model.edge(x.to(dtype)[None], split)[0]
        sync()
        t2 = time.perf_counter()
        enc = encode(z.float(), codec)
        t3 = time.perf_counter()
        zz = torch.from_numpy(decode(enc)).to(dev, dtype)[None]
        sync()
        t4 = time.perf_counter()
        out = model.server(zz, split)
        sync()
        t5 = time.perf_counter()
        # Every task's post-processing of this frame, brought to the host (ServerRunner's
        # batch path does the same for a whole batch in one copy).
        context = PostprocessContext(transform=tuple(tr), source_size=(640, 480))
        for task in get_tasks(server.tasks):
            task.postprocess(out, context)
        sync()
        t6 = time.perf_counter()
        if i >= 5:
            for k, v in zip(("letterbox", "edge_net", "encode", "decode", "server_net", "post"),
                            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                t[k].append(1e3 * v)
            t["edge_total"].append(1e3 * (t3 - t0))
            t["server_total"].append(1e3 * (t6 - t3))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    med = {k: float(np.median(v)) for k, v in t.items()}
    print(f"device {name} ({args.device}, {args.precision}), codec {codec}, split {split}, "
          f"640x480 frames -> {card['input_size']}")
    print("| stage | median ms |\n|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} |")
    print("JSON " + json.dumps(med))


if __name__ == "__main__":
    main()
