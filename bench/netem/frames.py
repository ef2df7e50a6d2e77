"""The benchmark's camera stream: sim frames as the camera's JPEG (q90) plus ground truth.

Both pipelines get exactly these JPEG bytes (a robot camera's ``image/compressed`` stream),
so they differ only in where the network runs and what crosses the link. The frames are
rendered once and cached in an .npz; accuracy of each pipeline's network path is computed
here on the same frames (the link drops whole messages, it never changes their content).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def render_frames(path: Path, count: int, width: int, height: int, seed: int = 7,
                  quality: int = 90, noise: float = 0.0, vfov_deg: float = 60.0) -> Path:
    """Render ``count`` frames along the sim camera's trajectory and save them to ``path``.

    ``noise``: standard deviation (8-bit levels) of Gaussian sensor noise added before JPEG
    encoding. Flat-shaded renders compress far better than real camera images; noise brings
    the JPEG size closer to a real sensor's.
    """
    from mtl_split_core.sim.camera import SimCamera
    from mtl_split_core.sim.scene import SimScene
    from mtl_split_core.sim.trajectory import Trajectory

    rng = np.random.default_rng(seed)
    camera = SimCamera(width, height, vfov_deg)
    jpegs, depth, seg, boxes, labels = [], [], [], [], []
    with SimScene(seed, width, height) as scene:
        trajectory = Trajectory(scene)
        for _ in range(count):
            frame = scene.render(trajectory.next(), camera)
            rgb = frame.rgb.astype(np.float32)
            if noise > 0:
                rgb += rng.normal(0.0, noise, rgb.shape).astype(np.float32)
            rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
            ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            jpegs.append(jpg.ravel())
            depth.append(frame.depth.astype(np.float16))
            seg.append(frame.seg)
            boxes.append(frame.boxes.astype(np.float32))
            labels.append(frame.labels.astype(np.int64))
    offsets = np.cumsum([0] + [len(j) for j in jpegs])
    box_offsets = np.cumsum([0] + [len(b) for b in boxes])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, jpeg=np.concatenate(jpegs), jpeg_offsets=offsets, depth=np.stack(depth),
        seg=np.stack(seg), boxes=np.concatenate(boxes).reshape(-1, 4),
        labels=np.concatenate(labels), box_offsets=box_offsets,
        k=np.array(camera.k, np.float64), size=np.array([width, height]),
        quality=quality, noise=noise)
    return path


class BenchFrames:
    """Frames saved by ``render_frames``: ``jpeg(i)`` bytes and ground truth of frame i."""

    def __init__(self, path: Path):
        with np.load(path) as z:
            self._z = {k: z[k] for k in z.files}
        self.count = len(self._z["jpeg_offsets"]) - 1
        self.width, self.height = (int(v) for v in self._z["size"])
        self.k = [float(v) for v in self._z["k"]]
        self.noise = float(self._z["noise"])

    def jpeg(self, i: int) -> bytes:
        o = self._z["jpeg_offsets"]
        return self._z["jpeg"][o[i]:o[i + 1]].tobytes()

    def jpeg_bytes_mean(self) -> float:
        return float(np.mean(np.diff(self._z["jpeg_offsets"])))

    def rgb(self, i: int) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.jpeg(i), np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])

    def truth(self, i: int) -> dict:
        o = self._z["box_offsets"]
        return {"depth": self._z["depth"][i].astype(np.float32), "seg": self._z["seg"][i],
                "boxes": self._z["boxes"][o[i]:o[i + 1]],
                "labels": self._z["labels"][o[i]:o[i + 1]]}


def pipeline_accuracy(frames: BenchFrames, model: str | None, codec: str,
                      split: str | None = None) -> dict:
    """mAP@0.5 / mIoU / depth delta<1.25 of edge -> ``codec`` -> server on the JPEG frames."""
    from mtl_split_core.evaluate import score
    from mtl_split_core.runtime.edge import EdgeRunner
    from mtl_split_core.runtime.server import ServerRunner

    edge = EdgeRunner.from_path(model, split=split, device="cpu", codec=codec)
    server = ServerRunner.from_path(model, device="cpu", score_threshold=0.05)
    nbytes = []

    def pairs():
        for i in range(frames.count):
            packet = edge(frames.rgb(i))
            nbytes.append(packet.nbytes)
            out = server(packet, focal_px=frames.k[4])  # as the server node: camera_info's fy
            yield out.as_dict(), frames.truth(i)
    metrics = score(pairs(), server.model.config, server.tasks)
    return {"codec": codec, "split": edge.split, "frames": frames.count,
            "feature_bytes_mean": float(np.mean(nbytes)),
            "mAP50": metrics["detection"]["mAP50"], "mIoU": metrics["segmentation"]["mIoU"],
            "delta1": metrics["depth"]["delta1"]}
