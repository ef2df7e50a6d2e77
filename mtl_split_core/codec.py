"""The feature codec: the one place the wire format of split tensors lives.

Wire format (version 1 of every codec). A split tensor ``(C, H, W)`` becomes an
``EncodedTensor`` whose fields map 1:1 onto the ``SplitFeatures`` message:

- ``codec``: ``"<name>/<version>"``, one of ``CODECS``;
- ``shape``: ``(C, H, W)``, all positive;
- ``scale``, ``offset``: float32, one per channel for the quantizing codecs, empty for
  ``f16-zstd`` (decode rejects anything else there, so a mislabelled tensor is caught);
- ``data``: ONE zstd frame that records its content size (and a content checksum), holding
  row-major (C, H, W) values:

  * ``f16-zstd/1``: little-endian IEEE float16 (input cast to float32, then to float16);
  * ``q8-zstd/1``: one uint8 code per value;
  * ``q4-zstd/1``: 4-bit codes, two per byte, element ``2i`` in the low nibble and ``2i+1`` in
    the high nibble; an odd element count leaves the last high nibble 0.

Entropy-coded codecs ``eb-<k>/1`` (``ENTROPY_CODECS``; operating point k of a model whose card
has entropy tables, ``entropy_tables.py``; only at the tables' split): ``scale`` and ``offset``
empty, ``data`` = a 6-byte header, ``0xEB``, ``k`` (uint8), the symbol count C*H*W (uint32
LE), then the ANS stream as uint32 LE words (at most ``entropy_tables.max_words``), channel 0
decoded first, each channel's H*W symbols row-major. Symbols and reconstructions: the tables'
quantizer (``OperatingPoint.symbols`` / ``values``). Every header field is checked against the
shape and the tables before any decoding work; the stream must end exactly in the coder's
initial state. These errors carry ``reason = "entropy"``. ``ebc-<k>/1`` (cards with context
tables, ``context_tables.py``): the same symbols and header with magic ``0xEC``, coded in the
context tables' order (checkerboard passes) with the tables their contexts pick.

Quantization (one formula for the wire and for training, see docs/CONTRACTS.md), per sample
and channel, computed in float32: ``offset = min``, ``scale = (max - min) / (2**bits - 1)``
(0 for a constant channel), ``code = clip(round((x - offset) / scale), 0, 2**bits - 1)``,
``x' = code * scale + offset``; so ``|x - x'| <= scale / 2`` up to float32 rounding.

``decode`` treats its input as hostile: every problem raises ``CodecError`` (never another
exception type), and it decompresses at most the exact size the (capped) shape needs.
"""

from __future__ import annotations

import array
import functools
import math
import re
import struct
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import zstandard

from mtl_split_core.entropy_tables import (
    MAX_OPERATING_POINTS,
    EntropyStreamError,
    EntropyTables,
    max_words,
)

# Codecs every model has (no tables needed); ENTROPY_CODECS need the model's entropy tables.
CODECS = ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1")
# A split's default codec where the model's default is entropy-coded and the split has no
# tables (entropy tables code one split): every model has it.
FALLBACK_CODEC = "q4-zstd/1"
# eb-<k>/1: one table per channel; ebc-<k>/1: the same symbols, context tables (version 2).
ENTROPY_CODECS = tuple(f"{family}-{k}/1" for family in ("eb", "ebc")
                       for k in range(MAX_OPERATING_POINTS))
# Codec name -> bits per quantized code (None: float16 values, no quantization).
_BITS: dict[str, int | None] = {"f16-zstd": None, "q8-zstd": 8, "q4-zstd": 4}
# Codec name -> wire-format versions this build reads and writes.
_VERSIONS: dict[str, tuple[int, ...]] = {
    "f16-zstd": (1,), "q8-zstd": (1,), "q4-zstd": (1,),
    **{c.split("/")[0]: (1,) for c in ENTROPY_CODECS}}
