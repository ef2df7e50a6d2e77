"""Temporal coding of a feature stream: skipped blocks against the decoder's reference, with a
keyframe every N frames. A lost, late or reordered frame is refused, never mis-decoded; the
next keyframe (or one the server asks for) restores the stream.

Codec ids ``t<N>-s<T>-<base>/1`` (``parse_temporal``): ``N`` the keyframe interval in streamed
frames (1..3600; 1 = every frame a keyframe), ``T`` the skip threshold in thousandths of each
channel's value range (0..1000; 0 = no block is ever skipped), ``<base>`` a per-frame codec
(``codec.CODECS`` or ``eb-<k>``, version 1), e.g. ``t30-s20-q4-zstd/1``. ``N`` and ``T`` are
encoder choices; any decoder of version 1 reads every id.

Conditional ids ``t<N>-c<H>-ebc-<k>/1``: keyframes as ``t<N>-s<T>-ebc-<k>/1``'s; a delta
carries every symbol of eb-<k>'s quantizer, coded with the card's temporal context tables
(``temporal_context.py``: ebc-<k>'s contexts and the reference's co-located symbol), so nothing
is skipped and the tensor is eb-<k>'s symbols. ``H`` (0..1000, an encoder choice) is a hold in
thousandths of a quantization step: a symbol keeps the reference's value while the value lies
within 0.5 + H/1000 steps of it (0: exactly ebc-<k>'s tensor; the error stays within
0.5 + H/1000 steps, frame after frame). ``t<N>-c<H>-r<L>-ebc-<k>/1`` (``L`` 1..4000, an
encoder choice; the decoder ignores it): each delta symbol is chosen among its neighbours for
rate + distortion (``temporal_context.rd_symbols``, rate weight L/1000 squared steps per bit;
the error stays within 1.5 + H/1000 steps); without ``r`` the encoder is exactly as before.

Wire format, version 1. ``shape`` is the full split tensor (C, H, W); ``scale``/``offset``
are the base codec's for the tensor it coded (empty when it coded none); ``data`` =

- a 15-byte header ``<BBBIII``: magic ``0x7E``; flags (bit 0: keyframe; bit 1: residual, a
  delta's only; bit 2: conditional, the deltas of a conditional id, and only theirs; the
  others 0); the tile side ``S`` (1..255); the stream id (random per
  encoder, so a restarted edge never matches an old reference); the frame counter; the
  reference counter (a keyframe: its own counter; a delta: the frame before it,
  ``frame = reference + 1 mod 2**32``);
- a keyframe: the base codec's payload of the whole (C, H, W) tensor: its reconstruction is
  the base codec's, bit for bit;
- a delta: a bitmap of the ceil(H/S) x ceil(W/S) spatial tiles, row-major, bit i of byte
  i // 8 (least significant first), unused bits 0, a set bit = the tile changed; then, unless
  no tile changed, the base codec's payload of a (C, 1, M) tensor: every channel's values at
  the changed tiles' M positions, row-major over (H, W), or with the residual flag their
  differences from the reference. The decoder takes its reference (the previous frame's
  reconstruction) and overwrites those positions (residual: adds to them, in float32);
- a conditional delta: the ANS words (uint32 LE, sentinel as eb's) of the whole tensor's
  symbols; the reference's symbols are eb-<k>'s quantizer of the held reconstruction (exact:
  it is a reconstruction of symbols).

The encoder codes residuals with the zstd base codecs: their per-channel quantizer then spans
only the change, which on the sim sequences gave fewer bytes and a smaller error than the
values at every threshold; with ``eb-<k>`` it codes the values, which its tables were learned
on.

The encoder skips a tile when the mean absolute difference between the new values and the
decoder's reconstruction (which it tracks exactly), over the tile's positions and every
channel, each channel divided by its value range in the new frame, is below ``T / 1000``.
Comparing against the reconstruction, not the previous input, bounds the drift of a tile
skipped many times; it also means ``T`` must sit above the base codec's own error to skip
anything (on the sim sequences: q4 from about s10, eb-3 of models/default from about s50;
docs/BENCHMARKS.md).

Decoder verdicts (``CodecError.reason``): ``temporal`` = a malformed header or body;
``no_reference`` = a delta whose reference is not the frame this decoder holds (a lost frame, a
restarted server, another server's stream): the sender needs to send a keyframe
(``NEEDS_KEYFRAME``); ``temporal_context`` = a conditional delta's words that are not one
stream of the tensor's symbols; ``late_frame`` = a delta of the held stream not newer than the
held frame (reordered or duplicated): dropped, the state is intact. A refused message never
changes the decoder's state.
"""

