"""Labelled 30 fps camera sequences through sim scenes, at the model input: what a temporal
codec's stream is measured on (``mtl-split profile``'s ``temporal`` entry, and the sequences of
bench/rate_accuracy.py), and the npz file that carries them to a machine without the simulator
(``save_frames``/``load_frames``: bench/rate_accuracy.py's frame cache is one).

The sim camera's trajectory (``trajectory.Trajectory``, the path the sim camera node drives at
``TRAJECTORY_HZ``) played at ``FPS``: the same motion sampled 7.5x more often, with one fixed
lens per sequence, so consecutive frames are what a real 30 fps camera sees. Each frame is
letterboxed to the network input the way ``mtl-split eval`` loads frames (the image,
nearest-neighbour labels, scaled intrinsics).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtl_split_core.classes import IGNORE_ID
from mtl_split_core.data.frames import DatasetBuilder
from mtl_split_core.data.sources.loading import _fit, letterbox_k
from mtl_split_core.errors import InputError
from mtl_split_core.preprocess import letterbox, letterbox_params, to_model

if TYPE_CHECKING:  # the simulator (pybullet) only where frames are rendered: a host without
    # it still reads the cached sequences (bench/gpu/profile_server.sh --sequences-from)
    from mtl_split_core.sim.scene import Frame
    from mtl_split_core.sim.trajectory import Pose, Trajectory

TRAJECTORY_HZ = 4.0  # the sim camera node's default rate (config/sim_camera.yaml)
FPS = 30


def poses_at_fps(trajectory: Trajectory, count: int, fps: float = FPS) -> Iterator[Pose]:
    """``count`` poses along ``trajectory`` at ``fps`` (it steps at ``TRAJECTORY_HZ``)."""
    a, b = trajectory.next(), trajectory.next()
    pos = 0.0
    for _ in range(count):
        while pos >= 1.0:
            a, b, pos = b, trajectory.next(), pos - 1.0
        dyaw = (b[3] - a[3] + math.pi) % (2 * math.pi) - math.pi  # the short way round
        yield tuple(a[i] + ((dyaw if i == 3 else b[i] - a[i]) * pos)  # type: ignore[misc]
                    for i in range(5))
        pos += TRAJECTORY_HZ / fps


def to_model_input(rgb: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """uint8 camera frame -> uint8 model-input image (letterboxed as the edge does)."""
    x, _ = letterbox(rgb, input_wh)
    return np.clip(np.round(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)


def add_frame(builder: DatasetBuilder, rgb: np.ndarray, frame: Frame,
              input_wh: tuple[int, int]) -> None:
    """The camera image ``rgb`` with ``frame``'s labels (a ``SimScene.render`` result; ``rgb``
    may differ from ``frame.rgb``, e.g. with sensor noise), letterboxed to ``input_wh``."""
    h, w = rgb.shape[:2]
    transform, size = letterbox_params((w, h), input_wh)
    builder.add(to_model_input(rgb, input_wh),
                _fit(frame.seg, transform, size, input_wh, IGNORE_ID),
                _fit(frame.depth.astype(np.float32), transform, size, input_wh, 0.0),
                to_model(frame.boxes, transform).astype(np.float32), frame.labels,
                letterbox_k(np.asarray(frame.camera.k, np.float64).reshape(3, 3),
                            transform).reshape(9).tolist())


def render_sequences(scene_seeds: list[int], frames: int, camera_wh: tuple[int, int],
                     input_wh: tuple[int, int]) -> tuple[dict, list[int]]:
    """One sequence of ``frames`` frames per scene seed -> (dataset dict at ``input_wh``, the
    sequence index of each frame: ``evaluate``'s ``groups``)."""
    from mtl_split_core.sim.camera import SimCamera
    from mtl_split_core.sim.scene import SimScene
    from mtl_split_core.sim.trajectory import Trajectory

    builder, groups = DatasetBuilder(), []
    for g, seed in enumerate(scene_seeds):
        with SimScene(seed, *camera_wh) as scene:
            lens = SimCamera(*camera_wh, scene.camera().vfov_deg)
            for pose in poses_at_fps(Trajectory(scene), frames):
                frame = scene.render(pose, lens)
                add_frame(builder, frame.rgb, frame, input_wh)
                groups.append(g)
    return builder.build(), groups


_ARRAYS = ("images", "seg", "depth", "k")  # dataset fields stored as they are


def save_frames(data: dict, path: str | Path, extras: Sequence[str] = ("group_of",)) -> None:
    """A dataset dict (and its ``extras`` arrays, e.g. ``group_of``: each frame's sequence) as
    one compressed npz, written atomically. Depth is kept as float16 (relative error < 5e-4,
    far below the 1.25 of delta1), which halves the file."""
    path = Path(path)
    counts = [len(b) for b in data["boxes"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **{k: data[k] for k in (*_ARRAYS, *extras) if k != "depth"},
                        depth=data["depth"].astype(np.float16),
                        boxes=np.concatenate(data["boxes"]).reshape(-1, 4),
                        labels=np.concatenate(data["labels"]), counts=np.asarray(counts))
    tmp.replace(path)


def load_frames(path: str | Path, extras: Sequence[str] = ("group_of",)) -> dict:
    """``save_frames``' dataset dict with its ``extras``; InputError for a file that is not
    one."""
    try:
        with np.load(path) as z:
            data = {k: z[k] for k in (*_ARRAYS, *extras)}
            ends = np.cumsum(z["counts"])
            data["boxes"] = np.split(z["boxes"], ends[:-1])
            data["labels"] = np.split(z["labels"], ends[:-1])
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"sequences {path}: not a labelled frames npz: {err}") from None
    data["depth"] = data["depth"].astype(np.float32)
    if len({len(v) for v in data.values()}) != 1:
        raise InputError(f"sequences {path}: its arrays hold different frame counts")
    return data
