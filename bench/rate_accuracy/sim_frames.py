"""The benchmark's frames: unseen sim scenes through a 640x480 camera, at the model's input.

Two sets, both rendered once and cached (``.npz`` in an ignored folder):

- **stills**: ``frames_per_scene`` random views per scene, each with its own random field of
  view, exactly as ``mtl-split gen-data`` draws them (scene seed ``seed * 100_003 + scene``);
- **sequences**: the sim camera's trajectory (``sim.trajectory``, the path the sim camera node
  drives at its default 4 Hz) played at 30 fps, i.e. the same motion sampled 7.5x more often,
  with one fixed lens per sequence, so consecutive frames are what a real 30 fps camera sees.

Every camera frame is letterboxed to the network input the way ``mtl-split eval`` loads frames
(``preprocess.letterbox`` for the image, nearest-neighbour labels, scaled intrinsics); the
result is a dataset dict for ``evaluate``. The uint8 letterboxed image is the **model-input
image**: exactly what a server running the whole network needs from the robot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.frames import DatasetBuilder
from mtl_split_core.data.sources.loading import _fit, letterbox_k
from mtl_split_core.preprocess import letterbox, letterbox_params, to_model

SCENE_SEED_STRIDE = 100_003  # as sim.generate: scene seed = seed * stride + scene index
SEQUENCE_SCENE_OFFSET = 10_000  # sequences use scene indexes from here (disjoint from stills)
TRAJECTORY_HZ = 4.0  # the sim camera node's default rate (config/sim_camera.yaml)
FPS = 30
CAMERA_JPEG_QUALITY = 90  # the camera-frame JPEG that README's old baseline compared against


def scene_seed(seed: int, scene: int) -> int:
    return seed * SCENE_SEED_STRIDE + scene


def to_model_input(rgb: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """uint8 camera frame -> uint8 model-input image (letterboxed as the edge does)."""
    x, _ = letterbox(rgb, input_wh)
    return np.clip(np.round(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)


def _add(builder: DatasetBuilder, frame, input_wh: tuple[int, int], extra: dict,
         noise_rng: np.random.Generator | None, noise: float) -> None:
    rgb = frame.rgb
    if noise > 0 and noise_rng is not None:
        rgb = np.clip(np.rint(rgb + noise_rng.normal(0.0, noise, rgb.shape)), 0, 255
                      ).astype(np.uint8)
    h, w = rgb.shape[:2]
    transform, size = letterbox_params((w, h), input_wh)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                    CAMERA_JPEG_QUALITY])
    assert ok
    camera_jpeg = cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1]
    extra.setdefault("camera_jpeg_images", []).append(to_model_input(camera_jpeg, input_wh))
    extra.setdefault("camera_jpeg_bytes", []).append(len(jpg))
    builder.add(to_model_input(rgb, input_wh), _fit(frame.seg, transform, size, input_wh,
                                                    IGNORE_ID),
                _fit(frame.depth.astype(np.float32), transform, size, input_wh, 0.0),
                to_model(frame.boxes, transform).astype(np.float32), frame.labels,
                letterbox_k(np.asarray(frame.camera.k, np.float64).reshape(3, 3),
                            transform).reshape(9))


def _poses_30fps(trajectory, count: int) -> Iterator[tuple[float, ...]]:
    """``count`` poses along the trajectory at 30 fps (it steps at TRAJECTORY_HZ)."""
    a, b = trajectory.next(), trajectory.next()
    pos = 0.0
    for _ in range(count):
        while pos >= 1.0:
            a, b, pos = b, trajectory.next(), pos - 1.0
        dyaw = (b[3] - a[3] + math.pi) % (2 * math.pi) - math.pi  # the short way round
        yield tuple(a[i] + ((dyaw if i == 3 else b[i] - a[i]) * pos) for i in range(5))
        pos += TRAJECTORY_HZ / FPS


def render(kind: str, seed: int, count: int, group: int, camera_wh: tuple[int, int],
           input_wh: tuple[int, int], noise: float = 0.0, progress=None) -> dict:
    """Render ``count`` frames of ``kind`` ('stills': ``group`` views per scene; 'sequences':
    sequences of ``group`` frames) -> dataset dict + ``camera_jpeg_*`` + ``group_of`` (the
    scene or sequence of each frame)."""
    from mtl_split_core.sim.camera import SimCamera
    from mtl_split_core.sim.scene import SimScene
    from mtl_split_core.sim.trajectory import Trajectory

    builder, extra = DatasetBuilder(), {}
    groups: list[int] = []
    noise_rng = np.random.default_rng(seed) if noise > 0 else None
    offset = 0 if kind == "stills" else SEQUENCE_SCENE_OFFSET
    for g in range(-(-count // group)):
        n = min(group, count - g * group)
        with SimScene(scene_seed(seed, offset + g), *camera_wh) as scene:
            if kind == "stills":
                frames = (scene.render() for _ in range(n))
            else:
                lens = SimCamera(*camera_wh, scene.camera().vfov_deg)
                frames = (scene.render(pose, lens)
                          for pose in _poses_30fps(Trajectory(scene), n))
            for frame in frames:
                _add(builder, frame, input_wh, extra, noise_rng, noise)
                groups.append(g)
                if progress is not None:
                    progress.update(1)
    data = builder.build()
    data["camera_jpeg_images"] = np.stack(extra["camera_jpeg_images"])
    data["camera_jpeg_bytes"] = np.asarray(extra["camera_jpeg_bytes"])
    data["group_of"] = np.asarray(groups)
    return data


# ---------------------------------------------------------------- cache

EXTRAS = ("camera_jpeg_images", "camera_jpeg_bytes", "group_of")  # not dataset fields
_ARRAYS = ("images", "seg", "depth", "k", *EXTRAS)
CACHE_VERSION = 2  # in the file name: a format change renders again instead of misreading


def save(data: dict, path: Path) -> None:
    """Depth is kept as float16 (relative error < 5e-4, far below the 1.25 of delta1), which
    halves the cache (it travels to the GPU machine)."""
    counts = [len(b) for b in data["boxes"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **{k: data[k] for k in _ARRAYS if k != "depth"},
                        depth=data["depth"].astype(np.float16),
                        boxes=np.concatenate(data["boxes"]).reshape(-1, 4),
                        labels=np.concatenate(data["labels"]), counts=np.asarray(counts))
    tmp.replace(path)


def load(path: Path) -> dict:
    with np.load(path) as z:
        data = {k: z[k] for k in _ARRAYS}
        data["depth"] = data["depth"].astype(np.float32)
        ends = np.cumsum(z["counts"])
        data["boxes"] = np.split(z["boxes"], ends[:-1])
        data["labels"] = np.split(z["labels"], ends[:-1])
    return data


def cached(cache_dir: Path, kind: str, seed: int, count: int, group: int,
           camera_wh: tuple[int, int], input_wh: tuple[int, int], noise: float,
           progress=None) -> dict:
    """``render``'s frames, from the cache when these exact settings were rendered before."""
    name = (f"v{CACHE_VERSION}_{kind}_seed{seed}_n{count}_g{group}_{camera_wh[0]}x{camera_wh[1]}_"
            f"{input_wh[0]}x{input_wh[1]}_noise{noise:g}.npz")
    path = cache_dir / name
    if path.is_file():
        if progress is not None:
            progress.update(count)
        return load(path)
    save(render(kind, seed, count, group, camera_wh, input_wh, noise, progress), path)
    return load(path)  # the cached form, so a first run and a rerun score the same truth