from __future__ import annotations

import re
import secrets
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtl_split_core.codec import (
    CODECS,
    DEFAULT_MAX_ELEMENTS,
    ENTROPY_CODECS,
    CodecError,
    EncodedTensor,
    decode,
    encode,
    entropy_point,
)
from mtl_split_core.entropy_tables import EntropyStreamError, EntropyTables, max_words
from mtl_split_core.temporal_context import rd_symbols

VERSION = 1
MAX_KEYFRAME_INTERVAL = 3600
MAX_THRESHOLD = 1000          # thousandths of a channel's range
DEFAULT_TILE = 4              # tile side in split-tensor positions (s16 at 320x240: 4 x 5 tiles)
MAX_TILE = 255
# CodecError reasons: the server counts each and answers NEEDS_KEYFRAME with a keyframe request.
MALFORMED, NEEDS_KEYFRAME, LATE = "temporal", "no_reference", "late_frame"
CONDITIONAL_STREAM = "temporal_context"
_MAGIC = 0x7E
_KEYFRAME = 0x01
_RESIDUAL = 0x02
_CONDITIONAL = 0x04
_HEADER = struct.Struct("<BBBIII")  # magic, flags, tile side, stream, frame, reference
_WRAP = 2 ** 32
MAX_RATE_WEIGHT = 4000        # thousandths of a squared quantization step per bit
_ID = re.compile(r"t([0-9]{1,4})-([sc])([0-9]{1,4})(?:-r([0-9]{1,4}))?-([a-z0-9-]+)"
                 r"/([0-9]{1,6})")


@dataclass(frozen=True)
class TemporalCodec:
    """A parsed temporal codec id."""

    keyframe_interval: int
    threshold: int  # thousandths of a channel's range (conditional: of a quantization step)
    base: str       # the per-frame codec id, e.g. "q4-zstd/1"
    conditional: bool = False  # t<N>-c<H>-ebc-<k>: deltas coded on the reference's symbols
    rate_weight: int = 0  # t<N>-c<H>-r<L>-...: the encoder's rate weight L (thousandths)

    @property
    def codec(self) -> str:
        mode = "c" if self.conditional else "s"
        rate = f"-r{self.rate_weight}" if self.rate_weight else ""
        return (f"t{self.keyframe_interval}-{mode}{self.threshold}{rate}-"
                f"{self.base.split('/')[0]}/{VERSION}")


def is_temporal(codec: object) -> bool:
    """Whether ``codec`` looks like a temporal codec id (``parse_temporal`` checks it)."""
    return isinstance(codec, str) and _ID.fullmatch(codec) is not None


def parse_temporal(codec: object, base_codecs: tuple[str, ...] = CODECS + ENTROPY_CODECS
                   ) -> TemporalCodec:
    """``t<N>-s<T>-<base>/1`` or ``t<N>-c<H>[-r<L>]-ebc-<k>/1`` -> its parts; CodecError(reason
    ``codec``) for anything else, or a base that is not one of ``base_codecs``."""
    match = _ID.fullmatch(codec) if isinstance(codec, str) else None
    if match is None:
        raise CodecError(f"{_clip(codec)} is not a temporal codec id "
                         f"'t<N>-s<T>-<base>/{VERSION}'", reason="codec")
    interval, conditional, threshold, rate, name, version = (
        int(match.group(1)), match.group(2) == "c", int(match.group(3)), match.group(4),
        match.group(5), int(match.group(6)))
    if version != VERSION:
        raise CodecError(f"unsupported version {version} of temporal codec {_clip(codec)}; "
                         f"this build reads version {VERSION}", reason="codec")
    if not 1 <= interval <= MAX_KEYFRAME_INTERVAL:
        raise CodecError(f"{codec}: keyframe interval {interval} must be in "
                         f"1..{MAX_KEYFRAME_INTERVAL}", reason="codec")
    if threshold > MAX_THRESHOLD:
        raise CodecError(f"{codec}: skip threshold {threshold} must be in 0..{MAX_THRESHOLD}",
                         reason="codec")
    if rate is not None and not (conditional and 1 <= int(rate) <= MAX_RATE_WEIGHT):
        raise CodecError(f"{codec}: a rate weight r<L> (1..{MAX_RATE_WEIGHT}) belongs to a "
                         f"conditional id t<N>-c<H>-r<L>-ebc-<k>/1 only", reason="codec")
    base = f"{name}/1"
    if base not in base_codecs:
        raise CodecError(f"{codec}: base codec {base} must be one of "
                         f"{', '.join(base_codecs)}", reason="codec")
    if conditional and not name.startswith("ebc-"):
        raise CodecError(f"{codec}: a conditional temporal codec (t<N>-c<H>-...) codes on "
                         f"ebc-<k>/1 only", reason="codec")
    return TemporalCodec(interval, threshold, base, conditional,
                         0 if rate is None else int(rate))


