"""The benchmark's frames: unseen sim scenes through a 640x480 camera, at the model's input.

Two sets, both rendered once and cached (``.npz`` in an ignored folder):

- **stills**: ``frames_per_scene`` random views per scene, each with its own random field of
  view, exactly as ``mtl-split gen-data`` draws them (scene seed ``seed * 100_003 + scene``);
- **sequences**: the sim camera's trajectory played at 30 fps (``data.sim_sequences``, as
  ``mtl-split profile`` measures temporal codecs on), one fixed lens per sequence.

Every camera frame is letterboxed to the network input the way ``mtl-split eval`` loads frames
(``data.sim_sequences.add_frame``); the result is a dataset dict for ``evaluate``. The uint8
letterboxed image is the **model-input image**: exactly what a server running the whole
network needs from the robot.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.data.frames import DatasetBuilder
from mtl_split_core.data.sim_sequences import (
    add_frame,
    load_frames,
    poses_at_fps,
    save_frames,
    to_model_input,
)

SCENE_SEED_STRIDE = 100_003  # as sim.generate: scene seed = seed * stride + scene index
SEQUENCE_SCENE_OFFSET = 10_000  # sequences use scene indexes from here (disjoint from stills)
CAMERA_JPEG_QUALITY = 90  # the camera-frame JPEG that README's old baseline compared against


def scene_seed(seed: int, scene: int) -> int:
    return seed * SCENE_SEED_STRIDE + scene


def _add(builder: DatasetBuilder, frame, input_wh: tuple[int, int], extra: dict,
         noise_rng: np.random.Generator | None, noise: float) -> None:
    rgb = frame.rgb
    if noise > 0 and noise_rng is not None:
        rgb = np.clip(np.rint(rgb + noise_rng.normal(0.0, noise, rgb.shape)), 0, 255
                      ).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                    CAMERA_JPEG_QUALITY])
    assert ok
    camera_jpeg = cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1]
    extra.setdefault("camera_jpeg_images", []).append(to_model_input(camera_jpeg, input_wh))
    extra.setdefault("camera_jpeg_bytes", []).append(len(jpg))
    add_frame(builder, rgb, frame, input_wh)


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
                          for pose in poses_at_fps(Trajectory(scene), n))
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
CACHE_VERSION = 2  # in the file name: a format change renders again instead of misreading


def save(data: dict, path: Path) -> None:
    save_frames(data, path, EXTRAS)


def load(path: Path) -> dict:
    return load_frames(path, EXTRAS)


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
