"""Fitting the context tables of ``ebc-<k>/1`` (``context_tables.py``) to training frames, for
a card's existing operating points (gains and symbols unchanged, so the decoded tensor is
eb-k's). Only training needs this module; coding uses the frozen integers it writes.

Per operating point, pass and channel: least squares of the signed symbol ``d`` and of ``|d|``
on the features the decoder knows (``context_tables.known_mask``), the weights rounded to
integers at a fixed scale (``WEIGHT_SCALE``: only the buckets they fall in matter), bucket edges
at integer quantiles of the training predictions, and per context the symbol counts smoothed
towards the eb-k table of the channel (``SMOOTHING`` symbols' worth: a rare context keeps
every symbol codable at about eb-k's cost) turned into integer frequencies.
"""

from __future__ import annotations

import numpy as np

from mtl_split_core.context_tables import (
    PASSES,
    SCHEME,
    SPATIAL,
    ContextCell,
    Features,
    encode_freqs,
    known_mask,
    pass_positions,
)
from mtl_split_core.entropy_tables import (
    CONTEXT_TABLES_VERSION,
    PRECISION,
    EntropyTables,
    integer_frequencies,
)

# Buckets of the signed (mean) and the magnitude predictor: 5 x 6 = 30 tables per channel and
# pass, measured on the default model's s16 tensor (more buckets: < 1% fewer bytes).
MEAN_BUCKETS = 5
MAG_BUCKETS = 6
SMOOTHING = 20.0
WEIGHT_SCALE = 256.0  # the largest |weight| of a predictor (<= context_tables.MAX_WEIGHT)


def _integer_weights(x: np.ndarray, target: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Least-squares weights of ``target`` on the ``known`` rows of ``x`` (F, n), as integers
    (an intercept is fitted and dropped: the edges absorb it)."""
    w = np.zeros(len(known), np.int64)
    if not known.any():
        return w
    a = np.concatenate([x[known].T.astype(np.float64), np.ones((x.shape[1], 1))], 1)
    sol, *_ = np.linalg.lstsq(a, target.astype(np.float64), rcond=None)
    sol = sol[:-1]
    peak = float(np.abs(sol).max())
    if not np.isfinite(peak) or peak == 0:
        return w
    w[known] = np.rint(sol / peak * WEIGHT_SCALE).astype(np.int64)
    return w


def _edges(pred: np.ndarray, buckets: int) -> list[int]:
    """Up to ``buckets - 1`` distinct integer edges at the quantiles of ``pred``."""
    if buckets < 2 or len(pred) == 0:
        return []
    q = np.quantile(pred, np.linspace(0, 1, buckets + 1)[1:-1], method="higher")
    return sorted({int(v) for v in q})


def fit_cell(x: np.ndarray, index: np.ndarray, center: int, base: np.ndarray,
             known: np.ndarray, mean_buckets: int = MEAN_BUCKETS,
             mag_buckets: int = MAG_BUCKETS) -> dict:
    """One (pass, channel)'s card entry from its training features ``x`` (F, n) int64 and
    table indices ``index`` (n,), the channel's ``center`` and eb table ``base`` (freqs)."""
    d = index.astype(np.int64) - center
    w_mean = _integer_weights(x, d, known)
    w_mag = _integer_weights(x, np.abs(d), known)
    pred = np.stack([w_mean @ x, w_mag @ x])
    mean_edges = _edges(pred[0], mean_buckets) if w_mean.any() else []
    mag_edges = _edges(pred[1], mag_buckets) if w_mag.any() else []
    cell = ContextCell(np.asarray(mean_edges, np.int64), np.asarray(mag_edges, np.int64),
                       np.zeros((0, 0), np.float32))
    ctx = cell.contexts(pred)
    n_ctx = (len(mean_edges) + 1) * (len(mag_edges) + 1)
    counts = np.zeros((n_ctx, len(base)))
    np.add.at(counts, (ctx, index), 1.0)
    prior = base / base.sum() * SMOOTHING
    freqs = encode_freqs(np.stack([integer_frequencies(row + prior) for row in counts]))
    return {"w_mean": [int(v) for v in w_mean], "w_mag": [int(v) for v in w_mag],
            "mean_edges": mean_edges, "mag_edges": mag_edges, "freqs": freqs}


def fit_context(tables: EntropyTables, y: np.ndarray, mean_buckets: int = MEAN_BUCKETS,
                mag_buckets: int = MAG_BUCKETS) -> dict:
    """The card's ``entropy`` block (version 2) = ``tables``' block plus context tables fitted
    to bottleneck outputs ``y`` (N, C, H, W) float32 of training frames."""
    n, c, h, w = y.shape
    if c != tables.channels:
        raise ValueError(f"{c} channels, the tables have {tables.channels}")
    flat = np.ascontiguousarray(y.transpose(1, 0, 2, 3)).reshape(c, -1)
    points = []
    for point in tables.points:
        index = point.symbols(flat).reshape(c, n, h, w).transpose(1, 0, 2, 3)
        center = np.array([int(np.argmax(np.bincount(index[:, ch].ravel(),
                                                     minlength=len(point.freqs[ch]))))
                           for ch in range(c)], np.int64)
        d = index.astype(np.int64) - center[None, :, None, None]
        passes = []
        for p, positions in enumerate(pass_positions(h, w)):
            feats = Features(d, positions)
            sym = index.reshape(n, c, -1)[:, :, positions].transpose(1, 0, 2).reshape(c, -1)
            passes.append([fit_cell(feats.of(ch).reshape(2 * c + SPATIAL, -1), sym[ch],
                                    int(center[ch]), point.freqs[ch], known_mask(c, ch, p),
                                    mean_buckets, mag_buckets)
                           for ch in range(c)])
        assert len(passes) == PASSES
        points.append({"center": [int(v) for v in center], "passes": passes})
    block = dict(tables.block)
    block["version"] = CONTEXT_TABLES_VERSION
    block["precision"] = PRECISION
    block["context"] = {"scheme": SCHEME, "operating_points": points}
    return block