def base_codec(codec: str) -> str:
    """The per-frame codec that codes ``codec``'s frames: its base for a temporal codec,
    ``codec`` itself otherwise (CodecError for a malformed temporal id)."""
    return parse_temporal(codec).base if is_temporal(codec) else codec


def tile_grid(shape: tuple[int, ...], tile: int) -> tuple[int, int]:
    """Tiles per column and per row of a (C, H, W) tensor."""
    return -(-int(shape[1]) // tile), -(-int(shape[2]) // tile)


def tile_mask(changed: np.ndarray, shape: tuple[int, ...], tile: int) -> np.ndarray:
    """The (H, W) positions of the tiles set in ``changed`` (rows x cols bools)."""
    full = np.repeat(np.repeat(changed, tile, axis=0), tile, axis=1)
    return full[:int(shape[1]), :int(shape[2])]


# ---------------------------------------------------------------------------------- encoder
class TemporalEncoder:
    """One stream's encoder (an edge's, for one split and codec). Not thread-safe: the edge
    encodes its frames one at a time."""

    def __init__(self, codec: str, tables: EntropyTables | None = None, level: int = 3,
                 tile: int = DEFAULT_TILE) -> None:
        self.spec = parse_temporal(codec)
        self.codec = codec
        self.tables, self.level = tables, int(level)
        if not 1 <= int(tile) <= MAX_TILE:
            raise CodecError(f"tile side {tile} must be in 1..{MAX_TILE}")
        self.tile = int(tile)
        self.stream = secrets.randbits(32)
        self.frame = 0
        self._reference: np.ndarray | None = None  # the decoder's reconstruction
        self._since_keyframe = 0
        self._keyframe_wanted = True
        # Residuals for the zstd codecs (module docstring); values for the entropy codecs.
        self._residual = self.spec.base in CODECS
        self._point = entropy_point(self.spec.base)
        if self.spec.conditional:
            _check_temporal_tables(codec, self._point, tables)

    def request_keyframe(self) -> None:
        """Code the next streamed frame as a keyframe (the server lost the reference)."""
        self._keyframe_wanted = True

    def encode(self, x: torch.Tensor | np.ndarray, keyframe: bool = False,
               streamed: bool = True) -> EncodedTensor:
        """Code the (C, H, W) split tensor ``x`` as the stream's next frame.

        ``keyframe``: code it self-contained even if a delta would do. ``streamed`` False: the
        frame does not go to the server's stream (e.g. served on the robot only): it is coded
        as a keyframe that leaves the stream's state alone."""
        values = (x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor)
                  else np.asarray(x, np.float32))
        shape = tuple(int(v) for v in values.shape)
        if not streamed:
            enc, _ = self._keyframe(values, self.frame)
            return enc
        frame = (self.frame + 1) % _WRAP
        ref = self._reference
        if (keyframe or self._keyframe_wanted or ref is None or ref.shape != values.shape
                or self._since_keyframe + 1 >= self.spec.keyframe_interval):
            enc, recon = self._keyframe(values, frame)
            self._since_keyframe = 0
            self._keyframe_wanted = False
        else:
            enc, recon = (self._conditional(values, ref, shape, frame) if self.spec.conditional
                          else self._delta(values, ref, shape, frame))
            self._since_keyframe += 1
        self.frame, self._reference = frame, recon
        return enc

    def _keyframe(self, values: np.ndarray, frame: int) -> tuple[EncodedTensor, np.ndarray]:
        base = encode(values, self.spec.base, level=self.level, tables=self.tables)
        recon = decode(base, max_elements=values.size, tables=self.tables)
        header = _HEADER.pack(_MAGIC, _KEYFRAME, self.tile, self.stream, frame, frame)
        return EncodedTensor(self.codec, base.shape, base.scale, base.offset,
                             header + base.data), recon

    def _delta(self, values: np.ndarray, ref: np.ndarray, shape: tuple[int, ...], frame: int
               ) -> tuple[EncodedTensor, np.ndarray]:
        rows, cols = tile_grid(shape, self.tile)
        span = values.reshape(shape[0], -1)
        scale = np.maximum(span.max(1) - span.min(1), np.float32(1e-12))[:, None, None]
        change = (np.abs(values - ref) / scale).mean(0)  # (H, W), in channel ranges
        padded = np.zeros((rows * self.tile, cols * self.tile), np.float64)
        counts = np.zeros_like(padded)
        padded[:shape[1], :shape[2]], counts[:shape[1], :shape[2]] = change, 1.0
        tiles = padded.reshape(rows, self.tile, cols, self.tile).sum((1, 3)) \
            / counts.reshape(rows, self.tile, cols, self.tile).sum((1, 3))
        changed = tiles >= self.spec.threshold / 1000.0
        flags = _RESIDUAL if self._residual else 0
        header = _HEADER.pack(_MAGIC, flags, self.tile, self.stream, frame, (frame - 1) % _WRAP)
        bitmap = np.packbits(changed.ravel(), bitorder="little").tobytes()
        recon = ref.copy()
        if not changed.any():
            empty = np.zeros(0, np.float32)
            return EncodedTensor(self.codec, shape, empty, empty.copy(), header + bitmap), recon
        mask = tile_mask(changed, shape, self.tile)
        target = values[:, mask] - ref[:, mask] if self._residual else values[:, mask]
        part = np.ascontiguousarray(target[:, None, :])
        base = encode(part, self.spec.base, level=self.level, tables=self.tables)
        coded = decode(base, max_elements=part.size, tables=self.tables)[:, 0, :]
        recon[:, mask] = recon[:, mask] + coded if self._residual else coded
        return EncodedTensor(self.codec, shape, base.scale, base.offset,
                             header + bitmap + base.data), recon


    def _conditional(self, values: np.ndarray, ref: np.ndarray, shape: tuple[int, ...],
                     frame: int) -> tuple[EncodedTensor, np.ndarray]:
        """A conditional delta: every symbol, coded on the reference's (module docstring)."""
        tables, op = self.tables, self._point
        assert tables is not None and op is not None  # _check_temporal_tables in __init__
        point = tables.points[op]
        flat = values.reshape(shape[0], -1)
        if not np.isfinite(flat).all():
            raise CodecError("tensor contains NaN or Inf; the codec carries finite values only")
        reference = reference_symbols(tables, op, ref)
        c, h, w = (int(v) for v in shape)
        rows: list[np.ndarray] = []
        index = rd_symbols(tables.temporal_coder(op), point, flat, reference, (c, h, w),
                           self.spec.threshold, self.spec.rate_weight / 1000.0, rows)
        words = tables.encode(op, index, (c, h, w), reference, rows or None)
        header = _HEADER.pack(_MAGIC, _CONDITIONAL, self.tile, self.stream, frame,
                              (frame - 1) % _WRAP)
        empty = np.zeros(0, np.float32)
        return (EncodedTensor(self.codec, shape, empty, empty.copy(),
                              header + words.astype("<u4").tobytes()),
                point.values(index).reshape(shape))


