"""On the GPU machine (no pytest there): the batched device post-processing gives what the host
functions give. One CUDA-graph server (fp16) runs mixed batches with views requested; each
result's colours must be ``viz.colorize_segmentation`` of its class map, its point cloud
``frame_views.frame_point_cloud`` of its depth and class map (host, CPU), and its fields those
of the eager server one frame at a time (within fp16 tolerance). Exit 1 on a mismatch.

    python3 bench/gpu/check_postprocess.py          # after bench/gpu/env.sh
    python bench/gpu/check_postprocess.py cpu       # the same checks here (fp32, no graphs)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from mtl_split_core.host_copy import HostCopy
from mtl_split_core.plan.profile import load_jpeg_frames
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.frame_views import ViewRequest, frame_point_cloud
from mtl_split_core.runtime.server import ServerRunner
from mtl_split_core.viz import class_palette, colorize_segmentation

FRAMES = Path(__file__).resolve().parents[1] / "frames.npz"


def main(device: str) -> int:
    failures = []
    precision = "fp16" if device.startswith("cuda") else "fp32"
    tensors = [torch.rand(3, 5, 7, device=device), torch.arange(11, device=device).to(torch.uint8),
               torch.rand(4, 6, device=device)[:, 1:4]]
    copy = HostCopy(device, pack=True)
    copy.add(tensors)
    if not all(np.array_equal(a, t.cpu().numpy()) for a, t in zip(copy.fetch(), tensors)):
        failures.append("HostCopy")
    edge = EdgeRunner.from_path("", device=device, precision=precision)
    graph = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.1)
    eager = ServerRunner.from_path("", device=device, precision=precision, score_threshold=0.1,
                                   cuda_graphs=False)
    palette = class_palette(len(graph.card["segmentation_classes"]))
    sizes = [(640, 480), (320, 240), (1280, 720), (480, 640), (640, 480)]
    k = [520.0, 0.0, 319.5, 0.0, 520.0, 239.5, 0.0, 0.0, 1.0]
    frames = load_jpeg_frames(FRAMES)
    items = [graph.admit(edge(cv2.resize(rgb, size)), k if i % 2 else None)
             for i, (rgb, size) in enumerate(zip(frames, sizes))]
    views = [ViewRequest(frozenset({"segmentation"}), 4 if i != 2 else 0)
             for i in range(len(items))]
    for result, item, view in zip(graph.run_batch(items, views=views), items, views):
        if not (result.colors["segmentation"]
                == colorize_segmentation(result.segmentation, palette)).all():
            failures.append("colours")
        if view.cloud_stride:
            camera = graph.map_camera(item, result.depth.shape)  # reference camera without K
            host = frame_point_cloud(result.depth, result.segmentation, camera, palette, 4)
            if host.shape != result.cloud.shape or not np.allclose(host, result.cloud,
                                                                   rtol=1e-6, atol=1e-6):
                failures.append("cloud")
        elif result.cloud is not None:
            failures.append("cloud not requested but made")
        single = eager(item)
        if not np.allclose(result.depth, single.depth, rtol=1e-2, atol=1e-2) or \
                (result.segmentation == single.segmentation).mean() < 0.99 or \
                not np.allclose(result.scores[:5], single.scores[:5], atol=1e-2):
            failures.append("graph batch != eager single")
        print(f"{item.source_size}: {len(result.scores)} detections, cloud "
              f"{None if result.cloud is None else result.cloud.shape}, "
              f"timings {result.timings_ms}", flush=True)
    print("CHECK " + ("OK" if not failures else "FAILED: " + ", ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cuda"))