_EB_MAGIC = 0xEB
_EBC_MAGIC = 0xEC
_EB_HEADER = struct.Struct("<BBI")  # magic, operating point, symbol count
_CODEC_ID = re.compile(r"([a-z0-9-]+)/([0-9]{1,6})")

DEFAULT_MAX_ELEMENTS = 64 * 1024 * 1024
ZSTD_LEVELS = (1, zstandard.MAX_COMPRESSION_LEVEL)  # inclusive range accepted by encode
_F16_MAX = 65504.0
# Prefix of the message decode's last-resort handler uses; tests assert it never fires.
UNEXPECTED = "unexpected decoder failure"

ArrayLike = np.ndarray | torch.Tensor
# dequantize returns what it is given: numpy on the decoder, torch in training.
_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


class CodecError(ValueError):
    """Input the codec cannot encode or decode; the message says what and what was expected.
    ``reason``: the key a server counts the rejection under ("payload", or "entropy" for a
    malformed entropy-coded payload)."""

    def __init__(self, message: str, reason: str = "payload"):
        super().__init__(message)
        self.reason = reason


def _entropy_error(message: str) -> CodecError:
    return CodecError(message, reason="entropy")


@dataclass(frozen=True, eq=False)  # eq=False: ndarray fields make == ambiguous and unhashable
class EncodedTensor:
    """An encoded (C, H, W) tensor; fields map 1:1 onto SplitFeatures (codec, shape, scale,
    offset, data). For ``f16-zstd`` ``scale`` and ``offset`` are empty float32 arrays.

    Construction does not validate (hostile fields come in through here); ``decode`` does.
    """

    codec: str
    shape: tuple[int, ...]
    scale: np.ndarray
    offset: np.ndarray
    data: bytes

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: payload plus the float32 scale/offset arrays."""
        return len(self.data) + 4 * (len(self.scale) + len(self.offset))


# ---------------------------------------------------------------- codec ids

def parse_codec(codec: object) -> tuple[str, int]:
    """``"name/version"`` -> ``(name, version)``; CodecError for unknown names or versions."""
    if not isinstance(codec, str):
        raise CodecError(f"codec id must be a string like 'q8-zstd/1', got "
                         f"{type(codec).__name__}")
    return _parse_codec_id(codec)


@functools.lru_cache(maxsize=256)  # per frame on the server; a refused id raises, never cached
def _parse_codec_id(codec: str) -> tuple[str, int]:
    match = _CODEC_ID.fullmatch(codec)
    if match is None:
        raise CodecError(f"malformed codec id {_short(codec)}; expected 'name/version', one of "
                         f"{', '.join(CODECS)}")
    name, version = match.group(1), int(match.group(2))
    if name not in _VERSIONS:
        raise CodecError(f"unknown codec {name!r} in {_short(codec)}; expected one of "
                         f"{', '.join(CODECS)} or eb-<k>/1, ebc-<k>/1 (k < "
                         f"{MAX_OPERATING_POINTS})")
    if version not in _VERSIONS[name]:
        raise CodecError(f"unsupported version {version} of codec {name!r}; this build reads "
                         f"version(s) {', '.join(map(str, _VERSIONS[name]))}")
    return name, version


def entropy_point(codec: str) -> int | None:
    """The operating point k of ``eb-<k>/1``, None for a codec without tables."""
    name, _ = parse_codec(codec)
    return int(name.split("-")[1]) if name.startswith(("eb-", "ebc-")) else None


def _context_coded(codec: str) -> bool:
    """Whether an entropy-coded codec uses the context tables (``ebc-<k>/1``)."""
    return codec.startswith("ebc-")


def model_codecs(tables: EntropyTables | None) -> tuple[str, ...]:
    """Every codec a model with ``tables`` (None: none) can encode: ``CODECS`` and its
    operating points."""
    return CODECS + (tables.codec_ids if tables is not None else ())


def split_codecs(tables: EntropyTables | None, split: str) -> tuple[str, ...]:
    """Every codec a model with ``tables`` can encode at ``split``: entropy tables code their
    own split only."""
    return model_codecs(tables if tables is not None and tables.split == split else None)


def split_default(codec: str, tables: EntropyTables | None, split: str) -> str:
    """A model's default ``codec`` (its default split's) at ``split``: the codec itself
    where ``split`` can code it, else ``FALLBACK_CODEC``."""
    return codec if codec in split_codecs(tables, split) else FALLBACK_CODEC


def codec_bits(codec: str) -> int | None:
    """Bits per code of a quantizing codec (8 or 4), None for float16. CodecError for an
    entropy-coded codec: its bits per value depend on the data."""
    if entropy_point(codec) is not None:
        raise CodecError(f"{codec} is entropy-coded: no fixed bits per value")
    return _BITS[parse_codec(codec)[0]]


def payload_size(codec: str, shape: tuple[int, ...]) -> int:
    """Exact decompressed payload size in bytes for a zstd ``codec`` and a valid ``shape``."""
    n = math.prod(int(v) for v in shape)
    bits = codec_bits(codec)
    return 2 * n if bits is None else (n * bits + 7) // 8


# ---------------------------------------------------------------- the formula

def _levels(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise CodecError(f"bits must be an integer in 1..16 (4 and 8 have wire codecs), got "
                         f"{bits!r}")
    return 2 ** int(bits) - 1


def quantization_params(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, offset)`` of a float32 ``(..., C, H, W)`` tensor."""
    lo, hi = torch.aminmax(x.flatten(-2), dim=-1)
    # Divide by a tensor, not a Python number: CUDA turns division by a scalar into
    # multiplication by its rounded reciprocal, which would make GPU and CPU scales differ.
    return (hi - lo) / torch.full_like(hi, _levels(bits)), lo