def reference_symbols(tables: EntropyTables, op: int, reference: np.ndarray) -> np.ndarray:
    """Operating point ``op``'s table indices (C, H*W) of a reconstruction (C, H, W): exactly
    the symbols it was made of when it is one (float32 ``(s / g) * g`` rounds back to ``s``)."""
    return tables.points[op].symbols(reference.reshape(reference.shape[0], -1))


def _check_temporal_tables(codec: str, op: int | None, tables: EntropyTables | None) -> None:
    if op is None or tables is None or not tables.has_temporal(op):
        raise CodecError(f"{codec} needs the model's temporal context tables for operating "
                         f"point {op}; this model has "
                         f"{'none' if tables is None else 'no such tables'}", reason="entropy")


# ---------------------------------------------------------------------------------- decoder
class TemporalDecoder:
    """One stream's decoder (a server's, per robot): holds the last reconstruction.
    Thread-safe (a node's callbacks may run on several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: int | None = None
        self._frame = 0
        self._reference: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the reference: every delta is refused until the next keyframe."""
        with self._lock:
            self._stream, self._reference = None, None

    def decode(self, enc: EncodedTensor, max_elements: int = DEFAULT_MAX_ELEMENTS,
               tables: EntropyTables | None = None) -> np.ndarray:
        """The (C, H, W) reconstruction of ``enc`` (a temporal codec's), float32; CodecError
        (reason MALFORMED, NEEDS_KEYFRAME, LATE, or the base codec's) otherwise, leaving the
        state as it was. The returned array is never modified later."""
        spec = parse_temporal(enc.codec)
        data = enc.data
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _malformed(f"payload must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise _malformed(f"{enc.codec} payload of {len(data)} bytes is shorter than its "
                             f"{_HEADER.size}-byte header")
        magic, flags, tile, stream, frame, reference = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise _malformed(f"{enc.codec} payload starts with 0x{magic:02X}, expected "
                             f"0x{_MAGIC:02X}")
        if flags & ~(_KEYFRAME | _RESIDUAL | _CONDITIONAL):
            raise _malformed(f"unknown flags 0x{flags:02X} (bit 0: keyframe, bit 1: residual, "
                             f"bit 2: conditional)")
        if flags & _KEYFRAME and flags & (_RESIDUAL | _CONDITIONAL):
            raise _malformed("a keyframe is neither a residual nor conditional")
        if flags & _RESIDUAL and flags & _CONDITIONAL:
            raise _malformed("a conditional delta is not a residual")
        if not flags & _KEYFRAME and bool(flags & _CONDITIONAL) != spec.conditional:
            raise _malformed(f"{enc.codec}: flag bit 2 (conditional) is set exactly on the "
                             f"deltas of a conditional codec (t<N>-c<H>-...)")
        if not 1 <= tile <= MAX_TILE:
            raise _malformed(f"tile side {tile} must be in 1..{MAX_TILE}")
        keyframe = bool(flags & _KEYFRAME)
        if keyframe and reference != frame:
            raise _malformed(f"keyframe {frame} names reference {reference}; a keyframe "
                             f"references itself")
        if not keyframe and frame != (reference + 1) % _WRAP:
            raise _malformed(f"delta frame {frame} follows reference {reference}; expected "
                             f"frame = reference + 1")
        body = data[_HEADER.size:]
        shape = enc.shape
        if keyframe:
            base = EncodedTensor(spec.base, shape, enc.scale, enc.offset, body)
            recon = decode(base, max_elements=max_elements, tables=tables)
            with self._lock:
                self._stream, self._frame, self._reference = stream, frame, recon
            return recon
        with self._lock:
            return self._decode_delta(enc, spec, body, (tile, bool(flags & _RESIDUAL)), stream,
                                      frame, reference, max_elements, tables)

    def _decode_delta(self, enc: EncodedTensor, spec: TemporalCodec, body: bytes,
                      layout: tuple[int, bool], stream: int, frame: int, reference: int,
                      max_elements: int, tables: EntropyTables | None) -> np.ndarray:
        tile, residual = layout
        ref = self._reference
        if ref is None or stream != self._stream:
            raise CodecError(f"delta frame {frame} of stream {stream:08x}: this decoder holds "
                             f"no frame of that stream; a keyframe is needed",
                             reason=NEEDS_KEYFRAME)
        if (self._frame - frame) % _WRAP < _WRAP // 2:
            raise CodecError(f"delta frame {frame} is not newer than the held frame "
                             f"{self._frame}: late or duplicated", reason=LATE)
        if reference != self._frame:
            raise CodecError(f"delta frame {frame} references frame {reference}, this decoder "
                             f"holds {self._frame} (frames lost); a keyframe is needed",
                             reason=NEEDS_KEYFRAME)
        shape = tuple(int(v) for v in enc.shape) if isinstance(enc.shape, (tuple, list)) else ()
        if shape != ref.shape:
            raise _malformed(f"delta of shape {_clip(enc.shape)}, the reference has "
                             f"{ref.shape}")
        if spec.conditional:
            recon = _decode_conditional(enc, spec, body, shape, ref, tables)
            self._frame, self._reference = frame, recon
            return recon
        rows, cols = tile_grid(shape, tile)
        nbits = rows * cols
        nbytes = (nbits + 7) // 8
        if len(body) < nbytes:
            raise _malformed(f"tile bitmap of {len(body)} bytes; {rows} x {cols} tiles of side "
                             f"{tile} need {nbytes}")
        bits = np.unpackbits(np.frombuffer(body[:nbytes], np.uint8), bitorder="little")
        if bits[nbits:].any():
            raise _malformed(f"tile bitmap sets bits beyond its {nbits} tiles")
        changed = bits[:nbits].astype(bool).reshape(rows, cols)
        rest = body[nbytes:]
        recon = ref.copy()
        if not changed.any():
            if rest or len(enc.scale) or len(enc.offset):
                raise _malformed("a delta without changed tiles carries no values")
        else:
            mask = tile_mask(changed, shape, tile)
            part_shape = (shape[0], 1, int(mask.sum()))
            base = EncodedTensor(spec.base, part_shape, enc.scale, enc.offset, rest)
            coded = decode(base, max_elements=max_elements, tables=tables)[:, 0, :]
            with np.errstate(over="ignore", invalid="ignore"):
                recon[:, mask] = recon[:, mask] + coded if residual else coded
            if residual and not np.isfinite(recon[:, mask]).all():
                raise _malformed("residuals overflow float32 on the reference")
        self._frame, self._reference = frame, recon
        return recon


