"""Entropy-table blocks and feature-like tensors for the entropy codec tests (eb, ebc and the
temporal context tables): small, deterministic, fitted to what they code."""

from __future__ import annotations

import numpy as np

from mtl_split_core.entropy_tables import PRECISION, integer_frequencies


def correlated(n: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """float32 (n, C, H, W): smooth fields shared by the channels (what a feature map looks
    like to a context model: neighbours and channels predict each other, the channels mixed
    alike in every call)."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    mix = np.random.default_rng(99).normal(1, 0.3, (1, c, 1, 1))
    base = rng.normal(0, 1, (n, 1, h + 2, w + 2))
    smooth = sum(base[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) / 3
    return (smooth * mix * rng.choice([0.3, 2.0], (n, 1, 1, 1))
            + rng.normal(0, 0.3, (n, c, h, w))).astype(np.float32)


def v1_tables(y: np.ndarray, gains: list[float]) -> dict:
    """An eb block (version 1) whose tables fit ``y`` (N, C, H, W) at ``gains``."""
    c = y.shape[1]
    points = []
    for g in gains:
        s = np.rint(y * g).astype(np.int64).transpose(1, 0, 2, 3).reshape(c, -1)
        lo = s.min(1) - 1
        points.append({"gain": [g] * c, "lo": [int(v) for v in lo], "freqs": [
            [int(v) for v in integer_frequencies(np.bincount(s[ch] - lo[ch],
                                                             minlength=s[ch].max() - lo[ch] + 3)
                                                 + 0.5)] for ch in range(c)]})
    return {"version": 1, "split": "s16", "precision": PRECISION, "operating_points": points}


def default_with_fewer_tables(folder, context: bool):
    """models/default saved into ``folder`` with only its eb tables (``context`` False: an
    entropy block of version 1) or its eb and ebc tables (True: version 2), no temporal ones:
    a card of each kind without shipping one. Its own fingerprint; returns the folder."""
    import dataclasses
    from pathlib import Path

    from mtl_split_core.model import load_model, save_model

    net, _ = load_model(Path(__file__).parents[2] / "models" / "default")
    block = {k: v for k, v in net.config.entropy.items() if k != "temporal"}
    block["version"] = 2 if context else 1
    if not context:
        block.pop("context")
    codec = "ebc-3/1" if context else "eb-3/1"
    net.config = dataclasses.replace(net.config, entropy=block, codec=codec)
    save_model(folder, net)
    return folder