def quantize(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int
             ) -> torch.Tensor:
    """Codes of ``x`` as float32 with integral values in ``[0, 2**bits - 1]``."""
    # A zero scale (constant channel) would divide by zero; every code there is 0 anyway.
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round((x - offset[..., None, None]) / safe[..., None, None])
    return codes.clamp_(0, _levels(bits))


def dequantize(codes: _Array, scale: _Array, offset: _Array) -> _Array:
    """``code * scale + offset`` per channel. Plain operators, so numpy arrays (decode) and
    torch tensors (fake_quantize) go through the same float32 arithmetic."""
    return codes * scale[..., None, None] + offset[..., None, None]


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize ``(N, C, H, W)`` per sample and channel with a straight-through
    (identity) gradient, for training.

    The math runs in float32, so for float32 input the result equals
    ``decode(encode(x[i]))`` bit for bit; for bf16/fp16 input it is that, rounded to the
    input dtype. NaN/Inf are not checked here (no host sync in the training step).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise CodecError(f"fake_quantize expects a float (N, C, H, W) tensor, got "
                         f"{_describe(x)}")
    if x.shape[-1] * x.shape[-2] == 0:
        raise CodecError(f"fake_quantize needs non-empty H and W, got {tuple(x.shape)}")
    with torch.no_grad():
        xf = x.detach().float()
        scale, offset = quantization_params(xf, bits)
        deq = dequantize(quantize(xf, scale, offset, bits), scale, offset).to(x.dtype)
    # x - x.detach() is exactly 0 in value and identity in gradient: forward = deq bit for bit.
    return deq + (x - x.detach())


# ---------------------------------------------------------------- encode

def encode(x: ArrayLike, codec: str = "q8-zstd/1", level: int = 3,
           tables: EntropyTables | None = None) -> EncodedTensor:
    """Encode a ``(C, H, W)`` float16/32/64 numpy array or float torch tensor (any device).

    Statistics, quantization and q4 packing run with torch where the tensor lives
    (``device_encode``), so a GPU edge moves one buffer (the codes and 2C floats) to the host;
    the checks and zstd run on the CPU (``finish_encode``). ``level`` is the zstd level in
    ``ZSTD_LEVELS``. NaN/Inf input raises CodecError.
    ``tables``: the model's entropy tables, needed by (only) the ``eb-<k>/1`` codecs, whose
    quantizer runs in numpy on the host (the same float32 arithmetic on every machine).
    """
    name, _ = parse_codec(codec)
    point = entropy_point(codec)
    if point is not None:
        return _encode_entropy(_as_float32_tensor(x), codec, point, tables)
    t = _as_float32_tensor(x)
    shape = tuple(int(v) for v in t.shape)
    return finish_encode(device_encode(t, codec).cpu().numpy(), codec, shape, level)