def _decode_conditional(enc: EncodedTensor, spec: TemporalCodec, body: bytes,
                        shape: tuple[int, ...], ref: np.ndarray, tables: EntropyTables | None
                        ) -> np.ndarray:
    """A conditional delta's reconstruction: every check, then the bounded decoding."""
    op = entropy_point(spec.base)
    _check_temporal_tables(enc.codec, op, tables)
    assert tables is not None and op is not None
    if len(enc.scale) or len(enc.offset):
        raise _malformed(f"a conditional delta carries no scale/offset, got "
                         f"{len(enc.scale)} and {len(enc.offset)} values")
    c, h, w = (int(v) for v in shape)
    if c != tables.channels:
        raise CodecError(f"{enc.codec}: {c} channels, the model's tables have "
                         f"{tables.channels} (split {tables.split})", reason="entropy")
    limit = max_words(c * h * w)
    if len(body) % 4 or not 0 < len(body) // 4 <= limit:
        raise CodecError(f"{enc.codec}: conditional delta of {len(body)} bytes: expected 1.."
                         f"{limit} whole 32-bit words for {c * h * w} symbols",
                         reason=CONDITIONAL_STREAM)
    words = np.frombuffer(body, "<u4").astype(np.uint32)
    try:
        index = tables.decode(op, words, h * w, (c, h, w), reference_symbols(tables, op, ref))
    except EntropyStreamError as err:
        raise CodecError(f"{enc.codec}: {err}", reason=CONDITIONAL_STREAM) from None
    return tables.points[op].values(index).reshape(c, h, w)


