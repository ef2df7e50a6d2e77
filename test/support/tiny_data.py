"""A tiny synthetic dataset for training and evaluation tests."""

import numpy as np


def tiny_dataset(n: int = 8, seed: int = 0) -> dict:
    """``n`` 96x64 frames with one red box each (class 0 / segmentation id 4, depth 2 m on 8 m):
    the shapes training and evaluation take, small enough for a CPU step in a test."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 64, 96, 3), np.uint8)
    seg = np.zeros((n, 64, 96), np.uint8)
    depth = np.full((n, 64, 96), 8.0, np.float32)
    boxes, labels = [], []
    for i in range(n):
        x, y = rng.integers(5, 60), rng.integers(5, 30)
        images[i, y:y + 20, x:x + 25] = (200, 40, 40)
        seg[i, y:y + 20, x:x + 25] = 4
        depth[i, y:y + 20, x:x + 25] = 2.0
        boxes.append(np.array([[x, y, x + 25, y + 20]], np.float32))
        labels.append(np.array([0]))
    return {"images": images, "seg": seg, "depth": depth, "boxes": boxes, "labels": labels}
