"""One small simulator render shared by the real-data-set fixtures (known image, depth, K), and
PNG writers that make the folders on the way."""

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mtl_split_core.sim.scene import Frame, SimScene

WIDTH, HEIGHT = 96, 72  # not square: a swapped axis shows


@lru_cache(maxsize=4)
def sim_frame(seed: int = 0) -> Frame:
    """The first frame of scene ``seed`` at 96x72 (depth 0 where nothing was hit)."""
    with SimScene(seed, WIDTH, HEIGHT) as scene:
        return scene.render()


def write_png(path: Path, array: np.ndarray) -> Path:
    """Write a single-channel array (its own bit depth) or an RGB image as PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = array[..., ::-1] if array.ndim == 3 else array
    assert cv2.imwrite(str(path), np.ascontiguousarray(data)), path
    return path
