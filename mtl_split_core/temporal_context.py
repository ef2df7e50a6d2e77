"""Temporal context tables: the delta frames of the conditional temporal codecs
``t<N>-c<H>-ebc-<k>/1`` (``temporal_codec.py``). A delta carries every symbol of eb-<k>'s
quantizer (the decoded tensor is eb-k's symbols), coded in ebc-<k>'s order
(``context_tables.ContextCoder``) with one more condition: the co-located symbol of the
decoder's reference (the previous frame's reconstruction). On the sim sequences 88% of the
symbols equal it (bench/results/temporal_context_analysis.md), so a table per (ebc context,
reference symbol) codes a frame in about half of ebc-k's bytes.

Integers only, as ebc (bit-exact on every machine): the reference's symbol ``r`` of channel c
gives the bucket ``clip(r - center[c], -R, R) + R`` (``R`` = the point's radius, the ebc
point's ``center``), and the symbol is coded with table ``ctx * (2R + 1) + bucket`` of its
(pass, channel), ``ctx`` its ebc context id.

The card's ``entropy`` block, version 3 = version 2 plus (``model.temporal_context_fit``)::

    "temporal": {"scheme": "ebc-x-reference/1", "operating_points": [   # one per eb point
        null | {"radius": R, "freqs": [["base64", ... C], ... 2]}]}      # [pass][channel]

``freqs`` of a (pass, channel): its ebc cell's contexts x (2R + 1) tables over the channel's
alphabet, as ``context_tables.encode_freqs``. ``null``: the point has no conditional codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mtl_split_core.context_tables import (
    PASSES,
    ContextCoder,
    ContextPoint,
    Features,
    decode_freqs,
    pass_positions,
)

if TYPE_CHECKING:  # entropy_tables imports this module
    from mtl_split_core.entropy_tables import OperatingPoint

SCHEME = "ebc-x-reference/1"
MAX_RADIUS = 7


class TemporalContextError(ValueError):
    """A ``temporal`` block that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, eq=False)
class TemporalPoint:
    radius: int
    # [pass][channel] (ebc contexts * (2 * radius + 1), L) float32: freqs - 1 (constriction's)
    weights: tuple[tuple[np.ndarray, ...], ...]


def reference_buckets(reference: np.ndarray, center: np.ndarray, radius: int) -> np.ndarray:
    """(C, N) int64 buckets of the reference's table indices (C, N) (module docstring)."""
    return np.clip(reference.astype(np.int64) - center[:, None], -radius, radius) + radius


def held_symbols(point: OperatingPoint, values: np.ndarray, reference: np.ndarray,
                 hold: int) -> np.ndarray:
    """``point``'s table indices (C, N) int32 of float32 ``values`` (C, N), except that a symbol
    keeps the ``reference``'s (C, N) while the value lies within 0.5 + ``hold`` / 1000
    quantization steps of it (the encoder's hold; 0: the plain symbols)."""
    index = point.symbols(values)
    if not hold:
        return index
    steps = values * point.gain[:, None] - point.lo[:, None]
    keep = np.abs(steps - reference) < 0.5 + hold / 1000.0
    return np.where(keep, reference, index).astype(np.int32)