# ------------------------------------------------------------------------- keyframe requests
class KeyframeRequests:
    """The edge's side of a refusal: a NEEDS_KEYFRAME answer for a frame sent before the newest
    keyframe is already answered by that keyframe; only later ones ask for another (so a burst
    of refusals costs one keyframe). Stamps: the frames' header stamps in ns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_keyframe: int | None = None
        self.keyframes_sent = 0
        self.requests = 0  # refusals that asked for a keyframe (on /diagnostics)

    def sent(self, stamp_ns: int, tensor: EncodedTensor) -> None:
        """Record a sent frame (only keyframes of a temporal codec matter)."""
        if is_keyframe(tensor):
            with self._lock:
                self._last_keyframe = int(stamp_ns)
                self.keyframes_sent += 1

    def refused(self, stamp_ns: int) -> bool:
        """The server refused frame ``stamp_ns`` for a missing reference: whether the next
        frame must be a keyframe."""
        with self._lock:
            needed = self._last_keyframe is None or int(stamp_ns) >= self._last_keyframe
            self.requests += needed
            return needed


def is_keyframe(tensor: EncodedTensor) -> bool:
    """Whether ``tensor`` (as this build encoded it) is a temporal codec's keyframe."""
    data = tensor.data
    return (is_temporal(tensor.codec) and len(data) >= _HEADER.size and data[0] == _MAGIC
            and bool(data[1] & _KEYFRAME))


def _malformed(message: str) -> CodecError:
    return CodecError(message, reason=MALFORMED)


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


__all__ = ["KeyframeRequests", "TemporalCodec", "TemporalDecoder", "TemporalEncoder",
           "base_codec", "is_keyframe", "is_temporal", "parse_temporal", "tile_grid"]
