"""Frozen entropy tables: the integer frequency tables the entropy-coded codecs (``eb-<k>/1``)
code their symbols with, and the coding itself (ANS from ``constriction``, no coder of ours).

A model card's ``entropy`` block (written by ``model.entropy_model.EntropyModel.freeze``, read
here, covered by the model fingerprint):

    {"version": 1, "split": "s16", "precision": 24,
     "operating_points": [{"gain": [C floats], "lo": [C ints], "freqs": [[ints], ... C]}, ...]}

Operating point ``k`` is the codec ``eb-<k>/1`` (k = 0 sends the fewest bytes). Per channel
``c`` the symbol of a value ``y`` is ``clip(rint(y * gain[c]), lo[c], lo[c] + len(freqs[c]) - 1)``
(float32 multiply, round half to even) and its reconstruction ``symbol / gain[c]`` (float32).
``freqs[c]`` are positive integers summing to ``2**precision``: the probability of symbol
``lo[c] + i`` is ``freqs[c][i] / 2**precision``, exactly, on every machine: only integers reach
the coder (``_categorical`` hands constriction weights it reproduces without rounding).

The stream: one sentinel symbol (1 of two equally likely) pushed first, then the channels
last to first, so decoding pops channel 0 first and the sentinel last. The sentinel costs one
bit and makes every stream non-empty: a payload cut to its header or a stream of the wrong
length ends in a wrong sentinel or a non-initial coder state.

Version 2 of the block adds ``"context"``: context tables for every point, the codecs
``ebc-<k>/1`` (the same symbols, coded in ``context_tables.py``'s order and tables between
the sentinel and the end of the stream). Version 3 adds ``"temporal"``: tables conditioned on
a reference frame's symbols for some points, the delta frames of ``t<N>-c<H>-ebc-<k>/1``
(``temporal_context.py``, ``temporal_codec.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import constriction
import numpy as np

from mtl_split_core.context_tables import (
    ContextCoder,
    ContextPoint,
    ContextTablesError,
    parse_context,
)
from mtl_split_core.temporal_context import (
    TemporalContextCoder,
    TemporalContextError,
    TemporalPoint,
    parse_temporal_context,
)

TABLES_VERSION = 1
# Version 2 adds context tables ("context", codecs ebc-<k>/1); version 1 cards still load.
CONTEXT_TABLES_VERSION = 2
# Version 3 adds temporal context tables ("temporal"); versions 1 and 2 still load.
TEMPORAL_TABLES_VERSION = 3
VERSIONS = (TABLES_VERSION, CONTEXT_TABLES_VERSION, TEMPORAL_TABLES_VERSION)
# constriction's default ANS coder: 32-bit words, probabilities in 24-bit fixed point.
PRECISION = 24
MAX_OPERATING_POINTS = 8
MAX_ALPHABET = 4096        # symbols per channel and operating point
MAX_CHANNELS = 1024
GAIN_RANGE = (1e-4, 1e4)   # gains outside it are no sensible quantization step


class EntropyTablesError(ValueError):
    """An ``entropy`` block that cannot be used; the message says what is wrong."""


class EntropyStreamError(ValueError):
    """Compressed words that are not a valid stream for the tables and symbol count."""


@dataclass(frozen=True, eq=False)
class OperatingPoint:
    gain: np.ndarray               # (C,) float32
    lo: np.ndarray                 # (C,) int64: the smallest symbol of each channel
    freqs: tuple[np.ndarray, ...]  # C int64 arrays, each summing to 2**PRECISION

    @property
    def hi(self) -> np.ndarray:
        """(C,) the largest symbol of each channel."""
        return self.lo + np.array([len(f) for f in self.freqs]) - 1

    def symbols(self, y: np.ndarray) -> np.ndarray:
        """Table indices (C, N) int32 of float32 values ``y`` (C, N): the quantizer."""
        with np.errstate(over="ignore", invalid="ignore"):  # +-inf clips to the table's ends
            v = np.rint(y * self.gain[:, None])
        np.clip(v, self.lo[:, None].astype(np.float32), self.hi[:, None].astype(np.float32),
                out=v)
        return (v - self.lo[:, None]).astype(np.int32)

    def values(self, index: np.ndarray) -> np.ndarray:
        """float32 (C, N) reconstructions of table indices (C, N)."""
        return (index + self.lo[:, None]).astype(np.float32) / self.gain[:, None]

    def expected_bits(self) -> float:
        """Bits per value of symbols drawn from the tables themselves (the entropy)."""
        bits = [float(-(f / 2**PRECISION * np.log2(f / 2**PRECISION)).sum())
                for f in self.freqs]
        return float(np.mean(bits))


class EntropyTables:
    """The operating points of one model's entropy-coded split, validated, with their coder
    models built once (constriction categorical models from the integer tables)."""

    def __init__(self, block: Any):
        self.block = block
        self.split, self.channels, self.points = _parse(block)
        # Version 2: context tables for every point (codecs ebc-<k>/1), context_tables.py.
        self.context: tuple[ContextPoint, ...] = () if block["version"] == 1 else \
            _parse_context(block.get("context"), self.points)
        # Version 3: temporal context tables for some points (temporal_context.py).
        self.temporal: tuple[TemporalPoint | None, ...] = \
            _parse_temporal(block.get("temporal"), self.context, self.points) \
            if block["version"] == TEMPORAL_TABLES_VERSION else ()
        self.codec_ids = tuple(f"eb-{k}/1" for k in range(len(self.points))) + tuple(
            f"ebc-{k}/1" for k in range(len(self.context)))
        self._models: dict[int, list[Any]] = {}
        self._context_coders: dict[int, ContextCoder] = {}
        self._temporal_coders: dict[int, TemporalContextCoder] = {}

    def models(self, op: int) -> list[Any]:
        """The per-channel coder models of operating point ``op`` (built on first use)."""
        if op not in self._models:
            self._models[op] = [_categorical(f) for f in self.points[op].freqs]
        return self._models[op]

    def encode(self, op: int, index: np.ndarray,
               shape: tuple[int, int, int] | None = None,
               reference: np.ndarray | None = None,
               rows: list[np.ndarray] | None = None) -> np.ndarray:
        """ANS-code table indices (C, N) of operating point ``op``: uint32 words, channel 0
        first when decoding. ``shape`` (C, H, W): code them with the context tables
        (``ebc-<op>/1``, ``context_tables.ContextCoder``) instead of one table per channel;
        with ``reference`` (C, N), a reference frame's indices, too: with the temporal tables
        (``temporal_context.TemporalContextCoder``, ``has_temporal`` first; ``rows``: the
        symbols' table rows from ``temporal_context.rd_symbols``, if it chose them)."""
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.ones(1, np.int32), _sentinel())
        if shape is not None and reference is not None:
            self.temporal_coder(op).encode_frame(coder, index, reference, shape, rows)
            return np.asarray(coder.get_compressed(), np.uint32)
        if shape is not None:
            self.context_coder(op).encode(coder, index, shape)
            return np.asarray(coder.get_compressed(), np.uint32)
        models = self.models(op)
        for c in reversed(range(index.shape[0])):  # a stack: the last pushed decodes first
            coder.encode_reverse(np.ascontiguousarray(index[c], np.int32), models[c])
        return np.asarray(coder.get_compressed(), np.uint32)

    def decode(self, op: int, words: np.ndarray, per_channel: int,
               shape: tuple[int, int, int] | None = None,
               reference: np.ndarray | None = None) -> np.ndarray:
        """Table indices (C, per_channel) from ``words`` (``shape``: as for ``encode``);
        EntropyStreamError unless the words are exactly one stream of that many symbols (the
        coder ends in its initial state)."""
        try:
            coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, np.uint32))
            if shape is not None and reference is not None:
                index = self.temporal_coder(op).decode_frame(coder, reference, shape)
            elif shape is not None:
                index = self.context_coder(op).decode(coder, shape)
            else:
                models = self.models(op)
                index = np.stack([coder.decode(models[c], per_channel)
                                  for c in range(self.channels)])
            sentinel = coder.decode(_sentinel())
        except ValueError as err:  # constriction's answer to words it cannot start from
            raise EntropyStreamError(f"compressed words rejected by the coder: {err}") from None
        if sentinel != 1 or not coder.is_empty():
            raise EntropyStreamError(f"compressed words are not one stream of "
                                     f"{self.channels * per_channel} symbols (data left over "
                                     f"or missing: truncated, corrupted or another table's)")
        return index

    def context_coder(self, op: int) -> ContextCoder:
        """The context coder of operating point ``op`` (``has_context`` first)."""
        if op not in self._context_coders:
            self._context_coders[op] = ContextCoder(self.context[op])
        return self._context_coders[op]

    def temporal_coder(self, op: int) -> TemporalContextCoder:
        """The temporal context coder of operating point ``op`` (``has_temporal`` first)."""
        if op not in self._temporal_coders:
            temporal = self.temporal[op]
            assert temporal is not None
            self._temporal_coders[op] = TemporalContextCoder(self.context[op], temporal)
        return self._temporal_coders[op]

    def has_temporal(self, op: int) -> bool:
        """Whether operating point ``op`` has temporal context tables (the conditional
        temporal codecs ``t<N>-c<H>-ebc-<op>/1``)."""
        return 0 <= op < len(self.temporal) and self.temporal[op] is not None

    @property
    def has_context(self) -> bool:
        """Whether the tables have context tables (codecs ``ebc-<k>/1``)."""
        return bool(self.context)