def rd_symbols(coder: TemporalContextCoder, point: OperatingPoint, values: np.ndarray,
               reference: np.ndarray, shape: tuple[int, int, int], hold: int,
               rate_weight: float, rows: list[np.ndarray] | None = None) -> np.ndarray:
    """The encoder's rate-distortion choice of table indices (C, H*W) int32 for float32
    ``values`` (C, H*W) on the ``reference``'s (C, H*W): each symbol is one of s - 1, s, s + 1
    (s = ``held_symbols``' choice, clipped to the channel's alphabet) minimising

        (value - symbol)**2 + rate_weight * bits

    the error in quantization steps of its channel (the per-channel gains were learned against
    the tasks' loss plus a rate term, ``train_entropy.py``, so a step costs about as much
    accuracy in every channel: no further per-channel weight) and
    ``bits`` = -log2 of the symbol's probability in the very table the decoder will use: its
    context is computed from the symbols chosen before it in the decoder's order (pass 0, then
    pass 1, channel by channel), so the choice is greedy along that order. ``rate_weight`` in
    squared steps per bit; 0: exactly ``held_symbols``. The error stays below 1.5 + hold / 1000
    steps. ``rows``: a list that receives each (pass, channel)'s table rows in the decoder's
    order when the weight is not 0, so that ``encode_frame`` need not work them out again."""
    base = held_symbols(point, values, reference, hold)
    if not rate_weight:
        return base
    c, h, w = shape
    last = np.array([len(f) - 1 for f in point.freqs])[:, None, None]
    candidates = np.clip(base[:, None] + np.array([-1, 0, 1])[:, None], 0, last)  # (C, 3, N)
    steps = values * point.gain[:, None] - point.lo[:, None]  # the value in table-index units
    # The distortion in bits (divided by the rate weight): all the choice needs besides the
    # rate, which depends on the symbols chosen before.
    scaled = (steps[:, None] - candidates) ** 2 / rate_weight
    buckets = coder.buckets(reference)
    center = coder.point.center
    anchors = np.zeros(h * w, np.int64)  # pass 1 sees the anchors only (zeros elsewhere)
    anchors[pass_positions(h, w)[0]] = 1
    index = np.empty((c, h * w), np.int32)
    for p, positions in enumerate(pass_positions(h, w)):
        n = len(positions)
        cells, w_colocated = coder.point.cells[p], coder.colocated_weights[p]
        # Pass 1: every anchor is chosen, so are the spatial features of every channel.
        spatial = Features(((index - center[:, None]) * anchors).reshape(shape),
                           positions).spatial_predictions(coder.point.w[p]) if p == 1 else None
        shared = np.zeros((2 * c, n), np.float64)
        # A candidate's flat index in its channel's (3, n) block: ``take`` instead of fancy
        # indexing in the sequential loop below (~3x faster at these sizes).
        pick = np.arange(n)
        cand_p = np.ascontiguousarray(candidates[:, :, positions])
        scaled_p, rows_p = scaled[:, :, positions], buckets[:, positions]
        chosen = np.empty((c, n), np.int32)
        for ch in range(c):
            pred = w_colocated[ch] @ shared
            if spatial is not None:
                pred += spatial[ch]
            table_rows = cells[ch].contexts(pred) * coder.span + rows_p[ch]
            if rows is not None:
                rows.append(table_rows)
            bits = coder.bits(p, ch)
            cost = scaled_p[ch] + bits.take(table_rows * bits.shape[1] + cand_p[ch])
            chosen[ch] = got = cand_p[ch].take(cost.argmin(0) * n + pick)
            np.subtract(got, center[ch], out=shared[ch])
            np.abs(shared[ch], out=shared[c + ch])
        index[:, positions] = chosen
    return index


def cell_contexts(point: ContextPoint, pass_: int, channel: int) -> int:
    """How many ebc contexts the (pass, channel) cell of ``point`` has."""
    cell = point.cells[pass_][channel]
    return (len(cell.mean_edges) + 1) * (len(cell.mag_edges) + 1)