def device_encode(t: torch.Tensor, codec: str) -> torch.Tensor:
    """The device half of ``encode`` for a zstd codec: one flat uint8 tensor on ``t``'s device
    holding the per-channel statistics (float32: non-finite count, then scale and offset, or
    the peak magnitude for f16) and the codes. No host synchronisation and fixed shapes, so a
    CUDA graph can capture it after the network (runtime/cuda_graph.py); one device -> host
    copy of the result feeds ``finish_encode``. ``t``: a float32 ``(C, H, W)`` tensor."""
    bits = _BITS[parse_codec(codec)[0]]
    bad = (~torch.isfinite(t)).flatten(1).sum(1).float()
    if bits is None:
        stats = torch.stack([bad, t.abs().flatten(1).amax(1)])
        codes = t.to(torch.float16).flatten().view(torch.uint8)
    else:
        scale, offset = quantization_params(t, bits)
        stats = torch.stack([bad, scale, offset])
        codes = quantize(t, scale, offset, bits).to(torch.uint8).flatten()
        if bits == 4:
            if codes.numel() % 2:
                codes = torch.cat([codes, codes.new_zeros(1)])
            codes = codes[0::2] | (codes[1::2] << 4)
    return torch.cat([stats.flatten().view(torch.uint8), codes])


def finish_encode(buffer: np.ndarray, codec: str, shape: tuple[int, ...], level: int
                  ) -> EncodedTensor:
    """The host half of ``encode``: checks ``device_encode``'s statistics (CodecError for
    NaN/Inf or values the codec cannot carry), then zstd."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) \
            or not ZSTD_LEVELS[0] <= level <= ZSTD_LEVELS[1]:
        raise CodecError(f"zstd level {level!r} must be an integer in "
                         f"[{ZSTD_LEVELS[0]}, {ZSTD_LEVELS[1]}]")
    bits = _BITS[parse_codec(codec)[0]]
    rows = 2 if bits is None else 3
    n_stats = rows * shape[0] * 4
    stats_h = buffer[:n_stats].view(np.float32).reshape(rows, shape[0])
    raw = buffer[n_stats:].tobytes()
    if stats_h[0].any():
        raise CodecError(f"tensor contains NaN or Inf ({int(stats_h[0].sum())} values in channels "
                         f"{_first(np.flatnonzero(stats_h[0]))}); the codec carries finite values "
                         f"only")
    if bits is None:
        peak = float(stats_h[1].max())
        if peak > _F16_MAX:
            raise CodecError(f"values reach {peak:.6g}, beyond the float16 range "
                             f"(+-{_F16_MAX:g}); use a q8/q4 codec")
        empty = np.zeros(0, np.float32)
        return EncodedTensor(codec, shape, empty, empty.copy(), _compress(raw, level))
    scale_h, offset_h = stats_h[1].copy(), stats_h[2].copy()
    # The decoder's largest value per channel must be finite too (checked with its own math).
    with np.errstate(over="ignore", invalid="ignore"):
        top = dequantize(np.full((shape[0], 1, 1), _levels(bits), np.float32), scale_h,
                         offset_h).ravel()
    wide = ~(np.isfinite(scale_h) & np.isfinite(top))
    if wide.any():
        raise CodecError(f"value range of channels {_first(np.flatnonzero(wide))} is too wide "
                         f"to quantize in float32 (max - min overflows)")
    return EncodedTensor(codec, shape, scale_h, offset_h, _compress(raw, level))


def _as_float32_tensor(x: Any) -> torch.Tensor:
    """A detached float32 (C, H, W) tensor on x's device; CodecError for anything else."""
    if isinstance(x, torch.Tensor):
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise CodecError(f"expected a float tensor, got dtype {x.dtype}")
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype not in (np.float16, np.float32, np.float64):
            raise CodecError(f"expected a float16/32/64 array, got dtype {x.dtype}")
        with np.errstate(over="ignore"):  # float64 beyond float32 -> inf, reported below
            arr = np.ascontiguousarray(x, dtype=np.float32)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    else:
        raise CodecError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    if t.dim() != 3 or min(t.shape) < 1:
        raise CodecError(f"expected a (C, H, W) tensor with non-empty dims, got "
                         f"{tuple(t.shape)}")
    return t.to(torch.float32)


