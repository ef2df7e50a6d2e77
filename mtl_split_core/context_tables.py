"""Context-adaptive entropy tables: the codecs ``ebc-<k>/1``. The symbols are exactly those of
``eb-<k>/1`` (operating point k's gains and quantizer, ``entropy_tables.OperatingPoint``), so
the decoded tensor is identical; only their probabilities differ: each symbol is coded with one
of several frozen integer tables, chosen by an integer context of symbols already decoded.

Why integers only: decoding must be bit-exact between CPU and GPU and across machines. A float
hyper-decoder would not be; here the context is a dot product of integer weights and integer
symbols (summed in float64, exact at the bounded sizes below, so in any order on any machine),
bucketed by integer edges, and the tables are integer frequencies, all from the model card.

The order (checkerboard, two passes): pass 0 codes the anchors (positions with ``(i + j)`` even)
of channel 0, 1, ..., C-1, then pass 1 the other positions of channel 0, ..., C-1. With ``d``
= table index - ``center[c]`` (int), the features of the symbol of channel c at position p are

    d[0..C-1](p), |d[0..C-1]|(p)                  co-located symbols of every channel
    sum of d[c] and of |d[c]| over p's 4 neighbours, sum of |d| over p's 4 neighbours and
    every channel                                 (zero outside the tensor)

Only already decoded symbols may have a non-zero weight (checked when the card is read): the
co-located symbols of channels before c, and the spatial features in pass 1 only (a pass-1
position's neighbours are all anchors). Two predictors (``w_mean`` on the signed, ``w_mag`` on
the magnitude side; any weights) give ``ctx = bucket(mag) * (len(mean_edges) + 1) +
bucket(mean)``, ``bucket(v)`` = the number of edges <= v, and the symbol is coded with
``freqs[ctx]`` of its (pass, channel) (over channel c's eb-k alphabet).

The card's ``entropy`` block, version 2 = version 1 plus (``model.context_fit`` writes it)::

    "context": {"scheme": "checkerboard-linear/1", "operating_points": [        # one per point
        {"center": [C ints], "passes": [[{"w_mean": [2C+3 ints], "w_mag": [...],
          "mean_edges": [ints], "mag_edges": [ints], "freqs": "base64"}, ... C], ... 2]}]}

``freqs``: the (pass, channel)'s tables, one per context, each over the channel's eb-k alphabet
(positive, summing to 2**precision), as base64 of uint32 little-endian (``encode_freqs``).

The stream: a sentinel (as eb), then pass 1 channel C-1 down to pass 0 channel 0 pushed, so
decoding pops pass 0 channel 0 first and the sentinel last.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import constriction
import numpy as np

SCHEME = "checkerboard-linear/1"
PASSES = 2
# |weight| and |edge|: with |d| <= 4096 (MAX_ALPHABET) and C <= 1024 channels every feature is
# < 2**25, every product < 2**37 and a prediction (< 2**12 terms) < 2**49: exact in float64.
MAX_WEIGHT = 2**12
MAX_EDGE = 2**52
MAX_CONTEXTS = 256          # tables per (pass, channel)
SPATIAL = 3                 # spatial features after the 2C co-located ones
# Symbols per coder call: each call reads a (symbols, alphabet) float32 array of probabilities,
# so a chunk bounds that allocation (<= 64 MiB at 4096 symbols of alphabet 4096) whatever the
# shape; chunks are coded in order, so the stream is the same as one call's.
CHUNK = 4096


class ContextTablesError(ValueError):
    """A ``context`` block that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, eq=False)
class ContextCell:
    """The buckets and tables of one (pass, channel)."""
    # Ascending integers held as float64 (exact: |edge| <= MAX_EDGE = 2**52), so the float64
    # predictions, exact integers too, are bucketed without a conversion per call.
    mean_edges: np.ndarray
    mag_edges: np.ndarray
    weights: np.ndarray     # (contexts, L) float32: freqs - 1, what constriction's family reads

    def __post_init__(self) -> None:
        for name in ("mean_edges", "mag_edges"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), np.float64))

    def contexts(self, pred: np.ndarray) -> np.ndarray:
        """Context ids of symbols with predictions ``pred`` (2, n) (mean, magnitude), float64
        integers."""
        # The arrays' own searchsorted: np.searchsorted's wrapper costs as much as the search
        # at these sizes, and coders call this once per (pass, channel) of every frame.
        return (self.mag_edges.searchsorted(pred[1], "right") * (len(self.mean_edges) + 1)
                + self.mean_edges.searchsorted(pred[0], "right"))


