"""The feature codec: the one place the wire format of split tensors lives.

A split tensor (C, H, W) becomes an ``EncodedTensor``: codec id, shape, per-channel
scale/offset and a zstd-compressed payload of float16 values, 8-bit codes or 4-bit codes (two
per byte, low nibble first). Quantization per channel: ``offset = min``,
``scale = (max - min) / (2**bits - 1)``, ``code = round((x - offset) / scale)``, so the error is
at most ``scale / 2``. ``fake_quantize`` applies the same formula in training with a
straight-through gradient so the network learns to survive the codes it will be sent as.

``decode`` treats its input as hostile: every problem raises ``CodecError`` (never another
exception type), and it never allocates more than the shape allows, capped by ``max_elements``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import zstandard

CODECS = ("f16-zstd/1", "q8-zstd/1", "q4-zstd/1")
_BITS = {"q8-zstd": 8, "q4-zstd": 4}
DEFAULT_MAX_ELEMENTS = 64 * 1024 * 1024


class CodecError(ValueError):
    """Input the codec cannot encode or decode; the message says what and what was expected."""


@dataclass(frozen=True)
class EncodedTensor:
    """Maps 1:1 onto SplitFeatures fields (codec, shape, scale, offset, data).

    For ``f16-zstd`` scale and offset are empty: values travel as float16.
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


def parse_codec(codec: str) -> tuple[str, int]:
    """Split 'name/version' and check that this build serves it."""
    if not isinstance(codec, str) or codec not in CODECS:
        raise CodecError(f"unknown codec id {codec!r}; expected one of {', '.join(CODECS)}")
    name, version = codec.split("/")
    return name, int(version)


def quantization_params(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, offset) over the last two dims of (..., C, H, W)."""
    flat = x.flatten(-2)
    lo, hi = flat.amin(-1), flat.amax(-1)
    scale = (hi - lo) / (2 ** bits - 1)
    return scale, lo


def quantize(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int
             ) -> torch.Tensor:
    """Integer codes (as float) for ``x`` with per-channel ``scale``/``offset``."""
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round((x - offset[..., None, None]) / safe[..., None, None])
    return codes.clamp_(0, 2 ** bits - 1)


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize (N, C, H, W) per sample and channel; identity gradient (STE)."""
    with torch.no_grad():
        scale, offset = quantization_params(x.detach().float(), bits)
        q = quantize(x.detach().float(), scale, offset, bits)
        deq = (q * scale[..., None, None] + offset[..., None, None]).to(x.dtype)
    return x + (deq - x).detach()


def encode(x, codec: str = "q8-zstd/1", level: int = 3) -> EncodedTensor:
    """Encode a (C, H, W) numpy array or torch tensor (any device)."""
    name, _ = parse_codec(codec)
    if not isinstance(level, (int, np.integer)) or not 1 <= level <= 22:
        raise CodecError(f"zstd level {level!r} must be an integer in [1, 22]")
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x.detach()
    if t.dim() != 3 or min(t.shape) < 1:
        raise CodecError(f"expected a (C, H, W) tensor with non-empty dims, got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise CodecError("tensor contains NaN or Inf; refusing to encode")
    shape = tuple(int(v) for v in t.shape)
    if name == "f16-zstd":
        if float(t.abs().max()) > 65504.0:
            raise CodecError("values exceed the float16 range (65504); use a q8/q4 codec")
        raw = t.to(torch.float16).cpu().numpy().astype("<f2").tobytes()
        empty = np.zeros(0, np.float32)
        return EncodedTensor(codec, shape, empty, empty.copy(), _compress(raw, level))
    bits = _BITS[name]
    t = t.float()
    scale, offset = quantization_params(t, bits)
    # Quantize where the tensor lives (a GPU edge moves only uint8 codes to the host).
    codes = quantize(t, scale, offset, bits).to(torch.uint8).cpu().numpy().ravel()
    if bits == 4:
        if codes.size % 2:
            codes = np.append(codes, np.uint8(0))
        codes = codes[0::2] | (codes[1::2] << 4)
    return EncodedTensor(codec, shape, scale.cpu().numpy().astype(np.float32),
                         offset.cpu().numpy().astype(np.float32),
                         _compress(codes.tobytes(), level))


def payload_size(codec: str, shape: tuple[int, ...]) -> int:
    """Exact decompressed payload size in bytes for ``codec`` and ``shape``."""
    n = int(np.prod(shape, dtype=np.int64))
    name, _ = parse_codec(codec)
    return {"f16-zstd": 2 * n, "q8-zstd": n, "q4-zstd": (n + 1) // 2}[name]


def decode(enc: EncodedTensor, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Decode to a float32 (C, H, W) array; any malformed input raises CodecError."""
    try:
        return _decode(enc, max_elements)
    except CodecError:
        raise
    except Exception as err:  # noqa: BLE001 - the contract: only CodecError escapes
        raise CodecError(f"malformed encoded tensor: {type(err).__name__}: {err}") from err


def _decode(enc: EncodedTensor, max_elements: int) -> np.ndarray:
    name, _ = parse_codec(enc.codec)
    shape = tuple(enc.shape)
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise CodecError(f"shape {shape} must be 3 positive integers (C, H, W)")
    n = int(np.prod(shape, dtype=np.int64))
    if n > max_elements:
        raise CodecError(f"shape {shape} has {n} elements, over the cap of {max_elements}")
    raw = _decompress(bytes(enc.data), payload_size(enc.codec, shape))
    if name == "f16-zstd":
        return np.frombuffer(raw, "<f2").astype(np.float32).reshape(shape)
    channels = shape[0]
    scale = np.asarray(enc.scale, dtype=np.float32).ravel()
    offset = np.asarray(enc.offset, dtype=np.float32).ravel()
    if scale.size != channels or offset.size != channels:
        raise CodecError(f"expected {channels} scales and offsets (one per channel), got "
                         f"{scale.size} and {offset.size}")
    if not (np.isfinite(scale).all() and np.isfinite(offset).all()) or (scale < 0).any():
        raise CodecError("scales must be finite and >= 0 and offsets finite")
    codes = np.frombuffer(raw, np.uint8)
    if _BITS[name] == 4:
        codes = np.stack([codes & 0x0F, codes >> 4], axis=1).ravel()[:n]
    values = codes.reshape(shape).astype(np.float32)
    return values * scale[:, None, None] + offset[:, None, None]


def _compress(raw: bytes, level: int) -> bytes:
    # The frame records its content size, which decode checks before decompressing.
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(raw)


def _decompress(data: bytes, expected: int) -> bytes:
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as err:
        raise CodecError(f"payload is not a zstd frame ({len(data)} bytes): {err}") from err
    if params.content_size != expected:
        raise CodecError(f"payload declares {params.content_size} bytes, the shape needs "
                         f"{expected}")
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected)
    except zstandard.ZstdError as err:
        raise CodecError(f"corrupt or truncated zstd payload: {err}") from err
    if len(raw) != expected:
        raise CodecError(f"payload decompressed to {len(raw)} bytes, expected {expected}")
    return raw