# ---------------------------------------------------------------- decode

def decode(enc: EncodedTensor, max_elements: int = DEFAULT_MAX_ELEMENTS,
           tables: EntropyTables | None = None) -> np.ndarray:
    """Decode to a float32 ``(C, H, W)`` array (``tables``: as for ``encode``).

    Any malformed input raises CodecError saying what was wrong and what was expected; no more
    than ``max_elements`` values (and their exact payload size) are ever allocated.
    """
    try:
        return _decode(enc, max_elements, tables)
    except CodecError:
        raise
    except Exception as err:  # noqa: BLE001 - the contract: only CodecError escapes decode
        raise CodecError(f"{UNEXPECTED} ({type(err).__name__}: {err}); the encoded tensor is "
                         f"malformed") from err


def _decode(enc: EncodedTensor, max_elements: int, tables: EntropyTables | None
            ) -> np.ndarray:
    if not isinstance(enc, EncodedTensor):
        raise CodecError(f"expected an EncodedTensor, got {type(enc).__name__}")
    if isinstance(max_elements, bool) or not isinstance(max_elements, (int, np.integer)) \
            or max_elements < 1:
        raise CodecError(f"max_elements must be a positive integer, got {max_elements!r}")
    name, _ = parse_codec(enc.codec)
    shape = _check_shape(enc.shape, int(max_elements))
    scale = _f32_vector(enc.scale, "scale")
    offset = _f32_vector(enc.offset, "offset")
    point = entropy_point(enc.codec)
    if point is not None:
        return _decode_entropy(enc, point, shape, scale.size + offset.size, tables)
    bits = _BITS[name]
    if bits is None:
        if scale.size or offset.size:
            raise CodecError(f"{enc.codec} carries no scale/offset, got {scale.size} and "
                             f"{offset.size} values")
    else:
        _check_quant_params(scale, offset, shape[0], bits)
    if not isinstance(enc.data, (bytes, bytearray, memoryview)):
        raise CodecError(f"payload must be bytes, got {type(enc.data).__name__}")
    n = math.prod(shape)
    raw = _decompress(bytes(enc.data), payload_size(enc.codec, shape))
    if bits is None:
        values = np.frombuffer(raw, "<f2").astype(np.float32).reshape(shape)
        if not np.isfinite(values).all():
            raise CodecError("float16 payload holds NaN or Inf, which encode never writes")
        return values
    packed = np.frombuffer(raw, np.uint8)
    if bits == 4:
        codes = np.empty(2 * packed.size, np.uint8)
        codes[0::2], codes[1::2] = packed & 0x0F, packed >> 4
        if n % 2 and codes[-1]:
            raise CodecError("q4 payload: the padding nibble after an odd element count must "
                             "be 0")
        codes = codes[:n]
    else:
        codes = packed
    return dequantize(codes.astype(np.float32).reshape(shape), scale, offset)


def _check_shape(shape: Any, max_elements: int) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape):
        raise CodecError(f"shape {_short(shape)} must be 3 integers (C, H, W)")
    dims = tuple(int(v) for v in shape)
    if min(dims) < 1:
        raise CodecError(f"shape {dims} must be 3 positive integers (C, H, W)")
    n = math.prod(dims)  # Python ints: no overflow for uint32 dims from a message
    if n > max_elements:
        raise CodecError(f"shape {dims} has {n} elements, over the cap of {max_elements}")
    return dims  # type: ignore[return-value]


