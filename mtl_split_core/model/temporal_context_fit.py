"""Fitting the temporal context tables (``temporal_context.py``) of a card that has ebc context
tables, to training sequences: the deltas of ``t<N>-c<H>-ebc-<k>/1``. Only training needs this
module; coding uses the frozen integers it writes.

Per operating point, pass and channel: the symbol counts of every (ebc context, reference
bucket) over consecutive frames of the sequences, smoothed towards the ebc context's own table
(``SMOOTHING`` symbols' worth: a rare pair codes about as ebc does), turned into integer
frequencies. The symbols are counted at every hold of ``HOLDS`` (the encoder's choice, not the
card's), so one set of tables serves every ``c<H>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtl_split_core.context_tables import ContextPoint, Features, encode_freqs, pass_positions
from mtl_split_core.entropy_tables import (
    PRECISION,
    TEMPORAL_TABLES_VERSION,
    EntropyTables,
    OperatingPoint,
    integer_frequencies,
)
from mtl_split_core.temporal_context import (
    SCHEME,
    cell_contexts,
    held_symbols,
    reference_buckets,
)

# Reference buckets: the reference's symbol clipped to center +-3 (7 buckets; +-1 codes ~15%
# more bytes, bench/results/temporal_context_analysis.md).
RADIUS = 3
SMOOTHING = 20.0
HOLDS = (0, 250, 500)  # thousandths of a step: the holds the tables are fitted on


def ebc_contexts(point: ContextPoint, index: np.ndarray) -> np.ndarray:
    """The ebc context id of every symbol of one frame's table indices (C, H, W), as
    ``ContextCoder`` picks them, (C, H, W) int64."""
    c, h, w = index.shape
    d = index.astype(np.int64) - point.center[:, None, None]
    ctx = np.zeros((c, h * w), np.int64)
    for p, positions in enumerate(pass_positions(h, w)):
        pred = Features(d, positions).predictions(point.w[p])
        for ch in range(c):
            ctx[ch, positions] = point.cells[p][ch].contexts(pred[ch])
    return ctx.reshape(c, h, w)


def sequence_symbols(point: OperatingPoint, y: np.ndarray, hold: int) -> np.ndarray:
    """Table indices (N, C, H*W) of one sequence's split tensors ``y`` (N, C, H, W) as the
    conditional encoder makes them: the first frame plain, each next one held on the last."""
    n, c = y.shape[:2]
    out = np.empty((n, c, y[0].size // c), np.int32)
    for t in range(n):
        flat = y[t].reshape(c, -1)
        out[t] = point.symbols(flat) if t == 0 else held_symbols(point, flat, out[t - 1], hold)
    return out


def fit_point(point: OperatingPoint, cpoint: ContextPoint, sequences: Sequence[np.ndarray],
              holds: Sequence[int] = HOLDS, radius: int = RADIUS) -> dict:
    """One operating point's ``temporal`` entry from the split tensors of training sequences
    (each (N, C, H, W) float32, frames in order)."""
    c, h, w = sequences[0].shape[1:]
    span = 2 * radius + 1
    positions = pass_positions(h, w)
    counts = [[np.zeros((cell_contexts(cpoint, p, ch) * span, len(point.freqs[ch])))
               for ch in range(c)] for p in range(len(positions))]
    for y in sequences:
        for hold in holds:
            index = sequence_symbols(point, y, hold)
            for t in range(1, len(index)):
                ctx = ebc_contexts(cpoint, index[t].reshape(c, h, w)).reshape(c, -1)
                row = ctx * span + reference_buckets(index[t - 1], cpoint.center, radius)
                for p, where in enumerate(positions):
                    for ch in range(c):
                        np.add.at(counts[p][ch], (row[ch, where], index[t, ch, where]), 1.0)
    freqs = []
    for p in range(len(positions)):
        chans = []
        for ch in range(c):
            ebc = cpoint.cells[p][ch].weights.astype(np.float64) + 1.0  # the ebc tables
            prior = np.repeat(ebc / ebc.sum(1, keepdims=True), span, axis=0) * SMOOTHING
            chans.append(encode_freqs(np.stack([integer_frequencies(r)
                                                for r in counts[p][ch] + prior])))
        freqs.append(chans)
    return {"radius": radius, "freqs": freqs}


def fit_temporal_context(tables: EntropyTables, sequences: Sequence[np.ndarray],
                         points: Sequence[int], holds: Sequence[int] = HOLDS,
                         radius: int = RADIUS) -> dict:
    """The card's ``entropy`` block (version 3) = ``tables``' block (with context tables) plus
    temporal tables for operating ``points``, fitted to training ``sequences``' split tensors
    (each (N, C, H, W) float32, frames in order, N >= 2)."""
    if not tables.has_context:
        raise ValueError("the tables have no context tables (ebc) to condition")
    if bad := [k for k in points if not 0 <= k < len(tables.context)]:
        raise ValueError(f"operating points {bad}: the tables have {len(tables.context)}")
    if not sequences or any(len(y) < 2 or y.shape[1] != tables.channels for y in sequences):
        raise ValueError(f"sequences of >= 2 frames of {tables.channels} channels needed")
    entries = [fit_point(tables.points[k], tables.context[k], sequences, holds, radius)
               if k in points else None for k in range(len(tables.context))]
    block = dict(tables.block)
    block["version"] = TEMPORAL_TABLES_VERSION
    block["precision"] = PRECISION
    block["temporal"] = {"scheme": SCHEME, "operating_points": entries}
    return block