@dataclass(frozen=True, eq=False)
class ContextPoint:
    center: np.ndarray                          # (C,) int64
    # (PASSES, C, 2, 2C + 3) float64 integers: per pass and channel the (mean, magnitude)
    # weights. float64 sums of these integer products are exact (module docstring).
    w: np.ndarray
    cells: tuple[tuple[ContextCell, ...], ...]  # [pass][channel]


@lru_cache(maxsize=16)
def pass_positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (row-major) of pass 0 (``(i + j)`` even) and pass 1 of an h x w grid."""
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    even = ((i + j) % 2 == 0).ravel()
    return np.flatnonzero(even), np.flatnonzero(~even)


def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the 4 neighbours of every position of ``a`` (..., H, W), zero outside."""
    out = np.zeros_like(a)
    out[..., 1:, :] += a[..., :-1, :]
    out[..., :-1, :] += a[..., 1:, :]
    out[..., :, 1:] += a[..., :, :-1]
    out[..., :, :-1] += a[..., :, 1:]
    return out


class Features:
    """The int64 features of the symbols at flat ``positions`` of ``d`` (..., C, H, W) int64
    (zeros where not yet decoded; any leading dims, e.g. frames), computed once for every
    channel: ``of(c)`` is channel c's (2C + 3, ..., n), what ``ContextCell.contexts`` reads
    (the weights keep only what the decoder knows)."""

    def __init__(self, d: np.ndarray, positions: np.ndarray):
        lead = d.shape[:-2]
        self.flat = d.reshape(*lead, -1)[..., positions]
        self.n4 = _neighbour_sum(d).reshape(*lead, -1)[..., positions]
        self.n4_abs = _neighbour_sum(np.abs(d)).reshape(*lead, -1)[..., positions]
        self.n4_all = self.n4_abs.sum(-2)

    def of(self, channel: int) -> np.ndarray:
        flat = np.moveaxis(self.flat, -2, 0)
        return np.concatenate([flat, np.abs(flat), self.n4[..., channel, :][None],
                               self.n4_abs[..., channel, :][None], self.n4_all[None]])

    def spatial_predictions(self, w: np.ndarray) -> np.ndarray:
        """(C, 2, n): what the spatial features add to every channel's two predictions, for
        weights ``w`` (C, 2, 2C + 3) (one frame)."""
        s = w[:, :, -SPATIAL:, None]
        return (s[:, :, 0] * self.n4[:, None] + s[:, :, 1] * self.n4_abs[:, None]
                + s[:, :, 2] * self.n4_all[None, None])

    def predictions(self, w: np.ndarray) -> np.ndarray:
        """(C, 2, n): every channel's (mean, magnitude) predictions (one frame, every symbol
        known: the encoder)."""
        shared = np.concatenate([self.flat, np.abs(self.flat)]).astype(np.float64)
        return np.einsum("cjf,fn->cjn", w[:, :, :-SPATIAL], shared) \
            + self.spatial_predictions(w)


def known_mask(channels: int, channel: int, pass_: int) -> np.ndarray:
    """Which of the 2C + 3 features the decoder knows when it decodes ``channel`` in
    ``pass_``: co-located channels before it; the spatial ones in pass 1."""
    m = np.zeros(2 * channels + SPATIAL, bool)
    m[:channel] = m[channels:channels + channel] = True
    m[2 * channels:] = pass_ == 1
    return m