def _f32_vector(value: Any, field: str) -> np.ndarray:
    if not isinstance(value, (np.ndarray, list, tuple, array.array)):
        raise CodecError(f"{field} must be a float32 array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as err:  # ragged or odd sequences
        raise CodecError(f"{field} must be a 1-D float32 array: {err}") from None
    if arr.ndim != 1 or arr.dtype.kind not in "fiu":
        raise CodecError(f"{field} must be a 1-D float32 array, got dtype {arr.dtype} with "
                         f"shape {arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, rejected by callers
        return arr.astype(np.float32)


def _check_quant_params(scale: np.ndarray, offset: np.ndarray, channels: int, bits: int
                        ) -> None:
    if scale.size != channels or offset.size != channels:
        raise CodecError(f"expected {channels} scales and offsets (one per channel), got "
                         f"{scale.size} and {offset.size}")
    # One pass for the usual, valid case (this runs per frame on the server): the largest
    # code's output is finite only if scale and offset are, and dequantize's float32 arithmetic
    # gives it; the checks below run only to name what is wrong.
    with np.errstate(over="ignore", invalid="ignore"):
        top = np.asarray(scale * np.float32(_levels(bits)) + offset)
    if np.isfinite(top).all() and (scale >= 0).all():
        return
    if not np.isfinite(scale).all() or (scale < 0).any():
        raise CodecError(f"scales must be finite and >= 0; bad in channels "
                         f"{_first(np.flatnonzero(~(np.isfinite(scale) & (scale >= 0))))}")
    if not np.isfinite(offset).all():
        raise CodecError(f"offsets must be finite; bad in channels "
                         f"{_first(np.flatnonzero(~np.isfinite(offset)))}")
    # Dequantization is monotone in the code, so the largest code bounds every output.
    with np.errstate(over="ignore"):
        top = dequantize(np.full((channels, 1, 1), _levels(bits), np.float32), scale, offset)
    if not np.isfinite(top).all():
        raise CodecError(f"scale * {_levels(bits)} + offset overflows float32 in channels "
                         f"{_first(np.flatnonzero(~np.isfinite(top.ravel())))}")


# ---------------------------------------------------------------- entropy-coded

def _check_tables(codec: str, point: int, channels: int, tables: EntropyTables | None
                  ) -> None:
    """The tables exist, have operating point ``point`` and ``channels`` channels."""
    if tables is None:
        raise _entropy_error(f"{codec} needs the model's entropy tables; this model has none "
                             f"(its codecs: {', '.join(CODECS)})")
    if codec not in tables.codec_ids:
        raise _entropy_error(f"{codec}: operating point {point} is not in the model's tables "
                             f"(it has {', '.join(tables.codec_ids)})")
    if channels != tables.channels:
        raise _entropy_error(f"{codec}: {channels} channels, the model's tables have "
                             f"{tables.channels} (split {tables.split})")


def _encode_entropy(t: torch.Tensor, codec: str, point: int, tables: EntropyTables | None
                    ) -> EncodedTensor:
    shape = tuple(int(v) for v in t.shape)
    _check_tables(codec, point, shape[0], tables)
    assert tables is not None  # for mypy: _check_tables raised otherwise
    y = t.cpu().numpy().reshape(shape[0], -1)
    bad = ~np.isfinite(y)
    if bad.any():
        raise CodecError(f"tensor contains NaN or Inf ({int(bad.sum())} values in channels "
                         f"{_first(np.flatnonzero(bad.any(1)))}); the codec carries finite "
                         f"values only")
    c, h, w = (int(v) for v in t.shape)  # _as_float32_tensor: three dims
    context = (c, h, w) if _context_coded(codec) else None
    words = tables.encode(point, tables.points[point].symbols(y), context)
    header = _EB_HEADER.pack(_EBC_MAGIC if context else _EB_MAGIC, point, y.size)
    empty = np.zeros(0, np.float32)
    return EncodedTensor(codec, shape, empty, empty.copy(),
                         header + words.astype("<u4").tobytes())


def _decode_entropy(enc: EncodedTensor, point: int, shape: tuple[int, int, int],
                    params: int, tables: EntropyTables | None) -> np.ndarray:
    """Every check first (tables, fields, header, size bound), then the bounded decoding."""
    _check_tables(enc.codec, point, shape[0], tables)
    assert tables is not None
    if params:
        raise _entropy_error(f"{enc.codec} carries no scale/offset, got {params} values")
    if not isinstance(enc.data, (bytes, bytearray, memoryview)):
        raise CodecError(f"payload must be bytes, got {type(enc.data).__name__}")
    data = bytes(enc.data)
    n = math.prod(shape)
    if len(data) < _EB_HEADER.size:
        raise _entropy_error(f"{enc.codec} payload of {len(data)} bytes is shorter than its "
                             f"{_EB_HEADER.size}-byte header")
    magic, header_point, count = _EB_HEADER.unpack_from(data)
    context = shape if _context_coded(enc.codec) else None
    expected = _EBC_MAGIC if context else _EB_MAGIC
    if magic != expected:
        raise _entropy_error(f"{enc.codec} payload starts with 0x{magic:02X}, expected "
                             f"0x{expected:02X}")
    if header_point != point:
        raise _entropy_error(f"{enc.codec} payload says operating point {header_point}, the "
                             f"codec id {point}")
    if count != n:
        raise _entropy_error(f"{enc.codec} payload declares {count} symbols, the shape "
                             f"{shape} has {n}")
    body = len(data) - _EB_HEADER.size
    limit = max_words(n)
    if body % 4 or body // 4 > limit:
        raise _entropy_error(f"{enc.codec} stream of {body} bytes: expected whole 32-bit words, "
                             f"at most {limit} for {n} symbols")
    words = np.frombuffer(data, "<u4", offset=_EB_HEADER.size).astype(np.uint32)
    try:
        index = tables.decode(point, words, n // shape[0], context)
    except EntropyStreamError as err:
        raise _entropy_error(f"{enc.codec}: {err}") from None
    return tables.points[point].values(index).reshape(shape)


# ---------------------------------------------------------------- zstd

_local = threading.local()  # zstd contexts are not thread-safe; cache one set per thread


def _compress(raw: bytes, level: int) -> bytes:
    cache = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        # The content size lets decode check the frame before decompressing; the checksum
        # (4 bytes) makes corrupted payloads fail instead of decoding to wrong values.
        cache[level] = zstandard.ZstdCompressor(level=int(level), write_content_size=True,
                                                write_checksum=True)
    return cache[level].compress(raw)


def _decompress(data: bytes, expected: int) -> bytes:
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as err:
        raise CodecError(f"payload is not a zstd frame ({len(data)} bytes): {err}") from None
    if declared == zstandard.CONTENTSIZE_UNKNOWN:
        raise CodecError(f"zstd frame does not declare its content size; the shape needs "
                         f"{expected} bytes")
    if declared != expected:
        raise CodecError(f"zstd frame declares {declared} bytes, the codec and shape need "
                         f"{expected}")
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    try:
        # Output bounded by the exact size; one frame only, nothing after it.
        raw = _local.decompressor.decompress(data, max_output_size=expected,
                                             allow_extra_data=False)
    except zstandard.ZstdError as err:
        raise CodecError(f"corrupt or truncated zstd payload ({len(data)} bytes): {err}"
                         ) from None
    if len(raw) != expected:
        raise CodecError(f"payload decompressed to {len(raw)} bytes, expected {expected}")
    return raw


# ---------------------------------------------------------------- messages

def _short(value: Any, limit: int = 60) -> str:
    """repr() clipped so hostile input cannot flood logs."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _first(indices: np.ndarray, limit: int = 8) -> str:
    """The first few indices, for messages about many channels."""
    items = [int(i) for i in indices[:limit]]
    return str(items) if len(indices) <= limit else f"{items} and {len(indices) - limit} more"


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