class TemporalContextCoder(ContextCoder):
    """ebc-<k>'s coder with each table split by the reference's co-located symbol."""

    def __init__(self, point: ContextPoint, temporal: TemporalPoint):
        super().__init__(point)
        self.temporal = temporal
        self.span = 2 * temporal.radius + 1  # tables per ebc context
        self._bits: dict[tuple[int, int], np.ndarray] = {}

    def tables(self, pass_: int, channel: int, ctx: np.ndarray, aux: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        assert aux is not None  # encode_frame / decode_frame always pass the buckets
        return self.temporal.weights[pass_][channel], ctx * self.span + aux

    def encode_frame(self, coder: Any, index: np.ndarray, reference: np.ndarray,
                     shape: tuple[int, int, int], rows: list[np.ndarray] | None = None) -> None:
        """Push table indices (C, H*W) given the reference's (C, H*W); ``rows``: their table
        rows as ``rd_symbols`` gave them (else worked out here)."""
        if rows is None:
            self.encode(coder, index, shape, self.buckets(reference))
            return
        c, h, w = shape
        order = []
        for p, positions in enumerate(pass_positions(h, w)):
            symbols = np.ascontiguousarray(index[:, positions], np.int32)  # once a pass
            order += [(symbols[ch], self.temporal.weights[p][ch], rows[p * c + ch])
                      for ch in range(c)]
        self.push(coder, order)

    def decode_frame(self, coder: Any, reference: np.ndarray, shape: tuple[int, int, int]
                     ) -> np.ndarray:
        """Table indices (C, H*W) popped from ``coder`` given the reference's (C, H*W)."""
        return self.decode(coder, shape, self.buckets(reference))

    def buckets(self, reference: np.ndarray) -> np.ndarray:
        """The reference buckets (C, H*W) of the reference's table indices (C, H*W)."""
        return reference_buckets(reference, self.point.center, self.temporal.radius)

    def bits(self, pass_: int, channel: int) -> np.ndarray:
        """(tables, L) float32: -log2 of each symbol's probability in each table of the
        (pass, channel), up to a constant (the encoder's rate, ``rd_symbols``)."""
        key = (pass_, channel)
        if key not in self._bits:
            self._bits[key] = -np.log2(self.temporal.weights[pass_][channel] + 1)
        return self._bits[key]


def parse_temporal_context(block: Any, context: tuple[ContextPoint, ...],
                           lengths: list[list[int]], precision: int
                           ) -> tuple[TemporalPoint | None, ...]:
    """The temporal points (None where a point has none) of a ``temporal`` block for the
    card's ebc points ``context`` whose channel c of point k has ``lengths[k][c]`` symbols;
    TemporalContextError for anything unusable."""
    def bad(message: str) -> TemporalContextError:
        return TemporalContextError(f"temporal context tables: {message}")

    if not isinstance(block, dict) or set(block) != {"scheme", "operating_points"}:
        raise bad("expected an object with exactly scheme, operating_points")
    if block["scheme"] != SCHEME:
        raise bad(f"scheme {block['scheme']!r}; this build reads {SCHEME}")
    points = block["operating_points"]
    if not isinstance(points, list) or len(points) != len(context):
        raise bad(f"operating_points must be a list of {len(context)} (one per point, null "
                  f"for none)")
    parsed: list[TemporalPoint | None] = []
    for k, (point, cpoint, lens) in enumerate(zip(points, context, lengths)):
        if point is None:
            parsed.append(None)
            continue
        if not isinstance(point, dict) or set(point) != {"radius", "freqs"}:
            raise bad(f"point {k} must be null or have exactly radius, freqs")
        radius = point["radius"]
        if not isinstance(radius, int) or isinstance(radius, bool) \
                or not 0 <= radius <= MAX_RADIUS:
            raise bad(f"point {k}: radius must be an integer in 0..{MAX_RADIUS}")
        c = len(lens)
        freqs = point["freqs"]
        if not isinstance(freqs, list) or len(freqs) != PASSES or not all(
                isinstance(p, list) and len(p) == c for p in freqs):
            raise bad(f"point {k}: freqs must be {PASSES} lists of {c} channels")
        passes = []
        for p, chans in enumerate(freqs):
            row = []
            for ch, text in enumerate(chans):
                n = cell_contexts(cpoint, p, ch) * (2 * radius + 1)
                table = decode_freqs(text, n, lens[ch])
                if table is None or (table < 1).any() or (table.sum(1) != 2**precision).any():
                    raise bad(f"point {k} pass {p} channel {ch}: {n} tables (the ebc cell's "
                              f"contexts x {2 * radius + 1}) of {lens[ch]} positive integers "
                              f"summing to 2**{precision}, base64 of uint32 LE")
                row.append((table - 1).astype(np.float32))
            passes.append(tuple(row))
        parsed.append(TemporalPoint(radius, tuple(passes)))
    return tuple(parsed)