class ContextCoder:
    """The ``ebc-<k>/1`` coder of one operating point (see the module docstring)."""

    def __init__(self, point: ContextPoint):
        self.point = point
        self._family = constriction.stream.model.Categorical(perfect=False)
        # Per pass, the (C, 2, 2C) co-located weights, contiguous: the decoder's one product
        # per channel reads them as is.
        self.colocated_weights = [np.ascontiguousarray(w[:, :, :-SPATIAL]) for w in point.w]

    def tables(self, pass_: int, channel: int, ctx: np.ndarray, aux: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(tables, the row of each symbol) of ``channel`` in ``pass_`` for its context ids
        ``ctx``; ``aux``: what a subclass conditions on besides (the symbols' entries of the
        (C, H*W) array given to ``encode``/``decode``), None here."""
        return self.point.cells[pass_][channel].weights, ctx

    def encode(self, coder: Any, index: np.ndarray, shape: tuple[int, int, int],
               aux: np.ndarray | None = None) -> None:
        """Push table indices (C, H*W) onto ``coder`` (an AnsCoder holding the sentinel)."""
        c, h, w = shape
        d = index.reshape(shape).astype(np.int64) - self.point.center[:, None, None]
        order = []
        for p, positions in enumerate(pass_positions(h, w)):
            pred = Features(d, positions).predictions(self.point.w[p])
            symbols = np.ascontiguousarray(index[:, positions], np.int32)
            aux_p = None if aux is None else aux[:, positions]
            for ch in range(c):
                cell = self.point.cells[p][ch]
                order.append((symbols[ch], *self.tables(p, ch, cell.contexts(pred[ch]),
                                                        None if aux_p is None else aux_p[ch])))
        self.push(coder, order)

    def push(self, coder: Any, order: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Push each (pass, channel)'s (symbols, tables, the row of each symbol), given in
        the decoder's order, onto ``coder``."""
        for symbols, weights, ctx in reversed(order):  # a stack: the last pushed decodes first
            for at in reversed(range(0, max(len(ctx), 1), CHUNK)):  # an empty pass: 1 call
                coder.encode_reverse(symbols[at:at + CHUNK], self._family,
                                     weights.take(ctx[at:at + CHUNK], 0))

    def decode(self, coder: Any, shape: tuple[int, int, int],
               aux: np.ndarray | None = None) -> np.ndarray:
        """Table indices (C, H*W) popped from ``coder`` (``aux``: as given to ``encode``)."""
        c, h, w = shape
        center = self.point.center
        index = np.empty((c, h * w), np.int32)
        anchors, _ = passes = pass_positions(h, w)
        # The per-channel loop below is sequential by design (a channel's context reads the
        # channels before it), so it does as few array operations per channel as it can
        # (``take``: ~3x faster than fancy indexing at these sizes).
        for p, positions in enumerate(passes):
            n = len(positions)
            cells = self.point.cells[p]
            w_colocated = self.colocated_weights[p]
            spatial = None
            if p == 1:  # the anchors are all known, so are the spatial features of every channel
                d = np.zeros((c, h * w), np.int64)
                d[:, anchors] = index[:, anchors] - center[:, None]
                spatial = Features(d.reshape(shape), positions).spatial_predictions(self.point.w[p])
            aux_p = None if aux is None else aux[:, positions]
            shared = np.zeros((2 * c, n), np.float64)  # filled channel by channel
            got_p = np.empty((c, n), np.int32)
            for ch in range(c):
                pred = w_colocated[ch] @ shared
                if spatial is not None:
                    pred += spatial[ch]
                weights, rows = self.tables(p, ch, cells[ch].contexts(pred),
                                            None if aux_p is None else aux_p[ch])
                for at in range(0, max(n, 1), CHUNK):  # an empty pass: 1 call
                    got_p[ch, at:at + CHUNK] = coder.decode(
                        self._family, weights.take(rows[at:at + CHUNK], 0))
                np.subtract(got_p[ch], center[ch], out=shared[ch])
                np.abs(shared[ch], out=shared[c + ch])
            index[:, positions] = got_p
        return index


def encode_freqs(freqs: np.ndarray) -> str:
    """The card's form of a (pass, channel)'s tables (contexts, L): base64 of uint32 LE, row
    by row (a JSON list would take ~30 bytes an entry in an indented card)."""
    return base64.b64encode(np.ascontiguousarray(freqs, "<u4").tobytes()).decode("ascii")


def decode_freqs(text: Any, contexts: int, length: int) -> np.ndarray | None:
    """int64 tables (contexts, length) of ``encode_freqs``' text; None unless it is exactly
    that many uint32 in canonical base64."""
    if not isinstance(text, str) or len(text) != 4 * -(-4 * contexts * length // 3):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != 4 * contexts * length:
        return None
    return np.frombuffer(raw, "<u4").astype(np.int64).reshape(contexts, length)


def parse_context(block: Any, lengths: list[list[int]], precision: int, max_alphabet: int
                  ) -> tuple[ContextPoint, ...]:
    """The context points of a ``context`` block for operating points whose channel c of
    point k has ``lengths[k][c]`` symbols, tables of ``precision`` bits; ContextTablesError
    for anything unusable."""
    def bad(message: str) -> ContextTablesError:
        return ContextTablesError(f"context tables: {message}")

    def ints(value: Any, what: str, bound: int, n: int | None = None) -> np.ndarray:
        if not isinstance(value, list) or (n is not None and len(value) != n) or not all(
                isinstance(v, int) and not isinstance(v, bool) and abs(v) <= bound
                for v in value):
            raise bad(f"{what} must be {'' if n is None else n} integers within +-{bound}")
        return np.asarray(value, np.int64)

    if not isinstance(block, dict) or set(block) != {"scheme", "operating_points"}:
        raise bad("expected an object with exactly scheme, operating_points")
    if block["scheme"] != SCHEME:
        raise bad(f"scheme {block['scheme']!r}; this build reads {SCHEME}")
    points = block["operating_points"]
    if not isinstance(points, list) or len(points) != len(lengths):
        raise bad(f"operating_points must be a list of {len(lengths)} (one per eb point)")
    parsed = []
    for k, (point, lens) in enumerate(zip(points, lengths)):
        c = len(lens)
        if not isinstance(point, dict) or set(point) != {"center", "passes"}:
            raise bad(f"point {k} must have exactly center, passes")
        center = ints(point["center"], f"point {k} center", max_alphabet, c)
        if (center < 0).any() or (center >= np.asarray(lens)).any():
            raise bad(f"point {k}: every center must be one of its channel's symbols")
        passes = point["passes"]
        if not isinstance(passes, list) or len(passes) != PASSES or not all(
                isinstance(p, list) and len(p) == c for p in passes):
            raise bad(f"point {k}: passes must be {PASSES} lists of {c} channels")
        cells = []
        weights = np.zeros((PASSES, c, 2, 2 * c + SPATIAL), np.float64)
        for p, chans in enumerate(passes):
            row = []
            for ch, cell in enumerate(chans):
                where = f"point {k} pass {p} channel {ch}"
                keys = {"w_mean", "w_mag", "mean_edges", "mag_edges", "freqs"}
                if not isinstance(cell, dict) or set(cell) != keys:
                    raise bad(f"{where} must have exactly {', '.join(sorted(keys))}")
                ws = [ints(cell[f], f"{where} {f}", MAX_WEIGHT, 2 * c + SPATIAL)
                      for f in ("w_mean", "w_mag")]
                weights[p, ch] = ws
                if (weights[p, ch][:, ~known_mask(c, ch, p)] != 0).any():
                    raise bad(f"{where}: weights on symbols not yet decoded must be 0")
                edges = [ints(cell[f], f"{where} {f}", MAX_EDGE) for f in
                         ("mean_edges", "mag_edges")]
                if max(len(e) for e in edges) >= MAX_CONTEXTS:
                    raise bad(f"{where}: at most {MAX_CONTEXTS - 1} edges")
                if any((np.diff(e) <= 0).any() for e in edges):
                    raise bad(f"{where}: edges must be strictly ascending")
                n_ctx = (len(edges[0]) + 1) * (len(edges[1]) + 1)
                if n_ctx > MAX_CONTEXTS:
                    raise bad(f"{where}: {n_ctx} contexts, at most {MAX_CONTEXTS}")
                freqs = decode_freqs(cell["freqs"], n_ctx, lens[ch])
                if freqs is None or (freqs < 1).any() or \
                        (freqs.sum(1) != 2**precision).any():
                    raise bad(f"{where}: freqs must be {n_ctx} tables (one per context) of "
                              f"{lens[ch]} positive integers (the channel's alphabet) summing "
                              f"to 2**{precision}, base64 of uint32 LE")
                row.append(ContextCell(edges[0], edges[1], (freqs - 1).astype(np.float32)))
            cells.append(tuple(row))
        parsed.append(ContextPoint(center, weights, tuple(cells)))
    return tuple(parsed)
