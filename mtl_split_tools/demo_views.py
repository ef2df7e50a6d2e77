"""How the demo's frames differ from the test split's: the same statistics of the ground truth
(objects per frame, box sizes, distances) over the demo's camera path and over random views of
the same scenes rendered the way `mtl-split gen-data` renders its splits.

The demo's sim camera drives along a path between waypoints with a fixed field of view, so it
sees objects smaller, farther and less often than the dataset's random views (a random spot
1.2-8 m from an object, turned towards it, a random field of view); the demo's accuracy is
therefore lower than the test split's, and this says by how much the views differ.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from mtl_split_core.sim.scene import SimScene

# Box height (pixels at the network input) below which an object counts as small.
SMALL_BOX_PX = 12
RANDOM_VIEW_SIZE = (320, 240)  # gen-data's default size; statistics are relative to it
View = tuple[np.ndarray, np.ndarray, int]  # boxes (N, 4) x1 y1 x2 y2 px, depth (H, W) m, H


def view_statistics(views: Iterable[View], network_height: int) -> dict:
    """Ground-truth statistics of ``views``; box heights relative to the image height, small
    boxes: under ``SMALL_BOX_PX`` once the image is scaled to ``network_height`` rows."""
    counts, heights, distances = [], [], []
    for boxes, depth, image_height in views:
        counts.append(len(boxes))
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
            heights.append((y2 - y1) / image_height)
            patch = depth[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
            valid = patch[np.isfinite(patch) & (patch > 0)]
            if valid.size:
                distances.append(float(np.median(valid)))
    heights_arr = np.asarray(heights)
    return {
        "frames": len(counts),
        "with_objects": float(np.mean([c > 0 for c in counts])) if counts else None,
        "objects_per_frame": float(np.mean(counts)) if counts else None,
        "box_height_median": float(np.median(heights_arr)) if heights else None,
        "small_boxes": (float(np.mean(heights_arr * network_height < SMALL_BOX_PX))
                        if heights else None),
        "distance_median_m": float(np.median(distances)) if distances else None,
    }


def random_views(seeds: Iterable[int], per_seed: int) -> tuple[list[View], tuple[float, float]]:
    """``per_seed`` random views of each scene (the sim camera's ``seed`` = its scene), each with
    a random pose and field of view exactly as gen-data renders its train/val/test frames; and
    the range of those fields of view (degrees)."""
    views, vfov = [], (0.0, 0.0)
    for seed in seeds:
        with _native_stdout_silenced(), SimScene(seed, *RANDOM_VIEW_SIZE) as scene:
            vfov = scene.vfov_range
            for _ in range(per_seed):
                frame = scene.render()
                views.append((frame.boxes, frame.depth, RANDOM_VIEW_SIZE[1]))
    return views, vfov


def comparison_lines(demo: dict, random: dict, demo_vfov: float,
                     random_vfov: tuple[float, float], network_height: int,
                     demo_size: tuple[int, int]) -> list[str]:
    """A Markdown table of ``view_statistics`` for the demo and for random views."""
    def pct(v):
        return "–" if v is None else f"{100 * v:.0f}%"

    def num(v, unit=""):
        return "–" if v is None else f"{v:.1f}{unit}"

    rows = [("frames with an object", pct(demo["with_objects"]), pct(random["with_objects"])),
            ("objects per frame", num(demo["objects_per_frame"]),
             num(random["objects_per_frame"])),
            ("box height, median (of the image)", pct(demo["box_height_median"]),
             pct(random["box_height_median"])),
            (f"boxes under {SMALL_BOX_PX} px at the network's {network_height} rows",
             pct(demo["small_boxes"]), pct(random["small_boxes"])),
            ("object distance, median", num(demo["distance_median_m"], " m"),
             num(random["distance_median_m"], " m")),
            ("vertical field of view", f"{demo_vfov:g}°",
             f"{random_vfov[0]:g}–{random_vfov[1]:g}°"),
            ("rendered at", "{}x{}".format(*demo_size), "{}x{}".format(*RANDOM_VIEW_SIZE))]
    return ["| | demo camera path | random views (as the test split) |", "|---|---|---|",
            *(f"| {name} | {a} | {b} |" for name, a, b in rows)]


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """PyBullet's C code prints model-loading warnings to fd 1; keep the demo's output clean."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