def max_words(symbols: int) -> int:
    """The most 32-bit words a stream of ``symbols`` symbols can take: each costs at most
    PRECISION bits (probability >= 2**-PRECISION), plus the sentinel's bit and the coder's
    64-bit state."""
    return -(-(symbols * PRECISION + 1 + 64) // 32)


def integer_frequencies(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Positive integers summing to ``2**precision``, close to ``pmf`` (non-negative, finite,
    any sum > 0): each symbol gets 1 plus its share of the rest rounded down; what rounding
    leaves goes to the most probable symbol. Deterministic: float64 numpy, no randomness."""
    p = np.asarray(pmf, np.float64)
    if p.ndim != 1 or len(p) < 2 or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
        raise EntropyTablesError(f"pmf must be >= 2 non-negative finite values with a positive "
                                 f"sum, got {p!r}")
    free = 2**precision - len(p)
    freqs = 1 + np.floor(p / p.sum() * free).astype(np.int64)
    freqs[int(np.argmax(p))] += 2**precision - int(freqs.sum())
    return freqs


@lru_cache(maxsize=1)
def _sentinel() -> Any:
    """The sentinel's model: symbols 0 and 1 at probability 1/2 each."""
    return _categorical(np.full(2, 2**(PRECISION - 1), np.int64))


def _categorical(freqs: np.ndarray) -> Any:
    """A constriction model with exactly ``freqs`` / 2**PRECISION: its fast quantizer gives
    symbol i the weight floor(sum_{j<i} w_j * scale) + i with scale = (2**P - n) / sum(w),
    which for w = freqs - 1 (integers, sum 2**P - n, so scale = 1) is sum_{j<i} freqs_j:
    the table itself, with no float rounding anywhere."""
    return constriction.stream.model.Categorical((freqs - 1).astype(np.float64), perfect=False)


def _parse(block: Any) -> tuple[str, int, tuple[OperatingPoint, ...]]:
    def bad(message: str) -> EntropyTablesError:
        return EntropyTablesError(f"entropy tables: {message}")
    if not isinstance(block, dict):
        raise bad(f"expected an object, got {type(block).__name__}")
    if block.get("version") not in VERSIONS:
        raise bad(f"version {block.get('version')!r}; this build reads "
                  f"{', '.join(map(str, VERSIONS))}")
    if block.get("precision") != PRECISION:
        raise bad(f"precision {block.get('precision')!r}; this build codes with {PRECISION}")
    split = block.get("split")
    if not isinstance(split, str):
        raise bad(f"split {split!r} must be a split point name")
    points = block.get("operating_points")
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_OPERATING_POINTS:
        raise bad(f"operating_points must be a list of 1..{MAX_OPERATING_POINTS}")
    parsed = []
    channels = None
    for k, point in enumerate(points):
        if not isinstance(point, dict) or set(point) != {"gain", "lo", "freqs"}:
            raise bad(f"operating point {k} must have exactly gain, lo, freqs")
        gain = np.asarray(point["gain"], np.float64)
        lo = point["lo"]
        freqs = point["freqs"]
        c = len(gain) if gain.ndim == 1 else -1
        if channels is None:
            channels = c
        if not 1 <= c <= MAX_CHANNELS or c != channels:
            raise bad(f"operating point {k}: {c} gains; expected one per channel "
                      f"({channels}, at most {MAX_CHANNELS})")
        if not (np.isfinite(gain).all() and (gain >= GAIN_RANGE[0]).all()
                and (gain <= GAIN_RANGE[1]).all()):
            raise bad(f"operating point {k}: gains must be in {GAIN_RANGE}")
        if not isinstance(lo, list) or len(lo) != c or not all(
                isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_ALPHABET
                for v in lo):
            raise bad(f"operating point {k}: lo must be {c} integers within "
                      f"+-{MAX_ALPHABET}")
        if not isinstance(freqs, list) or len(freqs) != c:
            raise bad(f"operating point {k}: freqs must be {c} lists")
        tables = []
        for ch, f in enumerate(freqs):
            if not isinstance(f, list) or not 2 <= len(f) <= MAX_ALPHABET or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in f):
                raise bad(f"operating point {k} channel {ch}: freqs must be 2..{MAX_ALPHABET} "
                          f"positive integers")
            if sum(f) != 2**PRECISION:
                raise bad(f"operating point {k} channel {ch}: freqs sum to {sum(f)}, expected "
                          f"2**{PRECISION}")
            tables.append(np.asarray(f, np.int64))
        parsed.append(OperatingPoint(gain.astype(np.float32), np.asarray(lo, np.int64),
                                     tuple(tables)))
    return split, int(channels or 0), tuple(parsed)


def _parse_context(block: Any, points: tuple[OperatingPoint, ...]
                   ) -> tuple[ContextPoint, ...]:
    try:
        return parse_context(block, [[len(f) for f in p.freqs] for p in points], PRECISION,
                             MAX_ALPHABET)
    except ContextTablesError as err:
        raise EntropyTablesError(f"entropy tables: {err}") from None


def _parse_temporal(block: Any, context: tuple[ContextPoint, ...],
                    points: tuple[OperatingPoint, ...]) -> tuple[TemporalPoint | None, ...]:
    try:
        return parse_temporal_context(block, context, [[len(f) for f in p.freqs]
                                                       for p in points], PRECISION)
    except TemporalContextError as err:
        raise EntropyTablesError(f"entropy tables: {err}") from None


@lru_cache(maxsize=8)
def _cached(text: str) -> EntropyTables:
    return EntropyTables(json.loads(text))


def tables_of(block: dict | None) -> EntropyTables | None:
    """The tables of a card's (or ``ModelConfig``'s) ``entropy`` block, None without one;
    parsed and built once per distinct block."""
    if block is None:
        return None
    return _cached(json.dumps(block, sort_keys=True))
